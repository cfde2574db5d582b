"""What the /api/runs routes decide, apart from HTTP: which model versions exist, what a retry reruns.

function_app.py keeps only the triggers; these functions do blocking Blob I/O, so async handlers call them
through asyncio.to_thread.
"""

from __future__ import annotations

import dataclasses

from scoring.blobstore import BlobStore
from scoring.modelstore import ModelStore, VersionNotFound

from .naming import run_prefix
from .payloads import RunRequest, Trigger
from .run_requests import RequestError
from .settings import Settings


class RetryRefused(ValueError):
    """A retry that cannot start (409); the message says why."""


def check_model_version(model: str, version: str, settings: Settings, blobs: BlobStore) -> None:
    """Refuse at the door a model or version that does not exist (a 400 naming it), before any run."""
    store = ModelStore(blobs, settings.models_container)
    try:
        store.read_manifest(model, store.resolve_version(model, version))
    except VersionNotFound as e:
        raise RequestError("version" if store.versions(model) else "model", str(e)) from None


def retry_request(original: RunRequest, run_id: str, settings: Settings, blobs: BlobStore) -> RunRequest:
    """The request that reruns only the postcodes a finished run failed, merged into that run's results.

    `original` is the finished run's own request (it may itself be a retry: the retry then completes the
    run that one retried). A retry completes a *published* run; the run's current manifest (after earlier
    retries) says what failed.
    """
    root = original.retry_of or run_id
    prefix = run_prefix(root)
    if not blobs.exists(settings.results_container, prefix + "_SUCCESS"):
        raise RetryRefused(f"run {root} published no results; start a new run instead")
    manifest = blobs.read_json(settings.results_container, prefix + "manifest.json")
    failed = sorted(manifest["postcodes_failed"])
    if not failed:
        raise RetryRefused(f"run {root} has no failed postcodes to retry")
    return dataclasses.replace(original, version=manifest["model"]["version"], input_blob=manifest["input"]["blob"],
                               postcodes=failed, trigger=Trigger.RETRY, retry_of=root, dry_run=False)
