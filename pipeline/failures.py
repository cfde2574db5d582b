"""A run's failed postcodes, with their reasons: gathered from blobs, kept in blobs, read by every route.

Durable history carries only counts (slim history), so the reasons are gathered where they are written:
the plan's own failures (runs/<run>/plan/plan.json), each shard's status.json in STAGING_CONTAINER, and the
outcome of each shard that failed as a whole. They are kept as

    runs/<run>/revisions/<rev>/failures.json   published with the revision (before its pointer flips)
    runs/<run>/failures.json                   a run that published nothing (all shards failed, cancelled)

each {"run_id", "revision", "count", "failures": {postcode: reason}}. GET /api/runs/{id}/failures and the
dashboard's failures route answer through `failures_view`, one reader for both.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from scoring.blobstore import BlobNotFound, BlobStore
from scoring.secrets import scrub

from . import naming
from .payloads import PayloadError, Plan, RunRequest, RunResult, ShardOutcome, decode
from .revisions import current_revision
from .run_status import FINISHED, RUN_ORCHESTRATOR, run_result

FAILURES = "failures.json"


class FailuresError(ValueError):
    """A failures request that cannot be answered: HTTP status, the field at fault, the message."""

    def __init__(self, status: int, field: str, message: str):
        super().__init__(message)
        self.status = status
        self.field = field


@dataclass
class Gathered:
    """What the shards and the plan say: every postcode not scored, with its reason, and each accepted-so-far
    shard's scored postcodes (publish validates those against the staged rows)."""

    failed: dict[str, str]
    scored: dict[int, list[str]]
    rejected: dict[int, str] = dataclasses.field(default_factory=dict)  # shard -> why its status.json is unusable


def gather(blobs: BlobStore, staging: str, plan: Plan, shards: list[ShardOutcome]) -> Gathered:
    """The plan's failures, each ok shard's status.json (only postcodes assigned to it count), and every
    postcode of a shard that failed as a whole, with the shard's reason. A status.json that is gone or not of
    the worker's shape (containers run model code) rejects its shard, with the reason on its postcodes."""
    failed = dict(plan.failed)
    scored: dict[int, list[str]] = {}
    rejected: dict[int, str] = {}
    for outcome in shards:
        assigned = plan.shards[outcome.index].postcodes
        if outcome.state.ok and outcome.status is not None:
            try:
                reported, listed = _status_lists(blobs, staging, outcome.status.status_blob)
            except ValueError as e:
                rejected[outcome.index] = str(e)
                failed.update({pc: f"not published: shard {outcome.index} output rejected: {e}" for pc in assigned})
                continue
            mine = set(assigned)
            failed.update({pc: scrub(why) for pc, why in reported.items() if pc in mine})
            scored[outcome.index] = listed
        else:
            why = f"shard {outcome.index} {outcome.state}: {outcome.reason}"
            failed.update({pc: why for pc in assigned})
    return Gathered(failed, scored, rejected)


def _status_lists(blobs: BlobStore, staging: str, blob: str) -> tuple[dict[str, str], list[str]]:
    """(failed postcode -> reason, scored postcodes) of a worker's status.json; ValueError saying what is wrong."""
    try:
        status = blobs.read_json(staging, blob)
    except BlobNotFound:
        raise ValueError("its status.json is gone") from None
    if not isinstance(status, dict):
        raise ValueError("its status.json is not a JSON object")
    failed, scored = status.get("failed", {}), status.get("scored", [])
    if not isinstance(failed, dict) or not all(isinstance(v, str) for v in failed.values()) \
            or not isinstance(scored, list) or not all(isinstance(pc, str) for pc in scored):
        raise ValueError("its status.json does not list scored and failed postcodes as the worker writes them")
    return failed, scored


def write_failures(blobs: BlobStore, container: str, blob: str, run_id: str, revision: str,
                   failed: dict[str, str]) -> str:
    blobs.write_json(container, blob, {"run_id": run_id, "revision": revision, "count": len(failed),
                                       "failures": dict(sorted(failed.items()))})
    return f"{container}/{blob}"


def read_failures(blobs: BlobStore, path: str) -> dict[str, str]:
    container, _, blob = path.partition("/")
    stored = blobs.read_json(container, blob)
    failures = stored.get("failures")
    if not isinstance(failures, dict):
        raise ValueError(f"blob {path} is corrupt: no 'failures' object")
    return {str(pc): str(why) for pc, why in failures.items()}


def with_postcodes(blobs: BlobStore, request: RunRequest) -> RunRequest:
    """A retry names its postcodes by reference (the failures.json of the revision it completes): the request
    with them read in, as planning takes it. Any other request as it is."""
    if not request.postcodes_blob:
        return request
    try:
        failed = read_failures(blobs, request.postcodes_blob)
    except BlobNotFound:
        raise ValueError(f"the failures this retry reruns are missing ({request.postcodes_blob})") from None
    return dataclasses.replace(request, postcodes=sorted(failed), postcodes_blob=None)


def published_failures(blobs: BlobStore, container: str, run_id: str) -> tuple[str, dict[str, str]] | None:
    """(the run its publication belongs to, its current revision's failures), or None if it published
    nothing. Revisions from before failures.json keep them in their manifest."""
    current = current_revision(blobs, container, run_id)
    if current is None:
        return None
    try:
        return current.run_id, read_failures(blobs, f"{container}/{current.prefix}{FAILURES}")
    except BlobNotFound:
        manifest = blobs.read_json(container, current.manifest)
        return current.run_id, dict(manifest.get("postcodes_failed") or {})


def result_failures(blobs: BlobStore, result: RunResult) -> dict[str, str]:
    """The failed postcodes a run's own result names (its failures blob; inline for runs before slim history)."""
    if result.failures:
        return read_failures(blobs, result.failures)
    return dict(result.postcodes_failed)


def failures_view(run_id: str, status: Any, blobs: BlobStore, container: str) -> dict:
    """GET /api/runs/{id}/failures and the dashboard's: the failed postcodes of the run's current publication
    (a retry's id leads to the run it completed), else those its result names; a running run has none yet.
    `status` is the run's DurableOrchestrationStatus (with input), or None."""
    if not naming.is_run_id(run_id):
        raise FailuresError(400, "id", f"{run_id!r} is not a run id (lowercase letters, digits and '-')")
    if not status or status.name != RUN_ORCHESTRATOR:
        raise FailuresError(404, "id", f"no run {run_id!r}")
    runtime = status.runtime_status.value if status.runtime_status else "Unknown"
    try:
        root = decode(status.input_, RunRequest).retry_of if runtime in FINISHED else None
    except PayloadError:
        root = None
    try:
        for target in [run_id] + ([root] if root and naming.is_run_id(root) else []):
            found = published_failures(blobs, container, target)
            if found is not None:
                return _view(run_id, found[0], found[1], runtime)
        result = run_result(status)
        failed = result_failures(blobs, result) if result is not None else {}
    except PayloadError as e:
        raise FailuresError(409, "id", f"run {run_id}'s result cannot be read: {e}") from None
    except BlobNotFound as e:
        raise FailuresError(409, "id", f"run {run_id}'s failures are missing: {e}") from None
    except ValueError as e:  # a corrupt pointer or failures blob (the message names it)
        raise FailuresError(409, "id", f"run {run_id}: {e}") from None
    return _view(run_id, None, failed, runtime)


def _view(run_id: str, publication: str | None, failed: dict[str, str], runtime: str) -> dict:
    return {"run_id": run_id, "publication": publication, "finished": runtime in FINISHED, "count": len(failed),
            "failures": [{"postcode": pc, "reason": failed[pc]} for pc in sorted(failed)]}


def status_failures(blobs: BlobStore, status: Any) -> dict[str, str] | None:
    """The run's own failed postcodes, for GET /api/runs/{id} (which lists the first few); None when it has no
    result or they cannot be read (the view then shows the count and the failures route only)."""
    try:
        result = run_result(status)
        return result_failures(blobs, result) if result is not None and result.failures else None
    except (BlobNotFound, ValueError):  # PayloadError is a ValueError; run_view reports it
        return None
