"""Forecast accuracy once actuals arrive: join a run's published forecasts with the actuals, compute the
metrics, publish them beside the run, atomically.

Actuals are CSV blobs with `postcode,date,volume` under INPUT_CONTAINER/ACTUALS_PREFIX<run id>/ (dropped
there, or posted to POST /api/runs/{id}/evaluate, which stores them there). An evaluation uses every actuals
blob of the run; for a (postcode, date) in several blobs, the blob whose name sorts last wins (a correction).

Metrics, for every group (overall; per postcode; per lead time, 1 = a postcode's first forecast day in the run;
per model version), with error = actual - forecast as in forecast::accuracy():
    n, me (bias), mae, rmse, wape = sum|error| / sum|actual|,
    mase = mean(|error| / scale) with scale = mean |y[t] - y[t-7 days]| over the postcode's actuals
           (a 7-day seasonal naive forecast evaluated on the actuals themselves),
    coverage_80/95 = share of actuals inside the interval, winkler_80/95 = mean Winkler interval score
           (width + 2/alpha times the distance outside), over rows that carry that interval.
A value that cannot be computed (no interval, a zero scale) is NA.

Published as runs/<run>/accuracy/<evaluation>/{metrics.csv,pairs.csv} with their per-postcode byte indexes
({metrics,pairs}.index.json, accuracy_index.py), then runs/<run>/accuracy.json names that evaluation: the
pointer is written last, so a reader never sees a half-written set.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from scoring.blobstore import BlobNotFound, BlobStore

from . import naming
from .accuracy_index import write_accuracy_indexes
from .revisions import current_revision

ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
SEASON_DAYS = 7
LEVELS = (80, 95)
METRIC_COLUMNS = ["level", "key", "n", "me", "mae", "rmse", "wape", "mase", "n_80", "coverage_80", "winkler_80",
                  "n_95", "coverage_95", "winkler_95"]
PAIR_COLUMNS = ["postcode", "date", "lead", "model_version", "forecast", "actual", "error", "lower_80", "upper_80",
                "lower_95", "upper_95"]
MAX_ACTUALS_BYTES = 64 * 1024 * 1024


class AccuracyError(ValueError):
    """The evaluation cannot be made; the message says why."""


@dataclass(frozen=True)
class Pair:
    postcode: str
    day: date
    lead: int
    version: str
    forecast: float
    actual: float
    scale: float | None  # the postcode's seasonal-naive MAE on the actuals
    intervals: dict[int, tuple[float, float]]

    @property
    def error(self) -> float:
        return self.actual - self.forecast


def parse_actuals(data: bytes, where: str) -> dict[tuple[str, date], float]:
    """`postcode,date,volume` (other columns ignored) -> {(postcode, day): volume}; every bad row named."""
    if len(data) > MAX_ACTUALS_BYTES:
        raise AccuracyError(f"{where} is {len(data)} bytes; the limit is {MAX_ACTUALS_BYTES}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise AccuracyError(f"{where} is not UTF-8 text") from None
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header:
        raise AccuracyError(f"{where} is empty")
    missing = [c for c in ("postcode", "date", "volume") if c not in header]
    if missing:
        raise AccuracyError(f"{where} lacks column(s) {', '.join(missing)}; it has: {', '.join(header)}")
    ip, idate, ivol = (header.index(c) for c in ("postcode", "date", "volume"))
    actuals: dict[tuple[str, date], float] = {}
    for number, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise AccuracyError(f"{where} line {number}: {len(row)} fields where the header has {len(header)}")
        pc, day_text, vol_text = row[ip], row[idate], row[ivol]
        try:
            if not ISO_DATE.fullmatch(day_text):
                raise ValueError
            day = date.fromisoformat(day_text)
        except ValueError:
            raise AccuracyError(f"{where} line {number}: date {day_text!r} is not YYYY-MM-DD") from None
        try:
            volume = float(vol_text)
        except ValueError:
            volume = math.nan
        if not math.isfinite(volume) or volume < 0:
            raise AccuracyError(f"{where} line {number}: volume {vol_text!r} is not a number >= 0")
        if (pc, day) in actuals:
            raise AccuracyError(f"{where} line {number}: a second row for postcode {pc} on {day}")
        actuals[(pc, day)] = volume
    if not actuals:
        raise AccuracyError(f"{where} has a header but no rows")
    return actuals


def seasonal_scales(actuals: dict[tuple[str, date], float]) -> dict[str, float | None]:
    """Per postcode: mean |y[t] - y[t - 7 days]| over the actuals (None without a pair or when it is 0)."""
    diffs: dict[str, list[float]] = {}
    for (pc, day), y in actuals.items():
        before = actuals.get((pc, day - timedelta(days=SEASON_DAYS)))
        if before is not None:
            diffs.setdefault(pc, []).append(abs(y - before))
    scales: dict[str, float | None] = {}
    for pc in {pc for pc, _ in actuals}:
        d = diffs.get(pc)
        scales[pc] = math.fsum(d) / len(d) if d and math.fsum(d) > 0 else None
    return scales


def _number(text: str) -> float | None:
    if text in ("", "NA"):
        return None
    return float(text)


def join(results_csv: str, actuals: dict[tuple[str, date], float]) -> list[Pair]:
    """Every forecast row of the run that has an actual, with its lead time and interval bounds."""
    rows = list(csv.DictReader(io.StringIO(results_csv)))
    first: dict[str, date] = {}
    for r in rows:
        day = date.fromisoformat(r["date"])
        first[r["postcode"]] = min(first.get(r["postcode"], day), day)
    scales = seasonal_scales(actuals)
    pairs = []
    for r in rows:
        day = date.fromisoformat(r["date"])
        y = actuals.get((r["postcode"], day))
        if y is None:
            continue
        intervals = {}
        for level in LEVELS:
            lo, hi = _number(r[f"lower_{level}"]), _number(r[f"upper_{level}"])
            if lo is not None and hi is not None:
                intervals[level] = (lo, hi)
        pairs.append(Pair(r["postcode"], day, (day - first[r["postcode"]]).days + 1, r["model_version"],
                          float(r["volume"]), y, scales.get(r["postcode"]), intervals))
    return pairs


def winkler(lower: float, upper: float, y: float, level: int) -> float:
    alpha = 1 - level / 100
    score = upper - lower
    if y < lower:
        score += 2 / alpha * (lower - y)
    elif y > upper:
        score += 2 / alpha * (y - upper)
    return score


def _mean(values: list[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def metrics(pairs: list[Pair]) -> dict[str, float | int | None]:
    errors = [p.error for p in pairs]
    total_actual = math.fsum(abs(p.actual) for p in pairs)
    scaled = [abs(p.error) / p.scale for p in pairs if p.scale]
    out: dict[str, float | int | None] = {
        "n": len(pairs),
        "me": _mean(errors),
        "mae": _mean([abs(e) for e in errors]),
        "rmse": math.sqrt(_mean([e * e for e in errors])) if errors else None,
        "wape": math.fsum(abs(e) for e in errors) / total_actual if total_actual > 0 else None,
        "mase": _mean(scaled),
    }
    for level in LEVELS:
        inside = [p for p in pairs if level in p.intervals]
        out[f"n_{level}"] = len(inside)
        out[f"coverage_{level}"] = _mean([float(p.intervals[level][0] <= p.actual <= p.intervals[level][1])
                                          for p in inside])
        out[f"winkler_{level}"] = _mean([winkler(*p.intervals[level], p.actual, level) for p in inside])
    return out


def metric_table(pairs: list[Pair]) -> list[dict]:
    """Rows of metrics.csv: overall, then per model version, per postcode and per lead time."""
    groups: list[tuple[str, str, list[Pair]]] = [("overall", "all", pairs)]
    for level, key in (("model_version", lambda p: p.version), ("postcode", lambda p: p.postcode),
                       ("lead", lambda p: p.lead)):
        by: dict = {}
        for p in pairs:
            by.setdefault(key(p), []).append(p)
        groups += [(level, str(k), by[k]) for k in sorted(by)]
    return [{"level": level, "key": key, **metrics(group)} for level, key, group in groups]


def _cell(value: object) -> str:
    if value is None:
        return "NA"
    if isinstance(value, float):
        return repr(value)  # shortest text that reads back to the same double in R
    return str(value)


def to_csv(columns: list[str], rows: list[dict]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return out.getvalue().encode()


def pair_rows(pairs: list[Pair]) -> list[dict]:
    rows = []
    for p in sorted(pairs, key=lambda p: (p.postcode, p.day)):
        row = {"postcode": p.postcode, "date": p.day.isoformat(), "lead": p.lead, "model_version": p.version,
               "forecast": p.forecast, "actual": p.actual, "error": p.error}
        for level in LEVELS:
            lo, hi = p.intervals.get(level, (None, None))
            row[f"lower_{level}"], row[f"upper_{level}"] = lo, hi
        rows.append(row)
    return rows


def actuals_prefix(actuals_root: str, run_id: str) -> str:
    return f"{actuals_root}{run_id}/"


def accuracy_pointer(run_id: str) -> str:
    return naming.run_prefix(run_id) + "accuracy.json"


def evaluation_id(blob_name: str, etag: str) -> str:
    """One evaluation per actuals blob version: an event delivered twice evaluates once."""
    return "eval-" + hashlib.sha256(f"{blob_name}\n{etag}".encode()).hexdigest()[:20]


def read_actuals(blobs: BlobStore, container: str, prefix: str) -> tuple[dict[tuple[str, date], float], list[dict]]:
    """Every actuals blob of the run, in name order (later names correct earlier ones)."""
    merged: dict[tuple[str, date], float] = {}
    sources = []
    for blob in sorted(blobs.list(container, prefix), key=lambda b: b.name):
        data, etag = blobs.read_versioned(container, blob.name)
        merged.update(parse_actuals(data, f"actuals {container}/{blob.name}"))
        sources.append({"blob": f"{container}/{blob.name}", "etag": etag})
    if not sources:
        raise AccuracyError(f"no actuals under {container}/{prefix}")
    return merged, sources


def evaluate_run(run_id: str, evaluation: str, blobs: BlobStore, results_container: str,
                 actuals_container: str, actuals_root: str) -> dict:
    """Join the run's published results with all its actuals; publish metrics, pairs, then the pointer."""
    prefix = naming.run_prefix(run_id)
    current = current_revision(blobs, results_container, run_id)
    if current is None:
        raise AccuracyError(f"run {run_id} has published no results")
    results_blob = current.results
    results = blobs.read_bytes(results_container, results_blob).decode()
    actuals, sources = read_actuals(blobs, actuals_container, actuals_prefix(actuals_root, run_id))
    pairs = join(results, actuals)
    if not pairs:
        raise AccuracyError(f"the actuals share no (postcode, date) with the forecasts of run {run_id}")
    table = metric_table(pairs)
    folder = f"{prefix}accuracy/{evaluation}/"
    metrics_csv, pairs_csv = to_csv(METRIC_COLUMNS, table), to_csv(PAIR_COLUMNS, pair_rows(pairs))
    blobs.write_bytes(results_container, folder + "metrics.csv", metrics_csv, content_type="text/csv")
    blobs.write_bytes(results_container, folder + "pairs.csv", pairs_csv, content_type="text/csv")
    # Per-postcode byte ranges of both, so the dashboard reads one postcode's slice (accuracy_index.py).
    indexes = write_accuracy_indexes(blobs, results_container, folder, metrics_csv, pairs_csv)
    pointer = {
        "run_id": run_id, "evaluation": evaluation,
        "computed": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "results": f"{results_container}/{results_blob}",
        "metrics": f"{results_container}/{folder}metrics.csv", "pairs": f"{results_container}/{folder}pairs.csv",
        **indexes,
        "actuals": sources, "postcodes": len({p.postcode for p in pairs}), "rows": len(pairs),
        "overall": table[0], "model_versions": [r for r in table if r["level"] == "model_version"],
        "definitions": "error = actual - forecast; lead 1 = a postcode's first forecast day; "
                       "mase scale = mean |y[t] - y[t-7]| over the postcode's actuals",
    }
    blobs.write_json(results_container, accuracy_pointer(run_id), pointer)  # last: the flip
    return pointer


def read_accuracy(blobs: BlobStore, results_container: str, run_id: str) -> dict | None:
    try:
        return blobs.read_json(results_container, accuracy_pointer(run_id))
    except BlobNotFound:
        return None
