"""Where a run's published results are: revisions behind one pointer, and the model's `latest` pointer.

    runs/<run>/revisions/<rev>/results.csv     written first, never changed afterwards
    runs/<run>/revisions/<rev>/manifest.json
    runs/<run>/current.json                    {"revision", "results", "manifest", ...}: flipped last
    latest/<model>.json                        the model's newest complete champion run

Each publish (a retry included) writes a new revision directory, then flips `current.json` with a
conditional write (If-None-Match: * for the first, If-Match: <ETag read> for a retry), so a reader who
follows the pointer reads the files of one revision only. Blob Storage has no multi-blob transaction; one
conditional single-blob write is the atomic step (Blob service REST: "Specifying conditional headers").

Read a run's results ONLY through `current_revision` (the HTTP routes, the retry route, the dashboard
and the R client all do): the pointer is the truth, the folder layout is not.
"""

from __future__ import annotations

from dataclasses import dataclass

from scoring.blobstore import BlobChanged, BlobStore

from . import naming
from .payloads import Plan

POINTER = "current.json"
LATEST_ATTEMPTS = 5


class UnreadablePointer(ValueError):
    """The run's pointer exists but cannot be followed; the message names the blob."""


class RevisionConflict(RuntimeError):
    """Another publish moved the pointer since it was read: transient, the publish is retried."""


@dataclass(frozen=True)
class Revision:
    run_id: str
    revision: str
    published: str
    etag: str  # of the pointer version this was read from: the If-Match of the next flip

    @property
    def prefix(self) -> str:
        return revision_prefix(self.run_id, self.revision)

    @property
    def results(self) -> str:
        return self.prefix + "results.csv"

    @property
    def manifest(self) -> str:
        return self.prefix + "manifest.json"


def pointer_blob(run_id: str) -> str:
    return naming.run_prefix(run_id) + POINTER


def revision_prefix(run_id: str, revision: str) -> str:
    if not naming.is_run_id(revision):  # a revision is named after the run (or retry) that published it
        raise ValueError(f"invalid revision name {revision!r}")
    return f"{naming.run_prefix(run_id)}revisions/{revision}/"


def current_revision(blobs: BlobStore, container: str, run_id: str) -> Revision | None:
    """The run's published revision (its files: `.prefix`, `.results`, `.manifest`), or None if it has
    published nothing. UnreadablePointer, naming the blob, if the pointer is not JSON or not a pointer.

    The one way every reader (HTTP routes, dashboard, accuracy, retry, publish) finds a run's files."""
    try:
        found = blobs.read_json_versioned(container, pointer_blob(run_id))
    except ValueError as e:  # the message names the blob
        raise UnreadablePointer(str(e)) from None
    if found is None:
        return None
    value, etag = found
    try:
        revision = Revision(run_id, str(value["revision"]), str(value["published"]), etag)
        revision_prefix(run_id, revision.revision)
    except (KeyError, TypeError, ValueError) as e:
        raise UnreadablePointer(f"blob {container}/{pointer_blob(run_id)} is corrupt: {e}") from None
    return revision


def flip_pointer(blobs: BlobStore, container: str, run_id: str, revision: str, published: str,
                 expected: Revision | None) -> Revision:
    """Make `revision` the run's current one, if the pointer is still what the caller read (`expected`)."""
    value = {"run_id": run_id, "revision": revision, "published": published,
             "results": revision_prefix(run_id, revision) + "results.csv",
             "manifest": revision_prefix(run_id, revision) + "manifest.json"}
    try:
        etag = blobs.write_json_if(container, pointer_blob(run_id), value, expected.etag if expected else None)
    except BlobChanged as e:
        raise RevisionConflict(f"run {run_id} was published concurrently: {e}") from None
    return Revision(run_id, revision, published, etag)


def latest_order(plan: Plan) -> list[str]:
    """`latest` only moves forward: by the input's time, then the plan's."""
    return [plan.input_time, plan.planned_at]


def move_latest(blobs: BlobStore, container: str, plan: Plan, current: Revision) -> bool:
    """Point latest/<model>.json at this run's revision when it is the model's newest complete champion run.

    A retry moves it only if it already names the run being retried (to the new revision). The write is
    conditional on the version read; if another run moved it meanwhile, decide again on what it wrote."""
    # A retry plans only the failed postcodes (a subset), yet completes the whole run it retries.
    if (plan.subset and not plan.retry_of) or not (plan.champion or plan.retry_of):
        return False
    name = naming.latest_pointer(plan.model)
    order = latest_order(plan)
    for _ in range(LATEST_ATTEMPTS):
        found = blobs.read_json_versioned(container, name)
        pointer, etag = found if found else ({}, None)
        same_run = pointer.get("run_id") == current.run_id
        if plan.retry_of and not same_run:
            return False
        if pointer and not same_run and list(pointer.get("order") or ["", ""]) >= order:
            return False  # a newer input (or the same input planned later) is already there
        if same_run and pointer.get("revision") == current.revision:
            return True  # this publish already moved it (the activity is being retried)
        value = {"run_id": current.run_id, "revision": current.revision, "published": current.published,
                 "results": current.results, "manifest": current.manifest,
                 "order": pointer.get("order") if same_run and pointer.get("order") else order}
        try:
            blobs.write_json_if(container, name, value, etag)
            return True
        except BlobChanged:
            continue
    raise RevisionConflict(f"{container}/{name} kept changing; not moved after {LATEST_ATTEMPTS} attempts")
