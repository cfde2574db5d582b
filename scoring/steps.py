"""A time-series model's step: the calendar time between two of its observations, so between two forecasts.

Forecast step k of a model whose training ended on day `end` falls on `end + k steps`. The input's dates must
be on that grid; the worker forecasts h = the last date's k and keeps the input's k's. Steps are days (any
count: "2 days" for a model trained on every other day), weeks, or months (quarters = 3 months).

Months: when `end` is the last day of its month, the grid is month ends (2026-01-31, 2026-02-28, ...);
otherwise the day of the month is kept, so a monthly training end on day 29 or 30 that is not a month end
is refused (it would land on days that do not exist). R applies the same rules (R/model_aware.R).

A manifest without a step (registered before steps existed) means one day: today's daily behaviour.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, timedelta

_UNITS = {"day": ("day", 1), "week": ("week", 1), "month": ("month", 1), "quarter": ("month", 3),
          "year": ("month", 12)}
_STEP = re.compile(r"\s*(\d{1,4})?\s*([a-z]+?)s?\s*", re.IGNORECASE)
MAX_DAYS = 3660  # a step longer than about ten years is a typo, not a model


class StepError(ValueError):
    """A step that cannot be used; the message names it."""


@dataclass(frozen=True)
class Step:
    count: int
    unit: str  # "day", "week" or "month"

    def __str__(self) -> str:
        return f"{self.count} {self.unit}" + ("s" if self.count != 1 else "")

    @property
    def days(self) -> int | None:
        """Days per step, or None for months (not a fixed number of days)."""
        return {"day": 1, "week": 7}.get(self.unit, 0) * self.count or None


DAILY = Step(1, "day")


def parse_step(text: object) -> Step:
    """'1 day', '2 days', 'week', '3 months', 'quarter', 'year' -> Step; anything else -> StepError."""
    match = _STEP.fullmatch(text) if isinstance(text, str) else None
    unit = _UNITS.get(match.group(2).lower()) if match else None
    if unit is None:
        raise StepError(f"step {str(text)[:40]!r} is not '<n> days', '<n> weeks', '<n> months', 'quarter' or 'year'")
    count = int(match.group(1) or 1) * unit[1]
    step = Step(count, unit[0])
    length = step.days if step.days is not None else 31 * count
    if count < 1 or length > MAX_DAYS:
        raise StepError(f"step {text!r} must be at least one and at most {MAX_DAYS} days long")
    return step


def step_of(text: str | None) -> Step:
    """The step a manifest entry records; none recorded means one day."""
    return DAILY if text is None else parse_step(text)


def _month_end(d: date) -> bool:
    return d.day == calendar.monthrange(d.year, d.month)[1]


def end_problem(end: date, step: Step) -> str | None:
    """Why a training end cannot anchor this step's grid, or None."""
    if step.unit == "month" and 28 < end.day and not _month_end(end):
        return (f"training end {end} with a step of {step}: use a day from 1 to 28 or the month's last day "
                f"(day {end.day} does not exist in every month)")
    return None


def add_steps(end: date, k: int, step: Step) -> date:
    """The date of forecast step k (k >= 0)."""
    if step.days is not None:
        return end + timedelta(days=k * step.days)
    months = end.year * 12 + end.month - 1 + k * step.count
    year, month = divmod(months, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return date(year, month + 1, last if _month_end(end) else end.day)


def step_index(end: date, day: date, step: Step) -> int | None:
    """k with add_steps(end, k) == day (may be <= 0), or None when `day` is not on the grid."""
    if step.days is not None:
        k, rest = divmod((day - end).days, step.days)
        return k if rest == 0 else None
    months = (day.year - end.year) * 12 + day.month - end.month
    k, rest = divmod(months, step.count)
    if rest or add_steps(end, k, step) != day:
        return None
    return k


def grid_example(end: date, step: Step, count: int = 3) -> str:
    """'2026-12-07, 2026-12-14, 2026-12-21, ...': the first dates on the grid after `end`."""
    return ", ".join(str(add_steps(end, k, step)) for k in range(1, count + 1)) + ", ..."
