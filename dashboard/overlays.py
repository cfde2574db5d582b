"""Actuals and accuracy overlaid on one postcode's forecast, from the accuracy feature's own output.

pipeline/accuracy.py publishes runs/<run>/accuracy/<evaluation>/{metrics.csv,pairs.csv} and writes the
pointer runs/<run>/accuracy.json last; the pointer names both files ("container/blob"). This module follows
the pointer through pipeline.accuracy.read_accuracy (one definition of where things are) and takes:

    actuals   date -> actual, from the postcode's rows of pairs.csv (PAIR_COLUMNS)
    metrics   the postcode's row of metrics.csv (level == "postcode", key == the postcode; METRIC_COLUMNS
              without level/key: n, me, mae, rmse, wape, mase, n_80, coverage_80, winkler_80, ...); NA -> None

No pointer means no evaluation yet: no overlay, never an error. A pointer to missing or unreadable files
means no overlay and a logged warning (the page still shows the forecast).

Cost: pairs.csv is as large as the run's results. A pointer naming `pairs_index` and `metrics_index`
(pipeline/accuracy_index.py) is read through them: two small indexes and the postcode's two byte ranges.
An evaluation published before those indexes is read whole, as it always was.
"""

from __future__ import annotations

import csv
import io
import logging

from dashboard.results_index import ResultsChanged
from pipeline import accuracy_index
from pipeline.accuracy import METRIC_COLUMNS, read_accuracy
from scoring.blobstore import BlobNotFound, BlobStore

log = logging.getLogger(__name__)

METRIC_NAMES = [c for c in METRIC_COLUMNS if c not in ("level", "key")]
COUNTS = {"n", "n_80", "n_95"}


def read_overlays(blobs: BlobStore, container: str, run_id: str, postcode: str) -> tuple[dict[str, float],
                                                                                       dict | None]:
    """(date -> actual, metrics) for one postcode of a run; ({}, None) when there is nothing to overlay."""
    try:
        pointer = read_accuracy(blobs, container, run_id)
    except ValueError as e:  # not JSON: the pointer is written whole, so this is damage, not a race
        log.warning("run %s: accuracy pointer unreadable, no overlay: %s", run_id, e)
        return {}, None
    if pointer is None:
        return {}, None
    try:
        if isinstance(pointer, dict) and pointer.get("pairs_index") and pointer.get("metrics_index"):
            return _indexed(blobs, pointer, postcode)
        metrics_text = _read(blobs, pointer["metrics"])
        pairs_text = _read(blobs, pointer["pairs"])
        return postcode_actuals(pairs_text, postcode), postcode_metrics(metrics_text, postcode)
    except (KeyError, TypeError, ValueError, BlobNotFound, ResultsChanged) as e:
        log.warning("run %s: accuracy pointer %s names files that cannot be read, no overlay: %s",
                    run_id, pointer.get("evaluation") if isinstance(pointer, dict) else pointer, e)
        return {}, None


def _indexed(blobs: BlobStore, pointer: dict, postcode: str) -> tuple[dict[str, float], dict | None]:
    """Only the postcode's slices: its pairs rows and its metrics row, each by one ranged read."""
    actuals = {r["date"]: float(r["actual"]) for r in accuracy_index.postcode_pairs(blobs, pointer, postcode)}
    row = accuracy_index.postcode_metrics_row(blobs, pointer, postcode)
    metrics = None if row is None else {name: _value(name, row.get(name, "NA")) for name in METRIC_NAMES}
    return actuals, metrics


def _read(blobs: BlobStore, where: str) -> str:
    container, _, name = where.partition("/")
    if not container or not name:
        raise ValueError(f"{where!r} is not container/blob")
    return blobs.read_bytes(container, name).decode("utf-8")


def postcode_actuals(pairs_csv: str, postcode: str) -> dict[str, float]:
    """date -> actual for the postcode's rows of pairs.csv."""
    return {r["date"]: float(r["actual"]) for r in csv.DictReader(io.StringIO(pairs_csv))
            if r.get("postcode") == postcode}


def postcode_metrics(metrics_csv: str, postcode: str) -> dict | None:
    """The postcode's metrics row (counts as int, NA as None), or None when the postcode had no actuals."""
    for row in csv.DictReader(io.StringIO(metrics_csv)):
        if row.get("level") == "postcode" and row.get("key") == postcode:
            return {name: _value(name, row.get(name, "NA")) for name in METRIC_NAMES}
    return None


def _value(name: str, text: str | None) -> float | int | None:
    if text in (None, "", "NA"):
        return None
    return int(text) if name in COUNTS else float(text)
