"""Upgrade runs published by the first release, which wrote them flat, into the revision layout.

    first release:  runs/<run>/results.csv, runs/<run>/manifest.json, then runs/<run>/_SUCCESS last
    now:            runs/<run>/revisions/<rev>/{results.csv, manifest.json}, then runs/<run>/current.json

Readers follow only `current.json` (pipeline/revisions.py), so after an upgrade the old runs are invisible
until adopted. Adoption copies a complete flat run (one with `_SUCCESS`) into a revision named after the run
that last published it, then writes the pointer with If-None-Match: * (it never replaces a pointer). The
flat files are left where they are. Safe to run again, and while the app runs.

    python -m pipeline.flat_layout            # with the app's settings (STORAGE / STORAGE_ACCOUNT_URL ...)
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from dashboard.results_index import ResultsIndexer, write_results_index
from scoring.blobstore import BlobStore

from . import naming
from .revisions import RevisionConflict, current_revision, flip_pointer, revision_prefix

SUCCESS = "_SUCCESS"


@dataclass(frozen=True)
class Adoption:
    run_id: str
    outcome: str  # "adopted", "already current" or why it was skipped


def flat_runs(blobs: BlobStore, container: str) -> list[str]:
    """Run ids that have a first-release success marker (runs/<run>/_SUCCESS)."""
    found = []
    for blob in blobs.list(container, "runs/"):
        parts = blob.name.split("/")
        if len(parts) == 3 and parts[2] == SUCCESS and naming.is_run_id(parts[1]):
            found.append(parts[1])
    return sorted(found)


def adopt_flat_run(blobs: BlobStore, container: str, run_id: str) -> Adoption:
    """Make one flat run readable through its pointer (see the module docstring)."""
    if current_revision(blobs, container, run_id) is not None:
        return Adoption(run_id, "already current")
    flat = naming.run_prefix(run_id)
    if not blobs.exists(container, flat + SUCCESS):
        return Adoption(run_id, "skipped: no _SUCCESS marker (the first release never finished publishing it)")
    try:
        manifest = blobs.read_json(container, flat + "manifest.json")
    except ValueError as e:  # names the blob
        return Adoption(run_id, f"skipped: {e}")
    last = (manifest.get("revisions") or [{}])[-1].get("run_id")
    revision = last if isinstance(last, str) and naming.is_run_id(last) and last.startswith(run_id) else run_id
    prefix = revision_prefix(run_id, revision)
    indexer = ResultsIndexer()  # the dashboard's per-postcode index, as publish builds it
    blobs.upload_stream(container, prefix + "results.csv", indexer.wrap(blobs.stream(container, flat + "results.csv")))
    write_results_index(blobs, container, prefix + "results.csv", indexer.finish())
    published = str(manifest.get("published") or blobs.read_bytes(container, flat + SUCCESS).decode().strip())
    blobs.write_json(container, prefix + "manifest.json",
                     {**manifest, "revision": revision, "results": f"{container}/{prefix}results.csv",
                      "adopted_from": f"{container}/{flat}"})
    try:
        flip_pointer(blobs, container, run_id, revision, published, expected=None)
    except RevisionConflict:  # published or adopted meanwhile: that pointer stands
        return Adoption(run_id, "already current")
    return Adoption(run_id, "adopted")


def main() -> int:
    from .services import settings, storage

    blobs, container = storage(), settings().results_container
    runs = flat_runs(blobs, container)
    for run_id in runs:
        print(f"{run_id}: {adopt_flat_run(blobs, container, run_id).outcome}")
    print(f"{len(runs)} first-release run(s) in {container}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
