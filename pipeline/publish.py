"""Publish a run: validate every staged shard output, then make it visible with one pointer flip.

    runs/<run>/revisions/<rev>/results.csv     all rows, streamed from the shards' staged CSVs
    runs/<run>/revisions/<rev>/failures.json   every postcode not scored, with its reason (pipeline/failures.py)
    runs/<run>/revisions/<rev>/manifest.json   lineage: input + ETag, model version + sha256s, image, shards, cost
    runs/<run>/current.json                    flipped last, conditionally (pipeline/revisions.py)
    latest/<model>.json                        moved after that, only forward, only for champion runs

A retry publishes a new revision of the run it retries: the old revision's rows for postcodes it did not
rescore, plus its own. Readers resolve a run's files with revisions.current_revision, never by path.
"""

from __future__ import annotations

import dataclasses
import heapq
from datetime import UTC, datetime

from dashboard.results_index import INDEX_FORMAT, ResultsIndexer, write_results_index
from scoring.blobstore import BlobStore
from scoring.modelstore import ModelStore
from scoring.timestamps import parse_iso

from .failures import FAILURES, Gathered, gather, write_failures
from .payloads import Attempt, ContainerSize, Plan, Published, RunPlan, RunState, ShardOutcome, ShardState
from .plan_store import PlanStoreError, read_plan
from .revisions import Revision, current_revision, flip_pointer, move_latest, revision_prefix
from .settings import Settings
from .shard_output import (
    HEADER,
    RESULT_COLUMNS,
    BlockCopy,
    ShardCheck,
    ShardRejected,
    combined_index,
    csv_chunks,
    data_rows,
    validate_shard,
)

__all__ = ["RESULT_COLUMNS", "PublishError", "publish_run", "run_cost"]


class PublishError(ValueError):
    """Nothing can be published, and retrying will not change that (a permanent failure)."""


def accepted_shards(plan: Plan, shards: list[ShardOutcome], gathered: Gathered, settings: Settings,
                    blobs: BlobStore, copy: BlockCopy | None = None,
                    ) -> tuple[list[ShardOutcome], list[tuple[str, ShardCheck]], set[str]]:
    """(every shard, with a rejected one marked so; the results.csv of each shard whose output passes
    validation, with what validation found; the postcodes they scored). A rejected shard is left out with the
    reason on each of its postcodes; it never sinks the others. `gathered.failed` gains the rejected shards'
    postcodes. With `copy`, each accepted shard's bytes are staged as they are validated."""
    container = settings.staging_container  # written by the containers (worker identity), read-only here
    failed = gathered.failed
    marked, accepted, scored = [], [], set()
    for shard in shards:
        status = shard.status
        if not shard.state.ok or status is None:
            marked.append(shard)
            continue
        if shard.index in gathered.rejected:  # its status.json was unusable (failures.gather)
            marked.append(dataclasses.replace(shard, state=ShardState.REJECTED, reason=gathered.rejected[shard.index]))
            continue
        assigned = set(plan.shards[shard.index].postcodes)
        reported = gathered.scored.get(shard.index, [])
        blob = status.output_prefix + "results.csv"
        try:
            check = validate_shard(blobs, container, blob, reported, assigned, plan.horizon, plan.model, plan.version,
                                   copy)
        except ShardRejected as e:
            reason = f"not published: shard {shard.index} output rejected: {e}"
            failed.update({pc: reason for pc in assigned if pc not in failed or pc in reported})
            marked.append(dataclasses.replace(shard, state=ShardState.REJECTED, reason=str(e)))
            continue
        marked.append(shard)
        accepted.append((blob, check))
        scored.update(reported)
    return marked, accepted, scored


def publish_run(ref: RunPlan, shards: list[ShardOutcome], settings: Settings, blobs: BlobStore) -> Published:
    """Validate every staged shard output, write a new revision, flip the run's pointer, move `latest`.

    The postcodes come from blobs, not from history: each shard's assignment and the plan's failures from the
    plan (pipeline/plan_store.py), what each shard scored and failed from its status.json (pipeline/failures.py),
    so every postcode not scored is listed with its reason. Raises PublishError for what a retry cannot fix;
    RevisionConflict (and storage errors) are transient.
    """
    try:
        plan = read_plan(blobs, ref)
    except PlanStoreError as e:
        raise PublishError(str(e)) from None
    run_id, container = plan.run_id, settings.results_container
    target = plan.retry_of or run_id
    previous = current_revision(blobs, container, target)
    if plan.retry_of and previous is None:
        raise PublishError(f"run {target} has published nothing to retry into")
    if previous is not None and previous.revision == run_id:  # this activity already flipped; finish the rest
        return _outcome(blobs, container, plan, previous)
    prefix = revision_prefix(target, run_id)
    # A first publish stages each shard's bytes into the results blob while it validates them; a retry merges.
    with BlockCopy(blobs, container, prefix + "results.csv") as staged:
        copy = None if plan.retry_of else staged
        planned = {pc for s in plan.shards for pc in s.postcodes} | set(plan.failed)
        gathered = gather(blobs, settings.staging_container, plan, shards)
        shards, accepted, scored = accepted_shards(plan, shards, gathered, settings, blobs, copy)
        failed = gathered.failed
        unaccounted = planned - scored - set(failed)
        if unaccounted:
            raise PublishError(f"{len(unaccounted)} postcode(s) neither scored nor failed, e.g. {min(unaccounted)}")
        if not scored and not plan.retry_of:
            raise PublishError("no shard produced valid results")

        old_manifest: dict = {}
        if plan.retry_of:
            old_manifest = blobs.read_json(container, previous.manifest)
            # What an earlier revision scored stays, even if it failed this time.
            old_scored = set(old_manifest.get("model", {}).get("sha256", {})) - set(old_manifest["postcodes_failed"])
            kept = scored | old_scored
            failed = {pc: why for pc, why in {**old_manifest["postcodes_failed"], **failed}.items() if pc not in kept}
            rows = merge_results(blobs, settings.staging_container, container, prefix + "results.csv", accepted,
                                 previous.results, scored)
            scored |= old_scored
        else:
            rows = write_results(blobs, settings.staging_container, container, prefix + "results.csv", accepted,
                                 staged)

    manifest = ModelStore(blobs, settings.models_container).read_manifest(plan.model, plan.version)
    published = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    run_manifest = {
        "run_id": target,
        "revision": run_id,
        "state": "completed_with_failures" if failed else "completed",
        "trigger": plan.trigger.value,
        "published": published,
        "model": {"name": plan.model, "version": plan.version, "r_version": manifest.r_version,
                  "r_packages": manifest.r_packages, "champion": plan.champion,
                  "sha256": {pc: manifest.models[pc].sha256 for pc in sorted(scored) if pc in manifest.models}},
        "input": plan.input.to_json(),
        "warnings": plan.warnings,
        "image": plan.container.image,
        "horizon": plan.horizon,
        "rows": rows,
        "postcodes_scored": len(scored),
        "postcodes_failed": failed,
        "failures": f"{container}/{prefix}{FAILURES}",
        "shards": [_shard_summary(s, plan, gathered) for s in shards],
        "cost": run_cost(shards, plan.container, settings),
        "estimate": plan.estimate.to_json(),
        "results": f"{container}/{prefix}results.csv",
        "revisions": old_manifest.get("revisions", []) + [
            {"run_id": run_id, "published": published, "postcodes": len(planned)}],
    }
    write_failures(blobs, container, prefix + FAILURES, target, run_id, failed)  # before the pointer flips
    blobs.write_json(container, prefix + "manifest.json", run_manifest)
    current = flip_pointer(blobs, container, target, run_id, published, previous)
    return _outcome(blobs, container, plan, current)


def write_results(blobs: BlobStore, staging: str, container: str, name: str, accepted: list[tuple[str, ShardCheck]],
                  copy: BlockCopy) -> int:
    """Write a first revision's results.csv and its per-postcode index (before the pointer flips); returns the
    rows. The accepted shards' bytes were staged as they were validated (BlockCopy): committing them, after
    the header, is the copy. Shards not in postcode order one after another are merged instead."""
    combined = combined_index(accepted)
    if combined is None:
        return merge_results(blobs, staging, container, name, accepted, None, set())
    index, size = combined
    copy.write(HEADER)
    copy.commit([copy.end_part()] + [check.blocks for _, check in accepted])
    write_results_index(blobs, container, name, {"format": INDEX_FORMAT, "size": size, "columns": RESULT_COLUMNS,
                                                 "postcodes": index})
    return sum(check.rows for _, check in accepted)


def merge_results(blobs: BlobStore, staging: str, container: str, name: str, accepted: list[tuple[str, ShardCheck]],
                  retried: str | None, rescored: set[str]) -> int:
    """results.csv and its index as the rows of the accepted shards (from the staging container; only the app
    writes `container`), merged in postcode and date order, with the rows of the revision a retry retries
    (`retried`) for the postcodes it did not rescore; returns the rows."""
    rows = [0]
    streams = [data_rows(blobs, staging, blob) for blob, _ in accepted]
    if retried is not None:
        streams.append(data_rows(blobs, container, retried, keep=lambda pc: pc not in rescored))
    merged = heapq.merge(*streams, key=lambda r: (r[0], r[1]))
    indexer = ResultsIndexer()  # the dashboard's per-postcode index, built from the same streamed bytes
    blobs.upload_stream(container, name, indexer.wrap(csv_chunks(merged, rows)))
    write_results_index(blobs, container, name, indexer.finish())
    return rows[0]


def _outcome(blobs: BlobStore, container: str, plan: Plan, current: Revision) -> Published:
    """After the flip: move `latest` (conditionally), and report what the run now shows."""
    move_latest(blobs, container, plan, current)
    manifest = blobs.read_json(container, current.manifest)
    return Published(results=manifest["results"], manifest=f"{container}/{current.manifest}",
                     revision=current.revision, rows=manifest["rows"], postcodes_scored=manifest["postcodes_scored"],
                     postcodes_failed_count=len(manifest["postcodes_failed"]),
                     failures=f"{container}/{current.prefix}{FAILURES}", state=RunState(manifest["state"]),
                     cost=manifest["cost"])


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


def _shard_summary(shard: ShardOutcome, plan: Plan, gathered: Gathered) -> dict:
    """The shard map: which postcodes ran where, each attempt's group, exit code and times."""
    status = shard.status
    postcodes = plan.shards[shard.index].postcodes
    return {"index": shard.index, "state": shard.state, "reason": shard.reason,
            "postcodes": [postcodes[0], postcodes[-1], len(postcodes)],
            "attempts": [_attempt_summary(a) for a in shard.attempts],
            "scored": len(gathered.scored.get(shard.index, [])) if status else 0,
            "failed": status.failed if status else 0,
            "rows": status.rows if status else 0, "timings": status.timings if status else {}}


def _attempt_summary(attempt: Attempt) -> dict:
    return {"attempt": attempt.attempt, "group": attempt.group, "state": attempt.state,
            "exit_code": attempt.exit_code, "started": attempt.started, "finished": attempt.finished,
            "reason": attempt.reason, "deleted": attempt.deleted}
