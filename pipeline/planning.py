"""Plan a run before anything is created: resolve the version, check the input, cut the shards.

Everything that can be known to fail fails here, before any container group exists.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from datetime import UTC, date, datetime

from scoring.blobstore import BlobNotFound, BlobStore
from scoring.modelstore import CHAMPION, Manifest, ModelStore, ModelStoreError, version_prefix
from scoring.names import InvalidName, check_blob_path

from .input_scan import InputError, RowVisitor, scan_input
from .model_checks import ModelInputCheck
from .payloads import ContainerSize, Estimate, InputRef, Plan, RunRequest, ShardPlan, Timing
from .run_requests import LATEST_INPUT
from .settings import Settings

MAX_SHARDS = 500


class PlanError(ValueError):
    """The run cannot start; the message says why (it becomes the run's error)."""


def cut_shards(postcodes: list[str], shard_size: int | None, settings: Settings) -> list[list[str]]:
    """Contiguous slices of the sorted postcodes. By default as many shards as groups may run at once,
    but none smaller than MIN_SHARD_SIZE (a container's start-up costs more than scoring a few postcodes)."""
    if not postcodes:
        return []
    size = shard_size or max(settings.min_shard_size, math.ceil(len(postcodes) / settings.parallel_groups))
    shards = [postcodes[i:i + size] for i in range(0, len(postcodes), size)]
    if len(shards) > MAX_SHARDS:
        raise PlanError(f"{len(shards)} shards of {size} postcodes; at most {MAX_SHARDS}: use a larger shardSize")
    return shards


def resolve_input(blobs: BlobStore, settings: Settings, input_blob: str) -> str:
    """`latest` is the newest blob under INPUT_PREFIX whose name the worker accepts (others are skipped)."""
    if input_blob != LATEST_INPUT:
        return input_blob
    found = [b for b in blobs.list(settings.input_container, settings.input_prefix) if _acceptable_name(b.name)]
    if not found:
        raise PlanError(f"no input data under {settings.input_container}/{settings.input_prefix}")
    return max(found, key=lambda b: (b.last_modified, b.name)).name


def _acceptable_name(name: str) -> bool:
    try:
        check_blob_path(name, "input blob")
    except InvalidName:
        return False
    return True


def check_input_exists(blobs: BlobStore, settings: Settings, input_blob: str) -> None:
    """At the door: the input named (or `latest`) exists now. A PlanError names the blob or prefix."""
    name = resolve_input(blobs, settings, input_blob)
    if blobs.info(settings.input_container, name) is None:
        raise PlanError(f"no blob {name!r} in container {settings.input_container!r}")


def input_postcodes(data: bytes, where: str, today: date | None = None, visit: RowVisitor | None = None) -> Counter:
    """Rows per postcode in the input CSV, after the checks a run needs before any container starts;
    `visit` sees the rows on the way (input_scan.scan_input)."""
    try:
        rows, earliest = scan_input(data, where, visit=visit)
    except InputError as e:
        raise PlanError(str(e)) from None
    if today is not None and earliest < today:
        raise PlanError(f"{where} has dates in the past (earliest {earliest}, today {today}): "
                        "scoring forecasts future days")
    return rows


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.split(r"[.-]", text) if part.isdigit())


def _champion_version(store: ModelStore, model: str) -> str | None:
    try:
        return store.resolve_version(model, CHAMPION)
    except ModelStoreError:
        return None


def check_compatibility(manifest: Manifest, settings: Settings) -> None:
    """The image must run the models: same R major.minor (serialization), and every R package the models
    need, at least at the version they were saved with."""
    where = f"model {manifest.model}/{manifest.version}"
    if settings.image_r_version and _version(manifest.r_version)[:2] != _version(settings.image_r_version)[:2]:
        raise PlanError(f"{where} was saved with R {manifest.r_version}; the scoring image runs R "
                        f"{settings.image_r_version}")
    if not settings.image_r_packages:
        return
    have = dict(item.split("=", 1) for item in settings.image_r_packages.split(";") if "=" in item)
    lacking = [f"{name} {needed} (image has {have.get(name, 'none')})"
               for name, needed in sorted(manifest.r_packages.items())
               if name not in have or _version(have[name]) < _version(needed)]
    if lacking:
        raise PlanError(f"{where} needs R package(s) the scoring image lacks: {', '.join(lacking)}")


def estimate_cost(shard_sizes: list[int], settings: Settings) -> Estimate:
    """Expected container time and price: start-up plus scoring per shard, on the configured size."""
    seconds = [settings.expected_startup_seconds + n * settings.expected_seconds_per_postcode
               / max(1.0, settings.container_cpu) for n in shard_sizes]
    vcpu_seconds = sum(seconds) * settings.container_cpu
    gb_seconds = sum(seconds) * settings.container_memory_gb
    return Estimate(groups=len(shard_sizes), vcpu_seconds=round(vcpu_seconds, 1), gb_seconds=round(gb_seconds, 1),
                    price_usd=round(vcpu_seconds * settings.aci_price_per_vcpu_second
                                    + gb_seconds * settings.aci_price_per_gb_second, 6))


def run_timing(settings: Settings) -> Timing:
    """The waits and retries the run's orchestrations use, from the settings at planning time."""
    return Timing(poll_seconds=settings.poll_interval_seconds, deadline_minutes=settings.shard_deadline_minutes,
                  provisioning_deadline_minutes=settings.provisioning_deadline_minutes,
                  retry_interval_seconds=settings.aci_retry_interval_seconds,
                  retry_attempts=settings.aci_retry_attempts, shard_attempts=settings.shard_attempts,
                  quota_waits=2 * settings.aci_retry_attempts,
                  poll_first_seconds=min(settings.poll_first_seconds, settings.poll_interval_seconds))


def dry_run_view(plan: Plan) -> dict:
    """What a run would do, without creating anything: shards, groups, expected cost."""
    return {"dryRun": True, "model": plan.model, "version": plan.version, "input": plan.input.to_json(),
            "horizon": plan.horizon, "postcodes": plan.postcodes_total, "failed": plan.failed,
            "groups": len(plan.shards), "parallel_groups": plan.parallel_groups,
            "shards": [{"index": s.index, "postcodes": len(s.postcodes), "first": s.postcodes[0],
                        "last": s.postcodes[-1]} for s in plan.shards],
            "container": plan.container.to_json(), "estimate": plan.estimate.to_json()}


def plan_run(request: RunRequest, run_id: str, settings: Settings, blobs: BlobStore,
             today: date | None = None) -> Plan:
    store = ModelStore(blobs, settings.models_container)
    try:
        version = store.resolve_version(request.model, request.version)
        manifest = store.read_manifest(request.model, version)
    except (ModelStoreError, InvalidName) as e:
        raise PlanError(str(e)) from None
    check_compatibility(manifest, settings)
    input_blob = resolve_input(blobs, settings, request.input_blob)
    where = f"input {settings.input_container}/{input_blob}"
    try:
        data, etag = blobs.read_versioned(settings.input_container, input_blob)
    except BlobNotFound:
        raise PlanError(f"{where} does not exist") from None
    info = blobs.info(settings.input_container, input_blob)
    if info is None or info.etag != etag:
        raise PlanError(f"{where} changed while the run was being planned; start the run again")
    if request.input_etag and etag != request.input_etag:
        raise PlanError(f"{where} changed since run {request.retry_of or ''} was published (ETag {etag}, "
                        f"published from {request.input_etag}): a retry would mix two input versions; "
                        "start a new run instead")
    model_check = ModelInputCheck(manifest, settings.ts_max_gap_days, where)  # in the same pass over the input
    rows = input_postcodes(data, where, today, visit=model_check.visit)

    # Every postcode asked for (all of the version's by default) is scored or listed with a reason.
    wanted = request.postcodes if request.postcodes is not None else manifest.postcodes
    failed: dict[str, str] = {}
    for pc in wanted:
        if pc not in manifest.models:
            failed[pc] = f"no model for this postcode in {request.model}/{version}"
        elif pc not in rows:
            failed[pc] = "no input rows for this postcode"
        elif rows[pc] != request.horizon:  # the worker would refuse it after a group was paid for
            failed[pc] = f"input has {rows[pc]} rows for this postcode, expected {request.horizon} (the horizon)"
    scorable = sorted(pc for pc in wanted if pc not in failed)
    if not scorable:
        first = min(failed)
        raise PlanError(f"nothing to score: none of {len(wanted)} postcode(s) of {request.model}/{version} "
                        f"can be scored from {where} (e.g. {first}: {failed[first]})")
    # Input against each model's prototype and training end (model_checks.py).
    model_failed, warnings = model_check.result(scorable)
    if len(model_failed) == len(scorable):
        raise PlanError(f"nothing to score: every postcode's input fails its model, e.g. {scorable[0]}: "
                        f"{model_failed[scorable[0]]}")
    failed.update(model_failed)
    scorable = [pc for pc in scorable if pc not in model_failed]
    missing_packs = {manifest.models[pc].blob for pc in scorable} - {
        b.name.removeprefix(version_prefix(request.model, version))
        for b in blobs.list(settings.models_container, version_prefix(request.model, version) + "packs/")}
    if missing_packs:
        raise PlanError(f"model {request.model}/{version} is incomplete: blob(s) {', '.join(sorted(missing_packs))} "
                        "are missing from the model store")
    shards = cut_shards(scorable, request.shard_size, settings)
    champion = request.version == CHAMPION or _champion_version(store, request.model) == version
    return Plan(
        run_id=run_id,
        model=request.model,
        version=version,
        model_packages=manifest.r_packages,
        input=InputRef(container=settings.input_container, blob=input_blob, etag=etag),
        horizon=request.horizon,
        trigger=request.trigger,
        retry_of=request.retry_of,
        subset=request.postcodes is not None,
        postcodes_total=len(scorable) + len(failed),
        failed=failed,
        not_in_input=0,  # every postcode without input rows is in `failed`, with the reason
        parallel_groups=min(settings.parallel_groups, len(shards)),
        container=ContainerSize(image=settings.scoring_image, cpu=settings.container_cpu,
                                memory_gb=settings.container_memory_gb),
        estimate=estimate_cost([len(s) for s in shards], settings),
        shards=[ShardPlan(index=i, postcodes=pcs) for i, pcs in enumerate(shards)],
        timing=run_timing(settings),
        input_time=info.last_modified,  # with planned_at: the order in which `latest` moves
        planned_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        champion=champion,
        ts_max_gap_days=settings.ts_max_gap_days,
        warnings=warnings,
    )
