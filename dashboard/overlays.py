"""Actuals and accuracy beside a published run, overlaid on its forecasts when they exist.

    runs/<run>/actuals.csv     postcode,date,actual   (observed volumes; any extra columns are ignored)
    runs/<run>/accuracy.csv    postcode,<metric>,...  (one row per postcode, e.g. mae, mape, coverage_80)

Whatever writes them (an accuracy job, or a person) may also write `actuals.index.json` (same format as
results.index.json, see results_index.py): one postcode is then one ranged read; without it the file is
read whole. Absent files mean no overlay, never an error.
"""

from __future__ import annotations

import csv
import io

from scoring.blobstore import BlobNotFound, BlobStore

from .results_index import PostcodeNotFound, ResultsIndexError, index_blob, read_postcode_rows

ACTUALS, ACCURACY = "actuals.csv", "accuracy.csv"


def read_overlays(blobs: BlobStore, container: str, prefix: str, postcode: str) -> tuple[dict[str, float], dict | None]:
    return read_actuals(blobs, container, prefix + ACTUALS, postcode), read_accuracy(blobs, container,
                                                                                     prefix + ACCURACY, postcode)


def read_actuals(blobs: BlobStore, container: str, name: str, postcode: str) -> dict[str, float]:
    """date -> actual volume for one postcode; {} without an actuals file."""
    if blobs.exists(container, index_blob(name)):
        try:
            rows = read_postcode_rows(blobs, container, name, postcode)
        except PostcodeNotFound:
            return {}
        except ResultsIndexError:
            rows = _rows_of(blobs, container, name, postcode)
    else:
        rows = _rows_of(blobs, container, name, postcode)
    out = {}
    for row in rows:
        value = row.get("actual") or row.get("volume")
        try:
            out[row["date"]] = float(value)
        except (TypeError, ValueError, KeyError):
            continue
    return out


def read_accuracy(blobs: BlobStore, container: str, name: str, postcode: str) -> dict | None:
    rows = _rows_of(blobs, container, name, postcode)
    if not rows:
        return None
    metrics = {}
    for key, value in rows[0].items():
        if key == "postcode" or key is None:
            continue
        try:
            metrics[key] = float(value)
        except (TypeError, ValueError):
            metrics[key] = value
    return metrics


def _rows_of(blobs: BlobStore, container: str, name: str, postcode: str) -> list[dict]:
    try:
        text = blobs.read_bytes(container, name).decode("utf-8", errors="replace")
    except BlobNotFound:
        return []
    return [r for r in csv.DictReader(io.StringIO(text)) if r.get("postcode") == postcode]
