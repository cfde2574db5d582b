"""A shard's staged results.csv, read as a stream: validated, and copied into the run's results as it is read.

Nothing here holds more than a block of rows per shard plus per-postcode counters: publish memory does not
grow with postcodes x horizon.
"""

from __future__ import annotations

import csv
import gc
import io
import math
import operator
import queue
import re
import threading
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

from scoring.blobstore import BlobStore

RESULT_COLUMNS = ["postcode", "date", "volume", "lower_80", "upper_80", "lower_95", "upper_95", "model",
                  "model_version"]
# Interval bounds in the order they must hold around the volume.
ORDER = ("lower_95", "lower_80", "volume", "upper_80", "upper_95")
OUT_CHUNK = 4 << 20  # bytes per staged block of the published results.csv
HEADER = (",".join(RESULT_COLUMNS) + "\n").encode()
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


@dataclass
class ShardCheck:
    """What validating a shard's results.csv found: its data rows (after the header) and where they were staged."""

    data_bytes: int
    rows: int
    index: dict[str, list[int]]  # postcode -> [offset from the first data byte, length in bytes, rows]
    blocks: list[int] = field(default_factory=list)  # where BlockCopy staged the data bytes, in order


@dataclass
class _Progress:
    """Validation state carried from one block of rows to the next."""

    expected: set[str]
    model: str
    version: str
    line: int = 2  # of the next row
    previous: tuple[str, str] = ("", "")
    counts: Counter = field(default_factory=Counter)
    offset: int = 0  # data bytes seen
    index: dict[str, list[int]] = field(default_factory=dict)
    layout: re.Pattern | None = None  # the worker's own row layout (_worker_layout)


def validate_shard(blobs: BlobStore, container: str, blob: str, scored: list[str], assigned: set[str],
                   horizon: int, model: str, version: str, copy: BlockCopy | None = None) -> ShardCheck:
    """ShardRejected unless the staged CSV holds exactly horizon valid rows for each scored postcode, sorted
    by postcode and date, and the shard reported only postcodes it was assigned.

    Rows are checked a block at a time with C-level operations over whole columns (float parsing, ordering,
    set membership); a block with anything unusual is checked again row by row, which names the line.
    Memory holds one block and a counter per postcode. With `copy`, the data bytes are staged as they pass
    (ShardCheck.blocks); a shard that fails stages nothing that can be committed."""
    stray = sorted(set(scored) - assigned)
    if stray:
        raise ShardRejected(f"reported postcode(s) it was not assigned, e.g. {stray[0]}")
    info = blobs.info(container, blob)
    if info is None:
        raise ShardRejected(f"no results.csv at {container}/{blob}")
    state = _Progress(expected=set(scored), model=model, version=version)
    header_bytes = 0
    try:
        with _no_cyclic_gc():
            # 1 MB ranges: a block's lines and parsed fields are ~10x its bytes (4 MB blocks took the
            # Functions process from 190 to 290 MB at 30,000 postcodes).
            chunks = read_ahead(blobs.stream(container, blob, etag=info.etag))
            for raw, lines in _line_blocks(chunks):
                if not header_bytes:
                    header, lines = lines[0], lines[1:]
                    columns = next(csv.reader([header]), None)
                    if columns != RESULT_COLUMNS:
                        raise ShardRejected(f"unexpected columns {str(columns)[:200]}")
                    header_bytes = len(header.encode())
                    raw = raw[header_bytes:]
                if lines:
                    _check_block(lines, state)
                    if copy is not None:
                        copy.write(raw)
        if not header_bytes:
            raise ShardRejected("unexpected columns None")
        wrong = [pc for pc in scored if state.counts.get(pc) != horizon]
        if wrong:
            raise ShardRejected(f"{len(wrong)} postcode(s) do not have {horizon} rows, e.g. {wrong[0]} has "
                                f"{state.counts.get(wrong[0], 0)}")
    except BaseException:
        if copy is not None:
            copy.drop_part()
        raise
    return ShardCheck(data_bytes=state.offset, rows=sum(state.counts.values()), index=state.index,
                      blocks=copy.end_part() if copy is not None else [])


def read_ahead(chunks: Iterable[bytes], depth: int = 2) -> Iterator[bytes]:
    """The chunks, fetched by a background thread up to `depth` ahead: the next download overlaps the caller's
    work on this one (validating a shard waited on each ranged read in turn). Errors arrive in order."""
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def fetch() -> None:
        try:
            for chunk in chunks:
                while not stop.is_set():
                    try:
                        ready.put(chunk, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            ready.put(end)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, raised there
            ready.put(e)

    thread = threading.Thread(target=fetch, name="read-ahead", daemon=True)
    thread.start()
    try:
        while (item := ready.get()) is not end:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Cyclic garbage collection paused: a block is ~20,000 new lists that live until the block is done, and
    collections triggered by them would traverse every live object again and again (~2x the validation's
    CPU). Reference counting still frees everything; rows hold no cycles."""
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def _line_blocks(chunks: Iterable[bytes]) -> Iterator[tuple[bytes, list[str]]]:
    """Whole lines of UTF-8 text arriving in byte chunks, a chunk's worth at a time: their bytes, and the
    lines (each with its newline)."""
    carry = b""
    try:
        for chunk in chunks:
            data = carry + chunk
            cut = data.rfind(b"\n") + 1
            carry = data[cut:]
            if cut:
                yield data[:cut], data[:cut].decode("utf-8").splitlines(keepends=True)
        if carry:
            # Shards are concatenated as they are: a last row without its newline would run into the next
            # shard's first row. The worker always ends its CSV with one; a file without is cut short.
            raise ShardRejected("results.csv does not end with a newline (cut short?)")
    except UnicodeDecodeError as e:
        raise ShardRejected(f"results.csv is not UTF-8 text: {e}") from None


# A number as the worker writes it (data.table::fwrite): plain decimal or e-notation. At most 200 integer digits
# and a two-digit exponent keep it below 1e300, so matching the pattern proves it finite.
_NUMBER = r"\d{1,200}(?:\.\d{0,200})?(?:[eE][-+]?\d{1,2})?"


def _worker_layout(model: str, version: str) -> re.Pattern:
    """One row exactly as the worker writes it: postcode, ISO date, a volume without a sign, either no
    intervals or all four, the model and its version. Groups: postcode, date, volume, lower_80, upper_80,
    lower_95, upper_95 (intervals empty when absent)."""
    bound = rf"-?{_NUMBER}"
    return re.compile(rf"^([^,\r\n\"]+),(\d{{4}}-\d\d-\d\d),({_NUMBER}),(?:,,,|({bound}),({bound}),({bound}),"
                      rf"({bound})),{re.escape(model)},{re.escape(version)}\n", re.MULTILINE | re.ASCII)


def _check_block(lines: list[str], state: _Progress) -> None:
    """Check a block of rows (the fast ways, else row by row) and add them to the counts and the index."""
    columns = _worker_rows(lines, state)
    if columns is None:
        # Not all in the worker's own layout: split (the worker quotes nothing; the csv module reads any block
        # with a quote in it), then whole-column checks, then, if those find anything, row by row.
        rows = list(csv.reader(lines)) if any('"' in line for line in lines) else [
            line.rstrip("\r\n").split(",") for line in lines]
        if not _block_is_valid(rows, state):
            _check_rows(rows, state)  # raises, naming the line; or finds the block valid after all
        columns = (list(map(operator.itemgetter(0), rows)), rows[-1][1])
    postcodes, last_date = columns
    sizes = list(map(len, lines)) if all(map(str.isascii, lines)) else [len(line.encode()) for line in lines]
    # Rows are sorted (checked above), so each postcode's rows are consecutive: Counter keeps their order.
    first = 0
    for postcode, n in Counter(postcodes).items():
        nbytes = sum(sizes[first:first + n])
        entry = state.index.get(postcode)
        if entry is None:
            state.index[postcode] = [state.offset, nbytes, n]
        else:  # a postcode that continues from the previous block (rows are sorted: it cannot come back later)
            entry[1] += nbytes
            entry[2] += n
        state.offset += nbytes
        state.counts[postcode] += n
        first += n
    state.previous = (postcodes[-1], last_date)
    state.line += len(lines)


def _worker_rows(lines: list[str], state: _Progress) -> tuple[tuple[str, ...], str] | None:
    """(the postcode of each row, the last row's date) when every row is valid and in the worker's own layout,
    found by one regular expression over the block (~2x cheaper than splitting rows); None otherwise."""
    if state.layout is None:
        state.layout = _worker_layout(state.model, state.version)
    found = state.layout.findall("".join(lines))
    if not found or len(found) != len(lines):  # a line that is not a whole match, or lines split elsewhere
        return None
    postcodes, dates, volumes, *intervals = zip(*found, strict=True)
    if not _sorted_and_expected(postcodes, dates, state):
        return None
    if intervals[0].count("") == len(found):
        return postcodes, dates[-1]  # no intervals: the pattern proved each volume finite and >= 0
    if "" in intervals[0]:
        return None  # intervals for some rows only
    lower_80, upper_80, lower_95, upper_95 = (list(map(float, column)) for column in intervals)
    if not _ordered([lower_95, lower_80, list(map(float, volumes)), upper_80, upper_95]):
        return None
    return postcodes, dates[-1]


def _sorted_and_expected(postcodes: tuple[str, ...], dates: tuple[str, ...], state: _Progress) -> bool:
    """Sorted by (postcode, date), strictly, from where the previous block ended, and only postcodes the shard
    reported: postcodes never go down, and where one repeats its date goes up (element-wise maps over the
    columns: no tuple per row)."""
    return (state.expected.issuperset(postcodes) and state.previous < (postcodes[0], dates[0])
            and all(map(operator.le, postcodes, postcodes[1:]))
            and all(map(operator.or_, map(operator.ne, postcodes, postcodes[1:]), map(operator.lt, dates, dates[1:]))))


def _ordered(columns: list[list[float]]) -> bool:
    """Each column <= the next, row by row."""
    return all(all(map(operator.le, low, high)) for low, high in zip(columns, columns[1:], strict=False))


def _block_is_valid(rows: list[list[str]], state: _Progress) -> bool:
    """Every row of the block valid, by whole-column checks; False if anything needs a closer look."""
    if len(rows) == 0 or set(map(len, rows)) != {len(RESULT_COLUMNS)}:
        return False
    columns = dict(zip(RESULT_COLUMNS, zip(*rows, strict=True), strict=True))
    if set(columns["model"]) != {state.model} or set(columns["model_version"]) != {state.version}:
        return False
    if not _sorted_and_expected(columns["postcode"], columns["date"], state):
        return False
    present = []
    for name in ORDER:
        texts = columns[name]
        empty = texts.count("")
        if empty == len(texts) and name != "volume":
            continue  # the model gave no such interval
        if empty:
            return False  # some rows without this interval: row by row
        try:
            values = list(map(float, texts))
        except ValueError:
            return False
        if not all(map(math.isfinite, values)):
            return False
        present.append(values)
        if name == "volume" and min(values) < 0:
            return False
    return _ordered(present)


def _check_rows(rows: list[list[str]], state: _Progress) -> None:
    """The row-by-row checks; raises ShardRejected at the first problem, naming its line."""
    previous = state.previous
    for line, row in enumerate(rows, start=state.line):
        problem = check_row(row)
        if problem:
            raise ShardRejected(f"line {line}: {problem}")
        pc = row[0]
        if pc not in state.expected:
            raise ShardRejected(f"line {line}: rows for postcode {pc[:40]!r}, which it did not report as scored")
        if (row[7], row[8]) != (state.model, state.version):
            raise ShardRejected(f"line {line}: model {row[7][:40]}/{row[8][:40]}, expected "
                                f"{state.model}/{state.version}")
        if (pc, row[1]) <= previous:  # publish concatenates and merges shards as sorted streams
            raise ShardRejected(f"line {line}: rows not sorted by postcode and date (the worker sorts them)")
        previous = (pc, row[1])


class BlockCopy:
    """Stages bytes as blocks of one blob (Put Block) from a background thread while the caller goes on, so a
    shard's output is uploaded as it is validated: read once, not once to check and again to copy. Bytes
    are grouped into parts (one per shard, ended by end_part); nothing is visible until commit() names the
    parts to keep, in order. A dropped part's blocks are never committed (Blob Storage discards them)."""

    IN_FLIGHT = 2  # blocks staged at once: memory stays at a few blocks

    def __init__(self, blobs: BlobStore, container: str, name: str, block_bytes: int | None = None):
        self._blobs, self._container, self._name = blobs, container, name
        self._block_bytes = block_bytes or OUT_CHUNK
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="block-copy")
        self._in_flight: deque[Future] = deque()
        self._buffer = bytearray()
        self._part: list[int] = []
        self._next = 0

    def __enter__(self) -> BlockCopy:
        return self

    def __exit__(self, *exc) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def write(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) >= self._block_bytes:
            self._stage()

    def end_part(self) -> list[int]:
        """The blocks holding everything written since the last end_part/drop_part."""
        self._stage()
        part, self._part = self._part, []
        return part

    def drop_part(self) -> None:
        self._buffer.clear()
        self._part = []

    def commit(self, parts: list[list[int]], content_type: str = "text/csv") -> str:
        """Wait for every staged block (raising the first storage error), then make these parts the blob."""
        while self._in_flight:
            self._in_flight.popleft().result()
        return self._blobs.commit_blocks(self._container, self._name, [b for part in parts for b in part],
                                         content_type=content_type)

    def _stage(self) -> None:
        if not self._buffer:
            return
        while len(self._in_flight) >= self.IN_FLIGHT:
            self._in_flight.popleft().result()
        index, data = self._next, bytes(self._buffer)
        self._next += 1
        self._buffer.clear()
        self._in_flight.append(self._pool.submit(self._blobs.stage_block, self._container, self._name, index, data))
        self._part.append(index)


def combined_index(shards: list[tuple[str, ShardCheck]]) -> tuple[dict[str, list[int]], int] | None:
    """The per-postcode index ({postcode: [offset, length, rows]}, as dashboard/results_index.py stores it) and
    size of the header followed by each validated shard's data bytes, in order. Shards hold contiguous slices
    of the sorted postcodes (planning.cut_shards), so their concatenation is sorted: nothing is parsed or
    written again. None if the shards' postcodes are not in ascending order one shard after another (then
    the caller merges rows)."""
    index: dict[str, list[int]] = {}
    offset, last = len(HEADER), ""
    for _, check in shards:
        if not check.index:
            continue
        first = next(iter(check.index))
        if first <= last:
            return None
        last = next(reversed(check.index))
        index.update({pc: [offset + o, length, n] for pc, (o, length, n) in check.index.items()})
        offset += check.data_bytes
    return index, offset


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
