"""One pass over the input CSV for planning, in memory linear in the postcodes, not in the rows.

At 30,000 postcodes x 60 days (1.8 M rows) a set of (postcode, date) pairs and a decoded copy of the text
cost ~550 MB in the Functions process; here the bytes are decoded as a stream, each distinct date string is
parsed once, and each postcode's dates are one bitmask (an int: bit i = day base + i) for the duplicate check.
"""

from __future__ import annotations

import csv
import io
import itertools
import operator
import re
from collections import Counter
from collections.abc import Callable
from datetime import date

from scoring.names import normalise_postcode

ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class InputError(ValueError):
    """The input cannot be planned; the message names the problem (and the line)."""


class _Days:
    """The days one postcode has, as a bitmask relative to its earliest day so far."""

    __slots__ = ("base", "mask")

    def __init__(self, day: int) -> None:
        self.base, self.mask = day, 0

    def add(self, day: int) -> bool:
        """Record the day; False if it was already there."""
        offset = day - self.base
        if offset < 0:
            self.mask <<= -offset
            self.base, offset = day, 0
        bit = 1 << offset
        if self.mask & bit:
            return False
        self.mask |= bit
        return True


# What a pass over the input can hand on: (the header, a postcode (trimmed), its rows in one contiguous block).
# The same postcode may come in several blocks when the input is not grouped by postcode.
RowVisitor = Callable[[list[str], str, list[list[str]]], None]


def scan_input(data: bytes, where: str, key_columns: tuple[str, str] = ("postcode", "date"),
               visit: RowVisitor | None = None) -> tuple[Counter, date]:
    """Rows per postcode and the earliest date. Refuses (InputError, naming the line): text that is not UTF-8,
    no header or rows, missing key columns, rows with the wrong number of fields, dates that are not
    YYYY-MM-DD, and duplicate (postcode, date) rows. Postcodes are counted without surrounding whitespace.

    Rows are taken a block of one postcode at a time (inputs are usually grouped by postcode), so the work
    per row is a few C-level operations; `visit` sees each block once it has passed the checks."""
    stream = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", newline="")
    reader = csv.reader(stream)
    try:
        header = next(reader, None)
        if not header:
            raise InputError(f"{where} is empty")
        missing = [c for c in key_columns if c not in header]
        if missing:
            raise InputError(f"{where} lacks column(s) {', '.join(missing)}; it has: {', '.join(header)}")
        ip, idate, width = header.index(key_columns[0]), header.index(key_columns[1]), len(header)
        rows: Counter = Counter()
        days: dict[str, _Days] = {}
        ordinals: dict[str, int] = {}  # each distinct date string, parsed once
        line = 2
        for raw, block in itertools.groupby(reader, key=lambda row: row[ip] if len(row) > ip else None):
            block = list(block)
            postcode = normalise_postcode(raw) if raw is not None else ""  # as the worker reads it (trimws)
            if raw is None or not all(map(width.__eq__, map(len, block))):
                _scan_rows(block, line, postcode, width, ip, idate, days, ordinals, where)  # raises, naming the line
            texts = list(map(operator.itemgetter(idate), block))
            for k, text in enumerate(dict.fromkeys(texts)):
                if text not in ordinals:
                    ordinals[text] = _ordinal(text, where, line + texts.index(text) if k else line)
            seen = days.get(postcode)
            distinct = set(texts)
            if seen is None and len(distinct) == len(texts):
                days_of = list(map(ordinals.__getitem__, distinct))
                first, last = min(days_of), max(days_of)
                days[postcode] = seen = _Days(first)
                # n distinct days spanning n days are every day of that span (the usual horizon of days)
                seen.mask = (1 << len(days_of)) - 1 if last - first + 1 == len(days_of) else sum(
                    1 << (day - first) for day in days_of)
            else:  # a repeat inside the block, or a postcode seen in an earlier block: day by day
                _scan_rows(block, line, postcode, width, ip, idate, days, ordinals, where)
            rows[postcode] += len(block)
            if visit is not None:
                visit(header, postcode, block)
            line += len(block)
    except UnicodeDecodeError:
        raise InputError(f"{where} is not UTF-8 text") from None
    if not rows:
        raise InputError(f"{where} has a header but no rows")
    return rows, date.fromordinal(min(ordinals.values()))


def _scan_rows(block: list[list[str]], line: int, postcode: str, width: int, ip: int, idate: int,
               days: dict[str, _Days], ordinals: dict[str, int], where: str) -> None:
    """The row-by-row checks of one block, for the blocks the fast path cannot take; raises at the first
    problem, naming its line."""
    for number, row in enumerate(block, start=line):
        if len(row) != width:
            raise InputError(f"{where} line {number}: {len(row)} fields where the header has {width}")
        text = row[idate]
        day = ordinals.get(text)
        if day is None:
            day = ordinals[text] = _ordinal(text, where, number)
        seen = days.get(postcode)
        if seen is None:
            days[postcode] = seen = _Days(day)
        if not seen.add(day):
            raise InputError(f"{where} line {number}: duplicate row for postcode {postcode} on {text}"
                             + (f" (postcode written {row[ip]!r})" if row[ip] != postcode else ""))


def _ordinal(text: str, where: str, number: int) -> int:
    try:
        if not ISO_DATE.fullmatch(text):  # fromisoformat also takes 20261124 and 2026-W48-2; R does not
            raise ValueError(text)
        return date.fromisoformat(text).toordinal()
    except ValueError:
        raise InputError(f"{where} line {number}: date {text!r} is not YYYY-MM-DD") from None
