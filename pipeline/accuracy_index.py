"""Per-postcode byte indexes of an evaluation's pairs.csv and metrics.csv, so one postcode's overlay is read
with two ranged downloads instead of two whole files.

pairs.csv is sorted by postcode (then date), so each postcode's rows are one byte range: its index,
`pairs.index.json`, has the results index's format (dashboard/results_index.py) and is read the same way.
metrics.csv holds one `postcode` row per postcode among the overall, version and lead rows: its index,
`metrics.index.json`, maps each postcode to that row's range, in the same format (rows always 1).

evaluate_run writes both beside the CSVs before it flips runs/<run>/accuracy.json, whose `pairs_index` and
`metrics_index` name them: a reader that sees the pointer sees complete indexes. A pointer without them (an
evaluation published before indexes) is read whole, as before.

At 3,000 postcodes x 60 days pairs.csv is ~15 MB and the two indexes ~75 kB each (compact JSON, ~25 bytes a
postcode); one postcode's slices are ~5 kB: ~155 kB read per view instead of ~16 MB.
"""

from __future__ import annotations

import csv
import io
import json

from dashboard.results_index import (
    INDEX_FORMAT,
    PostcodeNotFound,
    ResultsChanged,
    build_index_from_bytes,
    index_blob,
    lookup,
    read_postcode_rows,
)
from scoring.blobstore import BlobNotFound, BlobStore

POSTCODE_LEVEL = "postcode"


def metrics_index(data: bytes) -> dict:
    """The ranges of metrics.csv's `postcode` rows, keyed by postcode (the row's `key`)."""
    lines = data.splitlines(keepends=True)
    columns = next(csv.reader([lines[0].decode()]))
    ilevel, ikey = columns.index("level"), columns.index("key")
    postcodes: dict[str, list[int]] = {}
    offset = len(lines[0])
    for line in lines[1:]:
        fields = next(csv.reader([line.decode()]))
        if fields[ilevel] == POSTCODE_LEVEL:
            postcodes[fields[ikey]] = [offset, len(line), 1]
        offset += len(line)
    return {"format": INDEX_FORMAT, "size": offset, "columns": columns, "postcodes": postcodes}


def write_accuracy_indexes(blobs: BlobStore, container: str, folder: str, metrics_csv: bytes,
                           pairs_csv: bytes) -> dict[str, str]:
    """Write both indexes under `folder`; returns the pointer's fields naming them ("container/blob")."""
    pairs_name, metrics_name = index_blob(folder + "pairs.csv"), index_blob(folder + "metrics.csv")
    for name, index in ((pairs_name, build_index_from_bytes(pairs_csv)), (metrics_name, metrics_index(metrics_csv))):
        # Compact JSON: every view reads the whole index, and indented it is twice the size.
        blobs.write_bytes(container, name, json.dumps(index, separators=(",", ":")).encode(),
                          content_type="application/json")
    return {"pairs_index": f"{container}/{pairs_name}", "metrics_index": f"{container}/{metrics_name}"}


def split(where: str) -> tuple[str, str]:
    container, _, name = where.partition("/")
    if not container or not name:
        raise ValueError(f"{where!r} is not container/blob")
    return container, name


def postcode_pairs(blobs: BlobStore, pointer: dict, postcode: str) -> list[dict]:
    """The postcode's rows of pairs.csv (strings), read through its index; [] when it has none."""
    container, name = split(pointer["pairs"])
    if index_blob(name) != split(pointer["pairs_index"])[1]:
        raise ValueError(f"pairs index {pointer['pairs_index']!r} is not beside {pointer['pairs']!r}")
    try:
        return read_postcode_rows(blobs, container, name, postcode)
    except PostcodeNotFound:
        return []


def postcode_metrics_row(blobs: BlobStore, pointer: dict, postcode: str) -> dict | None:
    """The postcode's row of metrics.csv (strings), read through its index; None when it has none."""
    container, name = split(pointer["metrics"])
    index_container, index_name = split(pointer["metrics_index"])
    try:
        index = blobs.read_json(index_container, index_name)
    except BlobNotFound:
        raise ValueError(f"metrics index {pointer['metrics_index']} is missing") from None
    try:
        where = lookup(index, postcode)
    except PostcodeNotFound:
        return None
    chunk = blobs.read_bytes(container, name, where.offset, where.length)
    rows = list(csv.DictReader(io.StringIO(chunk.decode("utf-8", errors="replace")), fieldnames=index["columns"]))
    if len(rows) != 1 or rows[0].get("level") != POSTCODE_LEVEL or rows[0].get("key") != postcode:
        raise ResultsChanged(f"metrics.csv changed while postcode {postcode} was read; read it again")
    return rows[0]
