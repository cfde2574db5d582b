"""Time-series steps (scoring/steps.py): parsing, the grid of forecast dates, and the training ends a grid refuses."""

from __future__ import annotations

from datetime import date

import pytest

from scoring.steps import DAILY, Step, StepError, add_steps, end_problem, parse_step, step_index, step_of


@pytest.mark.parametrize(("text", "step"), [
    ("1 day", Step(1, "day")), ("day", Step(1, "day")), ("2 days", Step(2, "day")), (" 2days ", Step(2, "day")),
    ("1 week", Step(1, "week")), ("Weeks", Step(1, "week")), ("1 month", Step(1, "month")),
    ("3 months", Step(3, "month")), ("quarter", Step(3, "month")), ("2 quarters", Step(6, "month")),
    ("year", Step(12, "month")),
])
def test_steps_parse_to_days_weeks_or_months(text, step):
    assert parse_step(text) == step
    assert parse_step(str(step)) == step  # the canonical text reads back


@pytest.mark.parametrize("text", ["", "fortnight", "0 days", "1.5 weeks", "-1 day", "1 s", "20000 days", None, 7])
def test_bad_steps_are_refused_naming_them(text):
    with pytest.raises(StepError, match="step"):
        parse_step(text)


def test_canonical_text_and_the_old_default():
    assert [str(parse_step(t)) for t in ("day", "2 days", "week", "quarter")] == ["1 day", "2 days", "1 week",
                                                                                 "3 months"]
    assert step_of(None) == DAILY and DAILY.days == 1 and Step(2, "week").days == 14 and Step(1, "month").days is None


def test_month_grids_keep_the_day_or_the_month_end():
    end = date(2026, 1, 31)
    month = Step(1, "month")
    assert [add_steps(end, k, month) for k in range(4)] == [end, date(2026, 2, 28), date(2026, 3, 31),
                                                             date(2026, 4, 30)]
    assert step_index(end, date(2026, 4, 30), month) == 3 and step_index(end, date(2026, 3, 30), month) is None
    assert step_index(end, date(2025, 12, 31), month) == -1
    mid = date(2026, 1, 15)
    assert add_steps(mid, 5, Step(3, "month")) == date(2027, 4, 15)
    assert step_index(mid, date(2027, 4, 15), Step(3, "month")) == 5
    assert step_index(mid, date(2026, 2, 15), Step(3, "month")) is None  # a month, not a quarter, later
    assert step_index(date(2024, 2, 29), date(2024, 3, 31), month) == 1  # a leap-year February ends its month


def test_day_and_week_grids():
    end = date(2026, 11, 30)
    assert step_index(end, date(2026, 12, 14), Step(1, "week")) == 2
    assert step_index(end, date(2026, 12, 9), Step(1, "week")) is None
    assert step_index(end, date(2026, 12, 4), Step(2, "day")) == 2
    assert step_index(end, date(2026, 12, 3), Step(2, "day")) is None
    assert step_index(end, end, DAILY) == 0


def test_a_monthly_training_end_on_day_29_or_30_is_refused_unless_it_ends_its_month():
    assert "use a day from 1 to 28 or the month's last day" in end_problem(date(2026, 1, 30), Step(1, "month"))
    assert end_problem(date(2026, 4, 30), Step(1, "month")) is None  # April's last day
    assert end_problem(date(2026, 1, 30), Step(1, "week")) is None
