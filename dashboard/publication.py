"""Where a run's published files are: runs/<run>/current.json names the run's current revision, whose files
are in runs/<run>/revisions/<rev>/ (published atomically behind that pointer). The pointer is read through
pipeline.revisions.current_revision only. Accuracy (pipeline/accuracy.py, read by overlays.py) has its own
pointer, runs/<run>/accuracy.json, whatever the revision.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline import naming
from pipeline.revisions import current_revision
from scoring.blobstore import BlobStore


@dataclass(frozen=True)
class Publication:
    run_id: str
    files: str  # prefix of results.csv, results.index.json and manifest.json

    @property
    def run_prefix(self) -> str:
        return naming.run_prefix(self.run_id)

    @property
    def results(self) -> str:
        return self.files + "results.csv"

    @property
    def manifest(self) -> str:
        return self.files + "manifest.json"


class PublicationError(ValueError):
    """The run's pointer exists but cannot be followed (the message names the blob)."""


def find_publication(blobs: BlobStore, container: str, run_id: str) -> Publication | None:
    """The run's current publication, or None when it has published nothing."""
    try:
        current = current_revision(blobs, container, run_id)
    except ValueError as e:
        raise PublicationError(str(e)) from None
    return Publication(run_id, current.prefix) if current is not None else None
