"""Publish a run: validate every shard's staged output, then make it visible in one order.

    runs/<run>/results.csv     all rows, written first (readers ignore a run without _SUCCESS)
    runs/<run>/manifest.json   lineage: input + ETag, model version + sha256s, image, shards, exit codes, cost
    runs/<run>/_SUCCESS        the run is complete
    latest/<model>.json        moved last: a reader who follows it never sees a partial run
"""

from __future__ import annotations

import csv
import io
import math

from dashboard.results_index import write_results_index
from scoring.blobstore import BlobStore
from scoring.modelstore import ModelStore
from scoring.timestamps import now_seconds, parse_iso

from . import naming
from .payloads import Attempt, ContainerSize, Plan, Published, RunState, ShardOutcome
from .settings import Settings

RESULT_COLUMNS = ["postcode", "date", "volume", "lower_80", "upper_80", "lower_95", "upper_95", "model",
                  "model_version"]


class PublishError(ValueError):
    pass


def validate_shard_rows(text: str, scored: list[str], horizon: int, where: str) -> list[list[str]]:
    """Rows = scored postcodes x horizon, every volume a finite number >= 0, no unexpected postcode."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header != RESULT_COLUMNS:
        raise PublishError(f"{where}: unexpected columns {header}")
    rows = list(reader)
    expected = set(scored)
    per_postcode: dict[str, int] = {}
    for row in rows:
        pc, volume = row[0], row[2]
        if pc not in expected:
            raise PublishError(f"{where}: rows for postcode {pc}, which the shard did not report as scored")
        try:
            v = float(volume)
        except ValueError:
            raise PublishError(f"{where}: postcode {pc} on {row[1]} has volume {volume!r}") from None
        if not math.isfinite(v) or v < 0:
            raise PublishError(f"{where}: postcode {pc} on {row[1]} has volume {volume}")
        per_postcode[pc] = per_postcode.get(pc, 0) + 1
    wrong = [pc for pc in scored if per_postcode.get(pc) != horizon]
    if wrong:
        raise PublishError(f"{where}: {len(wrong)} postcode(s) do not have {horizon} rows, e.g. {wrong[0]} has "
                           f"{per_postcode.get(wrong[0], 0)}")
    return rows


def publish_run(plan: Plan, shards: list[ShardOutcome], failed: dict[str, str], settings: Settings,
                blobs: BlobStore) -> Published:
    """Validate every staged shard output, then write results, manifest, _SUCCESS and the latest pointer.

    `failed` lists every postcode that was not scored, with its reason (from the plan, the shards' own
    reports, and the postcodes of shards that failed as a whole). A retry (plan.retry_of) merges into the
    run it retries: its rows replace nothing (those postcodes had failed) and its failures replace the old ones.
    """
    run_id, horizon, container = plan.run_id, plan.horizon, settings.results_container
    failed = dict(failed)
    rows: list[list[str]] = []
    scored: set[str] = set()
    for shard in shards:
        status = shard.status
        if not shard.state.ok or status is None:
            continue
        where = f"shard {shard.index} ({status.output_prefix}results.csv)"
        # Staged by the container (worker identity); the app copies it into RESULTS_CONTAINER below.
        text = blobs.read_bytes(settings.staging_container, status.output_prefix + "results.csv").decode()
        try:
            rows += validate_shard_rows(text, status.scored, horizon, where)
        except PublishError as e:  # this shard's rows are not published; its postcodes are failed, with why
            failed.update({pc: f"not published: {e}" for pc in status.scored})
            continue
        scored.update(status.scored)
    planned = {pc for s in plan.shards for pc in s.postcodes} | set(plan.failed)
    unaccounted = planned - scored - set(failed)
    if unaccounted:
        raise PublishError(f"{len(unaccounted)} postcode(s) neither scored nor failed, e.g. {min(unaccounted)}")
    if not scored and not plan.retry_of:
        raise PublishError("no shard produced valid results")

    target = plan.retry_of or run_id
    prefix = naming.run_prefix(target)
    previous = _previous_publication(blobs, container, prefix) if plan.retry_of else None
    if previous:
        # A retry adds what it scored; what an earlier revision scored stays, even if it failed this time.
        old_rows, old_manifest = previous
        rows += [r for r in old_rows if r[0] not in scored]
        scored |= {r[0] for r in old_rows}
        failed = {pc: why for pc, why in {**old_manifest["postcodes_failed"], **failed}.items() if pc not in scored}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(RESULT_COLUMNS)
    writer.writerows(sorted(rows, key=lambda r: (r[0], r[1])))
    blobs.write_bytes(container, prefix + "results.csv", out.getvalue().encode(), content_type="text/csv")
    write_results_index(blobs, container, prefix + "results.csv", out.getvalue().encode())  # before _SUCCESS

    manifest = ModelStore(blobs, settings.models_container).read_manifest(plan.model, plan.version)
    published = now_seconds()
    run_manifest = {
        "run_id": target,
        "state": RunState.COMPLETED_WITH_FAILURES if failed else RunState.COMPLETED,
        "trigger": plan.trigger,
        "published": published,
        "model": {"name": plan.model, "version": plan.version, "r_version": manifest.r_version,
                  "r_packages": manifest.r_packages,
                  "sha256": {pc: manifest.models[pc].sha256 for pc in sorted(scored) if pc in manifest.models}},
        "input": plan.input.to_json(),
        "warnings": plan.warnings,
        "image": plan.container.image,
        "horizon": horizon,
        "rows": len(rows),
        "postcodes_scored": len(scored),
        "postcodes_failed": failed,
        "shards": [_shard_summary(s, plan) for s in shards],
        "cost": run_cost(shards, plan.container, settings),
        "estimate": plan.estimate.to_json(),
        "results": f"{container}/{prefix}results.csv",
        "revisions": (previous[1].get("revisions", []) if previous else []) + [
            {"run_id": run_id, "published": published, "postcodes": len(planned)}],
    }
    blobs.write_json(container, prefix + "manifest.json", run_manifest)
    blobs.write_bytes(container, prefix + "_SUCCESS", published.encode(), content_type="text/plain")
    if moves_latest(plan, blobs, container):
        blobs.write_json(container, naming.latest_pointer(plan.model),
                         {"run_id": target, "results": prefix + "results.csv", "manifest": prefix + "manifest.json",
                          "published": published})
    return Published(results=run_manifest["results"], manifest=f"{container}/{prefix}manifest.json",
                     rows=len(rows), postcodes_scored=len(scored), postcodes_failed=failed,
                     state=run_manifest["state"], cost=run_manifest["cost"])


def moves_latest(plan: Plan, blobs: BlobStore, container: str) -> bool:
    """`latest` names the model's newest *complete* run: a run of a postcode subset never moves it, and a
    retry moves it only when it already names the run being retried (retrying last week's run must not
    turn the clock back)."""
    if plan.retry_of:
        pointer = naming.latest_pointer(plan.model)
        return blobs.exists(container, pointer) and blobs.read_json(container, pointer)["run_id"] == plan.retry_of
    return not plan.subset


def _previous_publication(blobs: BlobStore, container: str, prefix: str) -> tuple[list[list[str]], dict] | None:
    if not blobs.exists(container, prefix + "_SUCCESS"):
        return None
    text = blobs.read_bytes(container, prefix + "results.csv").decode()
    return list(csv.reader(io.StringIO(text)))[1:], blobs.read_json(container, prefix + "manifest.json")


def run_cost(shards: list[ShardOutcome], container: ContainerSize, settings: Settings) -> dict[str, float]:
    """vCPU- and GB-seconds from each attempt's container start and finish (else the orchestration's own
    create-to-delete times), and the price at the configured rates."""
    seconds = 0.0
    for shard in shards:
        for attempt in shard.attempts:
            start = attempt.started or attempt.billed_from
            end = attempt.finished or attempt.billed_to
            if start and end:
                seconds += max(0.0, (parse_iso(end) - parse_iso(start)).total_seconds())
    vcpu, gb = seconds * container.cpu, seconds * container.memory_gb
    return {"container_seconds": round(seconds, 3), "vcpu_seconds": round(vcpu, 3), "gb_seconds": round(gb, 3),
            "price_usd": round(vcpu * settings.aci_price_per_vcpu_second + gb * settings.aci_price_per_gb_second, 6)}


def _shard_summary(shard: ShardOutcome, plan: Plan) -> dict:
    """The shard map: which postcodes ran where, each attempt's group, exit code and times."""
    status = shard.status
    postcodes = plan.shards[shard.index].postcodes
    return {"index": shard.index, "state": shard.state, "reason": shard.reason,
            "postcodes": [postcodes[0], postcodes[-1], len(postcodes)],
            "attempts": [_attempt_summary(a) for a in shard.attempts],
            "scored": len(status.scored) if status else 0, "failed": len(status.failed) if status else 0,
            "rows": status.rows if status else 0, "timings": status.timings if status else {}}


def _attempt_summary(attempt: Attempt) -> dict:
    return {"attempt": attempt.attempt, "group": attempt.group, "state": attempt.state,
            "exit_code": attempt.exit_code, "started": attempt.started, "finished": attempt.finished,
            "reason": attempt.reason, "deleted": attempt.deleted}
