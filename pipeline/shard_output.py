"""A shard's staged results.csv, read as a stream: validated row by row, then merged into a run's results.

Nothing here holds more than one row per shard plus per-postcode counters: publish memory does not grow
with postcodes x horizon.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Iterator

from scoring.blobstore import BlobStore

RESULT_COLUMNS = ["postcode", "date", "volume", "lower_80", "upper_80", "lower_95", "upper_95", "model",
                  "model_version"]
# Interval bounds in the order they must hold around the volume.
ORDER = ("lower_95", "lower_80", "volume", "upper_80", "upper_95")
OUT_CHUNK = 4 << 20  # bytes per staged block of the published results.csv
_INDEX = {c: i for i, c in enumerate(RESULT_COLUMNS)}


class ShardRejected(ValueError):
    """The shard's output cannot be published; the message says why (it becomes its postcodes' reason)."""


class _ChunkReader(io.RawIOBase):
    """A file over an iterator of byte chunks, so TextIOWrapper can hand out one line at a time."""

    def __init__(self, chunks: Iterable[bytes]):
        self._chunks = iter(chunks)
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not len(self._pending):
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def csv_rows(chunks: Iterable[bytes]) -> Iterator[list[str]]:
    """Rows of a UTF-8 CSV arriving in byte chunks, read one line at a time."""
    text = io.TextIOWrapper(io.BufferedReader(_ChunkReader(chunks)), encoding="utf-8", newline="")
    yield from csv.reader(text)


def check_row(row: list[str]) -> str:
    """'' if the row is publishable, else what is wrong with it: volume finite >= 0; intervals empty (the
    model gave none) or finite, and lower_95 <= lower_80 <= volume <= upper_80 <= upper_95."""
    if len(row) != len(RESULT_COLUMNS):
        return f"{len(row)} fields, expected {len(RESULT_COLUMNS)}"
    values: list[tuple[str, float]] = []
    for column in ORDER:
        text = row[_INDEX[column]]
        if text == "" and column != "volume":
            continue
        try:
            v = float(text)
        except ValueError:
            return f"{column} {text[:40]!r} is not a number"
        if not math.isfinite(v):
            return f"{column} is {text}"
        values.append((column, v))
    if values[[c for c, _ in values].index("volume")][1] < 0:
        return f"negative volume {row[_INDEX['volume']]}"
    for (low_name, low), (high_name, high) in zip(values, values[1:], strict=False):
        if low > high:
            return f"{low_name} {low} > {high_name} {high}"
    return ""


def validate_shard(blobs: BlobStore, container: str, blob: str, scored: list[str], assigned: set[str],
                   horizon: int, model: str, version: str) -> None:
    """ShardRejected unless the staged CSV holds exactly horizon valid rows for each scored postcode, and
    the shard reported only postcodes it was assigned."""
    stray = sorted(set(scored) - assigned)
    if stray:
        raise ShardRejected(f"reported postcode(s) it was not assigned, e.g. {stray[0]}")
    rows = csv_rows(blobs.stream(container, blob))
    header = next(rows, None)
    if header != RESULT_COLUMNS:
        raise ShardRejected(f"unexpected columns {str(header)[:200]}")
    expected = set(scored)
    counts: dict[str, int] = {}
    previous = ("", "")
    for line, row in enumerate(rows, start=2):
        problem = check_row(row)
        if problem:
            raise ShardRejected(f"line {line}: {problem}")
        pc = row[0]
        if pc not in expected:
            raise ShardRejected(f"line {line}: rows for postcode {pc[:40]!r}, which it did not report as scored")
        if (row[7], row[8]) != (model, version):
            raise ShardRejected(f"line {line}: model {row[7][:40]}/{row[8][:40]}, expected {model}/{version}")
        if (pc, row[1]) <= previous:  # publish merges shards as sorted streams
            raise ShardRejected(f"line {line}: rows not sorted by postcode and date (the worker sorts them)")
        previous = (pc, row[1])
        counts[pc] = counts.get(pc, 0) + 1
    wrong = [pc for pc in scored if counts.get(pc) != horizon]
    if wrong:
        raise ShardRejected(f"{len(wrong)} postcode(s) do not have {horizon} rows, e.g. {wrong[0]} has "
                            f"{counts.get(wrong[0], 0)}")


def data_rows(blobs: BlobStore, container: str, blob: str, keep=None) -> Iterator[list[str]]:
    """The data rows of a results CSV (sorted by postcode and date, as the worker writes them)."""
    rows = csv_rows(blobs.stream(container, blob))
    next(rows, None)
    for row in rows:
        if keep is None or keep(row[0]):
            yield row


def csv_chunks(rows: Iterable[list[str]], counter: list[int]) -> Iterator[bytes]:
    """RESULT_COLUMNS then rows, as ~OUT_CHUNK bytes of CSV at a time (one block each); counter[0] counts
    the data rows."""
    chunk_bytes = OUT_CHUNK
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(RESULT_COLUMNS)
    for row in rows:
        writer.writerow(row)
        counter[0] += 1
        if out.tell() >= chunk_bytes:
            yield out.getvalue().encode()
            out.seek(0)
            out.truncate()
    yield out.getvalue().encode()
