"""One pass over the input CSV for planning, in memory linear in the postcodes, not in the rows.

At 30,000 postcodes x 60 days (1.8 M rows) a set of (postcode, date) pairs and a decoded copy of the text
cost ~550 MB in the Functions process; here the bytes are decoded as a stream, each distinct date string is
parsed once, and each postcode's dates are one bitmask (an int: bit i = day base + i) for the duplicate check.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from datetime import date

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


def scan_input(data: bytes, where: str, key_columns: tuple[str, str] = ("postcode", "date")) -> tuple[Counter, date]:
    """Rows per postcode and the earliest date. Refuses (InputError, naming the line): text that is not UTF-8,
    no header or rows, missing key columns, rows with the wrong number of fields, dates that are not
    YYYY-MM-DD, and duplicate (postcode, date) rows."""
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
        for number, row in enumerate(reader, start=2):
            if len(row) != width:
                raise InputError(f"{where} line {number}: {len(row)} fields where the header has {width}")
            postcode, text = row[ip], row[idate]
            day = ordinals.get(text)
            if day is None:
                day = ordinals[text] = _ordinal(text, where, number)
            seen = days.get(postcode)
            if seen is None:
                days[postcode] = seen = _Days(day)
            if not seen.add(day):
                raise InputError(f"{where} line {number}: duplicate row for postcode {postcode} on {text}")
            rows[postcode] += 1
    except UnicodeDecodeError:
        raise InputError(f"{where} is not UTF-8 text") from None
    if not rows:
        raise InputError(f"{where} has a header but no rows")
    return rows, date.fromordinal(min(ordinals.values()))


def _ordinal(text: str, where: str, number: int) -> int:
    try:
        if not ISO_DATE.fullmatch(text):  # fromisoformat also takes 20261124 and 2026-W48-2; R does not
            raise ValueError(text)
        return date.fromisoformat(text).toordinal()
    except ValueError:
        raise InputError(f"{where} line {number}: date {text!r} is not YYYY-MM-DD") from None
