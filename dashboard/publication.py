"""Where a run's published files are, in either publish layout:

    runs/<run>/current.json -> {"revision": <rev>, ...}   files in runs/<run>/revisions/<rev>/ (revisions
                                                           published atomically behind one pointer)
    runs/<run>/_SUCCESS                                    files in runs/<run>/ (one publication per run)

The pointer wins when both exist. Accuracy (pipeline/accuracy.py, read by overlays.py) has its own pointer,
runs/<run>/accuracy.json, whatever the revision.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline import naming
from scoring.blobstore import BlobNotFound, BlobStore

POINTER, SUCCESS = "current.json", "_SUCCESS"


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
    prefix = naming.run_prefix(run_id)
    try:
        pointer = blobs.read_json(container, prefix + POINTER)
    except BlobNotFound:
        return Publication(run_id, prefix) if blobs.exists(container, prefix + SUCCESS) else None
    except ValueError as e:
        raise PublicationError(str(e)) from None
    revision = pointer.get("revision") if isinstance(pointer, dict) else None
    if not isinstance(revision, str) or not naming.is_run_id(revision):  # it becomes part of a blob path
        raise PublicationError(f"blob {container}/{prefix}{POINTER} names no valid revision: {revision!r}")
    return Publication(run_id, f"{prefix}revisions/{revision}/")
