"""POST /api/runs/{id}/retry: which retry instance to start, and what it reruns.

One retry per run at a time. Retry instance ids are deterministic (`<run>-retry<n>`, n = 1 + the retries
that exist), so two requests that race compute the same id and the durable start of the loser fails with
"already exists" (the extension refuses to replace an instance that is pending or running). A request that
finds the newest retry still active is refused before it starts anything.
"""

from __future__ import annotations

import azure.durable_functions as df

from scoring.blobstore import BlobNotFound, BlobStore

from . import naming
from .revisions import current_revision, pointer_blob
from .run_requests import RunRequest
from .run_status import FINISHED
from .settings import Settings

MAX_RETRIES = 99


class RetryRefused(ValueError):
    def __init__(self, message: str, status: int = 409, blob: str = ""):
        super().__init__(message)
        self.status = status
        self.blob = blob


async def next_retry_id(client: df.DurableOrchestrationClient, root: str) -> tuple[str, str]:
    """(id for the next retry of root, id of a retry still active or "")."""
    previous = ""
    for n in range(1, MAX_RETRIES + 1):
        run_id = naming.retry_run_id(root, n)
        status = await client.get_status(run_id)
        if not status or status.runtime_status is None:
            if previous:
                prev = await client.get_status(previous)
                if prev.runtime_status is not None and prev.runtime_status.value not in FINISHED:
                    return run_id, previous
            return run_id, ""
        previous = run_id
    raise RetryRefused(f"run {root} has been retried {MAX_RETRIES} times; start a new run instead")


def retry_request(blobs: BlobStore, settings: Settings, original: dict, root: str) -> RunRequest:
    """The failed postcodes of root's current publication, on the same model version and input version."""
    container = settings.results_container
    try:
        current = current_revision(blobs, container, root)
    except ValueError as e:
        raise RetryRefused(str(e), 422, f"{container}/{pointer_blob(root)}") from None
    if current is None:
        raise RetryRefused(f"run {root} published no results; start a new run instead")
    where = f"{container}/{current.manifest}"
    try:
        manifest = blobs.read_json(container, current.manifest)
        failed = sorted(manifest["postcodes_failed"])
        version, input_blob = manifest["model"]["version"], manifest["input"]["blob"]
        etag = manifest["input"].get("etag", "")
    except BlobNotFound:
        raise RetryRefused(f"run {root}'s current revision has no manifest", 422, where) from None
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise RetryRefused(f"run {root}'s manifest is corrupt: {type(e).__name__} {str(e)[:200]}", 422,
                           where) from None
    if not failed:
        raise RetryRefused(f"run {root} has no failed postcodes to retry")
    return RunRequest.from_json({**original, "version": version, "input_blob": input_blob, "postcodes": failed,
                                 "trigger": "retry", "retry_of": root, "dry_run": False, "input_etag": etag})


def lost_start_race(error: Exception) -> bool:
    """The durable start failed because another request started the same retry id first."""
    return "already exists" in str(error)
