"""NCRONTAB schedules of timer triggers: `sec min hour day month day-of-week`, or a TimeSpan `hh:mm:ss`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
FIELDS = (("second", 0, 59, None), ("minute", 0, 59, None), ("hour", 0, 23, None), ("day", 1, 31, None),
          ("month", 1, 12, MONTHS), ("day of week", 0, 7, DAYS))
TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})$")


def _value(text: str, low: int, names: list[str] | None) -> int:
    if names and text.upper()[:3] in names:
        return names.index(text.upper()[:3]) + low
    return int(text)


def _parse_field(text: str, label: str, low: int, high: int, names: list[str] | None) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            step = int(step_text)
            if step <= 0:
                raise ValueError(f"bad step in {label} field {text!r}")
        if part == "*":
            start, end = low, high
        elif "-" in part:
            first, last = part.split("-", 1)
            start, end = _value(first, low, names), _value(last, low, names)
        else:
            start = _value(part, low, names)
            end = (6 if label == "day of week" else high) if step > 1 else start  # "5/15": from 5 every 15
        if not (low <= start <= high and low <= end <= high and start <= end):
            raise ValueError(f"{label} field {text!r} is out of range {low}-{high}")
        values.update(range(start, end + 1, step))
    if label == "day of week" and 7 in values:  # 7 is Sunday too
        values = (values - {7}) | {0}
    return frozenset(values)


@dataclass(frozen=True)
class Schedule:
    expression: str
    seconds: frozenset[int] = frozenset()
    minutes: frozenset[int] = frozenset()
    hours: frozenset[int] = frozenset()
    days: frozenset[int] = frozenset()
    months: frozenset[int] = frozenset()
    weekdays: frozenset[int] = frozenset()
    interval: timedelta | None = None

    @classmethod
    def parse(cls, expression: str) -> Schedule:
        timespan = TIMESPAN.match(expression.strip())
        if timespan:
            days, hours, minutes, seconds = (int(g or 0) for g in timespan.groups())
            interval = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
            return cls(expression, interval=interval)
        fields = expression.split()
        if len(fields) == 5:  # tolerate classic five-field cron: seconds = 0
            fields = ["0", *fields]
        if len(fields) != 6:
            raise ValueError(f"NCRONTAB {expression!r} needs 6 fields: sec min hour day month day-of-week")
        parsed = [_parse_field(text, label, low, high, names)
                  for text, (label, low, high, names) in zip(fields, FIELDS, strict=True)]
        return cls(expression, *parsed)

    def next_after(self, moment: datetime) -> datetime:
        """The first occurrence strictly after `moment` (kept in moment's time zone)."""
        if self.interval is not None:
            return moment + self.interval
        start = moment.replace(microsecond=0) + timedelta(seconds=1)
        day = start.replace(hour=0, minute=0, second=0)
        for _ in range(366 * 8):  # leap-day schedules can be years apart
            # NCrontab requires both the day-of-month and the day-of-week fields to match.
            if day.month in self.months and day.day in self.days and (day.weekday() + 1) % 7 in self.weekdays:
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        for second in sorted(self.seconds):
                            candidate = day.replace(hour=hour, minute=minute, second=second)
                            if candidate >= start:
                                return candidate
            day += timedelta(days=1)
        raise ValueError(f"NCRONTAB {self.expression!r} never fires")
