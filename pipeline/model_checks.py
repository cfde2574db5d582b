"""Plan checks from the models themselves: does the input fit what each postcode's model was fitted with?

Every postcode's model has a profile in the version's manifest (scoring/R/model_profile.R): the columns it
reads with their fitted types and factor levels, and for time-series models the last training day and the
step (scoring/steps.py). Before any container group exists, a postcode fails here, with the column and the
values, when the input
    - lacks a column its model reads,
    - has values that cannot become the fitted type (numbers, TRUE/FALSE, YYYY-MM-DD),
    - has factor levels the model never saw,
    - (time series) starts on or before the training end, has dates off the model's step grid (a Wednesday
      for a model stepping Mondays, daily rows for a monthly model), or starts more than TS_MAX_GAP_DAYS
      after the end (the forecast steps skipped before its first date, in days).
The worker applies the same rules in R (scoring/R/model_aware.R), so what passes here scores there.
"""

from __future__ import annotations

import math
import operator
import re
from bisect import insort
from datetime import date, timedelta

from scoring.modelstore import DATES_ASSUMED, Manifest
from scoring.steps import DAILY, Step, add_steps, grid_example, step_index, step_of

# What R's as.numeric() reads from CSV text (plus Inf/NaN, which predict turns into a failed postcode).
R_NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?|Inf|NaN|0[xX][0-9a-fA-F]+)\s*")
LOGICAL = {"TRUE", "T", "true", "True", "1", "FALSE", "F", "false", "False", "0"}
MISSING = {"", "NA"}
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
OFF_GRID_SHOWN = 5  # off-grid dates kept per postcode for its reason (the rest are counted)


def shown(values: list[str], at_most: int = 5) -> str:
    unique = list(dict.fromkeys(values))
    text = ", ".join(f"'{v}'" for v in unique[:at_most])
    return text + (f" and {len(unique) - at_most} more" if len(unique) > at_most else "")


def _as_number(text: str) -> float | None:
    if not R_NUMBER.fullmatch(text):
        return None
    t = text.strip()
    try:
        return float(int(t, 16)) if t.lower().lstrip("+-").startswith("0x") else float(t)
    except ValueError:
        return None


def _is_date(text: str) -> bool:
    if not ISO_DATE.fullmatch(text):
        return False
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def column_problem(column: dict, values: set[str]) -> str | None:
    """Why these input values do not fit a prototype column, or None."""
    name, kind = column["name"], column["type"]
    # data.table::fread strips the blanks around unquoted fields; so does this check.
    present = sorted({v.strip() for v in values} - MISSING)
    levels = column.get("levels")
    if levels is not None and not isinstance(levels, list):
        levels = [levels]
    if column.get("levels_of") and levels is not None:
        numeric_levels = {_as_number(x) for x in levels} - {None}
        unseen = [v for v in present if v not in levels and _as_number(v) not in numeric_levels]
        if unseen:
            return (f"column '{name}' has value(s) not among the fitted levels of {column['levels_of']} "
                    f"({shown(levels, 12)}): {shown(unseen)}")
    if kind == "numeric":
        wrong = [v for v in present if _as_number(v) is None]
        if wrong:
            return f"column '{name}' (fitted as numeric) has values that are not numbers: {shown(wrong)}"
    elif kind == "logical":
        wrong = [v for v in present if v not in LOGICAL]
        if wrong:
            return f"column '{name}' (fitted as logical) has values that are not TRUE/FALSE: {shown(wrong)}"
    elif kind == "Date":
        wrong = [v for v in present if not _is_date(v)]
        if wrong:
            return f"column '{name}' (fitted as Date) has values that are not YYYY-MM-DD dates: {shown(wrong)}"
    elif kind in ("factor", "ordered", "character") and levels is not None and not column.get("levels_of"):
        unseen = [v for v in present if v not in levels]
        if unseen:
            return (f"column '{name}' (fitted as {kind}) has level(s) not seen in fitting: {shown(unseen)} "
                    f"(fitted levels: {shown(levels, 12)})")
    return None


class ModelInputCheck:
    """The input against each postcode's model, fed block by block by input_scan.scan_input (`visit`), so
    planning reads the input once. Memory is linear in the postcodes: profiles are shared by many postcodes,
    so each distinct (profile, column, value) is judged once and only the values that fail are kept."""

    def __init__(self, manifest: Manifest, max_gap_days: int, where: str) -> None:
        self.manifest, self.max_gap_days, self.where = manifest, max_gap_days, where
        # A version with scorer.R types and dates its input itself: nothing to check.
        self.profile_of = {} if manifest.scorer else {
            pc: entry.profile for pc, entry in manifest.models.items() if manifest.profile_of(pc) is not None}
        self.header: list[str] = []
        self.columns: dict[int, list[tuple[dict, int]]] = {}  # profile -> (prototype column, its index in a row)
        self.verdicts: dict[tuple[int, str], dict[str, bool]] = {}  # (profile, column) -> value -> fits
        self.bad: dict[str, dict[str, set[str]]] = {}  # postcode -> column -> the values that do not fit
        self.first_date: dict[str, str] = {}
        # Time-series postcodes with a training end: (end, step); each row's date must be on that grid.
        self.grids = {pc: (date.fromisoformat(manifest.models[pc].training_end), step_of(manifest.models[pc].step))
                      for pc, i in self.profile_of.items()
                      if manifest.profiles[i].get("time_series") and manifest.models[pc].training_end}
        # Each distinct date string, parsed once (the scan has checked them): its ordinal, and for month steps
        # (month count, day, whether it ends its month).
        self.ordinals: dict[str, int] = {}
        self.months: dict[str, tuple[int, int, bool]] = {}
        self.off_grid: dict[str, list] = {}  # postcode -> [count, its earliest OFF_GRID_SHOWN dates], failing only

    def visit(self, header: list[str], postcode: str, rows: list[list[str]]) -> None:
        profile = self.profile_of.get(postcode)
        if profile is None:
            return
        if header is not self.header:
            self._start(header)
        dates = list(map(operator.itemgetter(self.idate), rows))
        first = min(dates)  # YYYY-MM-DD (checked by the scan): text order is date order
        if first < self.first_date.get(postcode, "9999"):
            self.first_date[postcode] = first
        grid = self.grids.get(postcode)
        if grid is not None:
            for text in self._off_grid(dates, *grid):
                _keep_earliest(self.off_grid.setdefault(postcode, [0]), text)
        for column, i in self.columns.get(profile, ()):
            known = self.verdicts.setdefault((profile, column["name"]), {})
            for value in set(map(operator.itemgetter(i), rows)):
                fits = known.get(value)
                if fits is None:
                    fits = known[value] = column_problem(column, {value}) is None
                if not fits:
                    self.bad.setdefault(postcode, {}).setdefault(column["name"], set()).add(value)

    def _off_grid(self, texts: list[str], end: date, step: Step) -> list[str]:
        """The dates among these that are not on the grid. Day and week steps (the common case) are one
        subtraction and modulo per row on ordinals parsed once per distinct date."""
        ordinals, months = self.ordinals, self.months
        try:
            if step.days is not None:
                end_ordinal, days = end.toordinal(), step.days
                return [t for t in texts if (ordinals[t] - end_ordinal) % days]
            # Months (steps.add_steps): the month count is a multiple of the step and the day is the end's,
            # or a month end when the end is one.
            end_month, end_day = end.year * 12 + end.month, end.day
            month_ends = (end + timedelta(days=1)).day == 1
            return [t for t in texts if (months[t][0] - end_month) % step.count
                    or (not months[t][2] if month_ends else months[t][1] != end_day)]
        except KeyError:  # a date not seen before: parse the block's new ones (the scan has checked them)
            for t in texts:
                if t not in ordinals:
                    day = date.fromisoformat(t)
                    ordinals[t] = day.toordinal()
                    months[t] = (day.year * 12 + day.month, day.day, (day + timedelta(days=1)).day == 1)
            return self._off_grid(texts, end, step)

    def _start(self, header: list[str]) -> None:
        profiles = self.manifest.profiles
        self.header, self.idate = header, header.index("date")
        self.columns = {i: [(col, header.index(col["name"])) for col in (profiles[i].get("prototype") or [])
                            if col["name"] in header]
                        for i in set(self.profile_of.values()) if not profiles[i].get("time_series")}

    def result(self, postcodes: list[str]) -> tuple[dict[str, str], list[str]]:
        """(failed postcodes among these, with their reason; warnings for the run)."""
        manifest, warnings = self.manifest, []
        no_end = set(manifest.dates_assumed()) if not manifest.scorer else set()
        assumed = [pc for pc in postcodes if pc in no_end]
        if assumed:
            warnings.append(f"dates assumed for {len(assumed)} time-series postcode(s), e.g. {assumed[0]}: "
                            + DATES_ASSUMED)
        failed: dict[str, str] = {}
        for pc in postcodes:
            index = self.profile_of.get(pc)
            if index is None:
                continue
            profile = manifest.profiles[index]
            if profile.get("time_series"):
                reason = _time_series_problem(self.grids.get(pc), self.first_date.get(pc), self.off_grid.get(pc),
                                              self.max_gap_days)
            else:
                reason = _prototype_problem(profile.get("prototype") or [], self.bad.get(pc, {}), self.header)
            if reason:
                failed[pc] = f"{reason} ({self.where})"
        return failed, warnings


def _prototype_problem(prototype: list[dict], bad: dict[str, set[str]], header: list[str]) -> str | None:
    """The first problem of the prototype's columns. `bad` holds only values that fail on their own; the
    message of column_problem over them is the one over all the values (every check is per value)."""
    missing = [col["name"] for col in prototype if col["name"] not in header]
    if missing:
        return (f"input lacks column(s) the model was fitted with: {', '.join(missing)}; "
                f"it has: {', '.join(header)}")
    for column in prototype:
        problem = column_problem(column, bad.get(column["name"], set()))
        if problem:
            return problem
    return None


def _keep_earliest(seen: list, text: str) -> None:
    """seen = [count, the OFF_GRID_SHOWN earliest dates so far, sorted]: the worker names the earliest too."""
    seen[0] += 1
    if len(seen) <= OFF_GRID_SHOWN or text < seen[-1]:
        insort(seen, text, lo=1)
        if len(seen) > OFF_GRID_SHOWN + 1:
            seen.pop()


def _time_series_problem(grid: tuple[date, Step] | None, first: str | None, off_grid: list | None,
                         max_gap_days: float) -> str | None:
    """The worker's rules (R/model_aware.R forecast_steps), in its order: start, grid, gap."""
    if grid is None or not first:
        return None
    end, step = grid
    start = date.fromisoformat(first)
    if start <= end:
        return f"input starts on {start}, on or before the model's training end {end}"
    if off_grid:
        count, dates = off_grid[0], sorted(off_grid[1:])
        more = f" and {count - len(dates)} more" if count > len(dates) else ""
        return (f"input date(s) {shown(dates)}{more} are not on the model's step grid ({step} from its training "
                f"end {end}: {grid_example(end, step)})")
    k = step_index(end, start, step)
    gap = (add_steps(end, k - 1, step) - end).days
    if math.isinf(max_gap_days) or gap <= max_gap_days:
        return None
    if step == DAILY:
        return (f"input starts on {start}, {gap} days after the model's training end {end}; at most "
                f"{max_gap_days} days are allowed (TS_MAX_GAP_DAYS; retrain the model)")
    return (f"input starts on {start}, step {k} of {step} after the model's training end {end}: the {k - 1} "
            f"step(s) before it span {gap} days; at most {max_gap_days} days are allowed (TS_MAX_GAP_DAYS; "
            "retrain the model)")
