"""What the /api/runs routes decide, apart from HTTP: which model versions and inputs exist, what a retry
reruns.

function_app.py keeps only the triggers; these functions do blocking Blob I/O, so async handlers call them
through asyncio.to_thread.
"""

from __future__ import annotations

import dataclasses

from scoring.blobstore import BlobNotFound, BlobStore
from scoring.modelstore import CorruptStore, ModelStore, VersionNotFound

from .failures import FAILURES
from .payloads import RunRequest, Trigger
from .planning import PlanError, check_input_exists
from .revisions import current_revision, pointer_blob
from .run_requests import RequestError
from .settings import Settings


class RetryRefused(ValueError):
    """A retry that cannot start; the message says why, `status` is the HTTP status (409, or 422 for a
    corrupt publication) and `blob` names the blob at fault, if any."""

    def __init__(self, message: str, status: int = 409, blob: str = ""):
        super().__init__(message)
        self.status = status
        self.blob = blob


def check_model_version(model: str, version: str, settings: Settings, blobs: BlobStore) -> None:
    """Refuse at the door a model or version that does not exist (a 400 naming it), before any run; a
    corrupt alias or manifest is a 422 naming the blob (the store, not the request, is wrong)."""
    store = ModelStore(blobs, settings.models_container)
    try:
        store.read_manifest(model, store.resolve_version(model, version))
    except VersionNotFound as e:
        raise RequestError("version" if store.versions(model) else "model", str(e)) from None
    except CorruptStore as e:
        raise RequestError("version", str(e), status=422) from None


def check_input(input_blob: str, settings: Settings, blobs: BlobStore) -> None:
    """Refuse at the door an input that does not exist now (or no `latest`), before any run."""
    try:
        check_input_exists(blobs, settings, input_blob)
    except PlanError as e:
        raise RequestError("input", str(e)) from None


def retry_request(original: RunRequest, run_id: str, settings: Settings, blobs: BlobStore) -> RunRequest:
    """The request that reruns only the postcodes a finished run failed, as a new revision of that run.

    `original` is the finished run's own request (it may itself be a retry: the retry then completes the
    run that one retried). A retry completes a *published* run: its current revision says what failed, on
    which model version and which input version (the retry is pinned to that input ETag).
    """
    root = original.retry_of or run_id
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
    # By reference when the revision keeps its failures.json (slim history: the retry's input stays small).
    listed = current.prefix + FAILURES
    by_reference = blobs.exists(container, listed)
    return dataclasses.replace(original, version=version, input_blob=input_blob,
                               postcodes=None if by_reference else failed,
                               postcodes_blob=f"{container}/{listed}" if by_reference else None,
                               trigger=Trigger.RETRY, retry_of=root, dry_run=False, input_etag=etag)
