"""Plan a run before anything is created: resolve the version, check the input, cut the shards.

Everything that can be known to fail fails here, before any container group exists.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from datetime import date

from scoring.blobstore import BlobNotFound, BlobStore
from scoring.modelstore import Manifest, ModelStore, ModelStoreError, version_prefix

from .input_scan import InputError, scan_input
from .model_checks import check_input_against_models
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
    if input_blob != LATEST_INPUT:
        return input_blob
    found = list(blobs.list(settings.input_container, settings.input_prefix))
    if not found:
        raise PlanError(f"no input data under {settings.input_container}/{settings.input_prefix}")
    return max(found, key=lambda b: (b.last_modified, b.name)).name


def input_postcodes(data: bytes, where: str, today: date | None = None) -> Counter:
    """Rows per postcode in the input CSV, after the checks a run needs before any container starts."""
    try:
        rows, earliest = scan_input(data, where)
    except InputError as e:
        raise PlanError(str(e)) from None
    if today is not None and earliest < today:
        raise PlanError(f"{where} has dates in the past (earliest {earliest}, today {today}): "
                        "scoring forecasts future days")
    return rows


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.split(r"[.-]", text) if part.isdigit())


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
    except ModelStoreError as e:
        raise PlanError(str(e)) from None
    check_compatibility(manifest, settings)
    input_blob = resolve_input(blobs, settings, request.input_blob)
    where = f"input {settings.input_container}/{input_blob}"
    try:
        data, etag = blobs.read_versioned(settings.input_container, input_blob)
    except BlobNotFound:
        raise PlanError(f"{where} does not exist") from None
    rows = input_postcodes(data, where, today)

    failed: dict[str, str] = {}
    if request.postcodes is not None:
        wanted = request.postcodes
        for pc in wanted:
            if pc not in manifest.models:
                failed[pc] = f"no model for this postcode in {request.model}/{version}"
            elif pc not in rows:
                failed[pc] = "no input rows for this postcode"
    else:
        wanted = manifest.postcodes
    scorable = sorted(pc for pc in wanted if pc in manifest.models and pc in rows)
    if not scorable:
        raise PlanError(f"nothing to score: none of {len(wanted)} postcode(s) of {request.model}/{version} "
                        f"has rows in {where}")
    # Input against each model's prototype and training end (model_checks.py).
    model_failed, warnings = check_input_against_models(data, manifest, scorable, settings.ts_max_gap_days, where)
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
        not_in_input=len([pc for pc in manifest.postcodes if pc not in rows]) if request.postcodes is None else 0,
        parallel_groups=min(settings.parallel_groups, len(shards)),
        container=ContainerSize(image=settings.scoring_image, cpu=settings.container_cpu,
                                memory_gb=settings.container_memory_gb),
        estimate=estimate_cost([len(s) for s in shards], settings),
        shards=[ShardPlan(index=i, postcodes=pcs) for i, pcs in enumerate(shards)],
        timing=run_timing(settings),
        ts_max_gap_days=settings.ts_max_gap_days,
        warnings=warnings,
    )
