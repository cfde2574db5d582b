"""A per-postcode index of a run's results.csv, so one postcode is read with one ranged download.

results.csv is sorted by postcode (then date), so each postcode's rows are one contiguous byte range.
Publish writes, beside the results, `results.index.json`:

    {"format": 1, "size": <bytes of results.csv>, "columns": [<the header's columns>],
     "postcodes": {"<postcode>": [<offset>, <length>, <rows>], ...}}

A reader fetches the index (~30 bytes a postcode), then bytes [offset, offset + length) of results.csv:
reading one postcode of 3,000 x 60 days moves ~4 kB instead of ~20 MB. Blob Storage serves ranges
natively (`x-ms-range`; azure-storage-blob `download_blob(offset=, length=)`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from scoring.blobstore import BlobNotFound, BlobStore

INDEX_FORMAT = 1


def index_blob(results_blob: str) -> str:
    """runs/<run>/results.csv -> runs/<run>/results.index.json"""
    stem = results_blob[:-len(".csv")] if results_blob.endswith(".csv") else results_blob
    return stem + ".index.json"


class ResultsIndexError(ValueError):
    """The results cannot be indexed (not sorted by postcode, no header, ...), or an index is unusable."""


class PostcodeNotFound(LookupError):
    pass


class ResultsChanged(RuntimeError):
    """The bytes at the indexed range are not that postcode's rows: results.csv was rewritten after the index
    was read (e.g. a retry published a new revision). Reading again gets a consistent pair."""


@dataclass(frozen=True)
class PostcodeRange:
    offset: int
    length: int
    rows: int


class ResultsIndexer:
    """Builds the index while the results are written, from the same bytes in any chunking: feed() every
    chunk (or wrap() the chunk iterator handed to an upload), then finish().

    Postcodes must come in sorted order, each in one run of consecutive rows: publish writes them so, and an
    index of anything else would point at only part of a postcode's rows.
    """

    def __init__(self) -> None:
        self._carry = b""  # an incomplete last line, completed by the next chunk
        self._offset = 0
        self._columns: list[str] | None = None
        self._postcodes: dict[str, list[int]] = {}
        self._current: str | None = None

    def wrap(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self.feed(chunk)
            yield chunk

    def feed(self, chunk: bytes) -> None:
        data = self._carry + chunk
        start = 0
        while (end := data.find(b"\n", start)) != -1:
            self._line(data[start:end + 1])
            start = end + 1
        self._carry = data[start:]

    def finish(self) -> dict:
        if self._carry:
            self._line(self._carry)
            self._carry = b""
        if self._columns is None:
            raise ResultsIndexError("results are empty: not even a header")
        return {"format": INDEX_FORMAT, "size": self._offset, "columns": self._columns, "postcodes": self._postcodes}

    def _line(self, line: bytes) -> None:
        if self._columns is None:
            self._columns = next(csv.reader([line.decode()]))
            self._offset = len(line)
            return
        postcode = _first_field(line)
        if postcode != self._current:
            if postcode in self._postcodes:
                raise ResultsIndexError(f"results are not grouped by postcode: {postcode} again at byte "
                                        f"{self._offset}")
            if self._current is not None and postcode < self._current:
                raise ResultsIndexError(f"results are not sorted by postcode: {postcode} comes after "
                                        f"{self._current}")
            self._postcodes[postcode] = [self._offset, 0, 0]
            self._current = postcode
        entry = self._postcodes[postcode]
        entry[1] += len(line)
        entry[2] += 1
        self._offset += len(line)


def build_index_from_bytes(data: bytes) -> dict:
    indexer = ResultsIndexer()
    indexer.feed(data)
    return indexer.finish()


def write_results_index(blobs: BlobStore, container: str, results_blob: str, data: bytes | dict) -> str:
    """Publish's one call: store beside the results just written the index of the same bytes (or an index
    a ResultsIndexer built while they were streamed). Returns the index blob's name."""
    name = index_blob(results_blob)
    blobs.write_json(container, name, data if isinstance(data, dict) else build_index_from_bytes(data))
    return name


def lookup(index: dict, postcode: str) -> PostcodeRange:
    if index.get("format") != INDEX_FORMAT:
        raise ResultsIndexError(f"results index format {index.get('format')!r} is not {INDEX_FORMAT}")
    entry = index["postcodes"].get(postcode)
    if entry is None:
        raise PostcodeNotFound(f"postcode {postcode} has no rows in these results")
    return PostcodeRange(*entry)


def read_postcode_rows(blobs: BlobStore, container: str, results_blob: str, postcode: str) -> list[dict]:
    """One postcode's rows as dicts (strings), with two small reads: the index and one byte range."""
    try:
        index = blobs.read_json(container, index_blob(results_blob))
    except BlobNotFound:
        raise ResultsIndexError(f"{container}/{results_blob} has no index (published before indexing?)") from None
    where = lookup(index, postcode)
    chunk = blobs.read_bytes(container, results_blob, where.offset, where.length)
    return parse_rows(index["columns"], chunk, postcode, where.rows)


def parse_rows(columns: list[str], chunk: bytes, postcode: str, rows: int) -> list[dict]:
    """The rows of `chunk`, checked to be exactly `rows` rows of `postcode` (else ResultsChanged)."""
    text = chunk.decode("utf-8", errors="replace")
    records = list(csv.DictReader(io.StringIO(text), fieldnames=columns))
    if (len(records) != rows or any(r.get("postcode") != postcode for r in records)
            or any(None in r for r in records)):
        raise ResultsChanged(f"the results changed while postcode {postcode} was read; read it again")
    return records


def _first_field(line: bytes) -> str:
    # Postcodes are validated against SCORING_POSTCODE_PATTERN (digits) before scoring, so never quoted;
    # csv handles the general case anyway.
    if b'"' not in line:
        return line.split(b",", 1)[0].decode()
    return next(csv.reader([line.decode()]))[0]
