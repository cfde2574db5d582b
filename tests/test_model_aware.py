"""Model-aware scoring against real R and Azurite: input typed as the model was fitted, every model's
packages loaded, time-series forecasts on the input's dates, plan checks from the models' prototypes.

The fixtures (tests/r/model_aware_fixtures.R) fit the models and compute R's own predict()/forecast() on
the original, typed data frames; the worker reads the CSV an R user writes from those frames.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import uuid
from datetime import date, timedelta
from pathlib import Path

import pytest
from conftest import REPO
from test_scoring_worker import read_csv, run_worker

from pipeline.payloads import RunRequest
from pipeline.planning import PlanError, plan_run
from pipeline.settings import Settings
from scoring.modelstore import ModelStore, ModelStoreError
from scoring.registration import register_version
from scoring.worker import EXIT_OK, EXIT_PARTIAL

START = date.today() + timedelta(days=3)
DAYS = 14
GAP = 5  # the time-series models' training ends GAP days before the input starts


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("model-aware")
    subprocess.run(["Rscript", str(REPO / "tests" / "r" / "model_aware_fixtures.R"), str(out), START.isoformat(),
                    str(DAYS), str(GAP)], check=True, capture_output=True)
    return out


def register(blobs, folder: Path, **kwargs) -> str:
    version = "ma-" + uuid.uuid4().hex[:8]
    register_version(ModelStore(blobs), "parcels", version, folder, **kwargs)
    return version


def upload(blobs, data: bytes) -> str:
    name = f"model-aware/{uuid.uuid4().hex[:8]}.csv"
    blobs.write_bytes("input", name, data)
    return name


def job(version: str, input_blob: str, prefix: str, horizon: int = DAYS, **extra) -> dict:
    return {"model": "parcels", "version": version, "input": {"container": "input", "blob": input_blob},
            "postcodes": None, "output": {"container": "results", "prefix": prefix}, "horizon": horizon, **extra}


def reference(path: Path) -> list[dict]:
    return list(csv.DictReader(path.open()))


def assert_equal_to_r(got: list[dict], expected: list[dict], columns=("volume",)) -> None:
    mine = {(r["postcode"], r["date"]): r for r in got}
    assert len(mine) == len(expected)
    for row in expected:
        for column in columns:
            assert abs(float(mine[(row["postcode"], row["date"])][column]) - float(row[column])) <= 1e-9, (
                row, column)


def plan(blobs, version: str, input_blob: str, **settings):
    request = RunRequest.from_json({"model": "parcels", "version": version, "input_blob": input_blob,
                                    "postcodes": None, "horizon": DAYS, "trigger": "http", "retry_of": None,
                                    "dry_run": True, "shard_size": None})
    env = {"INPUT_CONTAINER": "input", **settings}
    return plan_run(request, "dry-run", Settings.from_env(env), blobs)


def test_registration_records_prototypes_packages_and_training_ends(blobs, fixtures):
    typed = ModelStore(blobs).read_manifest("parcels", register(blobs, fixtures / "typed"))
    glm = typed.profile_of("1000")
    columns = {c["name"]: c for c in glm["prototype"]}
    assert columns["month"]["type"] == "factor" and columns["month"]["levels"] == [str(m) for m in range(1, 13)]
    assert columns["promo"]["type"] == "logical" and columns["temp"]["type"] == "numeric"
    lm = {c["name"]: c for c in typed.profile_of("1002")["prototype"]}
    assert lm["region"]["levels"] == ["east", "north", "south"] and lm["size"]["type"] == "ordered"
    weekday = typed.profile_of("1004")["prototype"][0]
    assert weekday["type"] == "numeric" and weekday["levels_of"] == "factor(weekday)"

    bases = ModelStore(blobs).read_manifest("parcels", register(blobs, fixtures / "bases"))
    assert "splines" in bases.profile_of("1000")["attach"] and "splines" in bases.profile_of("1002")["attach"]
    assert bases.profile_of("1004")["packages"][0] == "mgcv" and "mgcv" in bases.r_packages

    ts = ModelStore(blobs).read_manifest("parcels", register(blobs, fixtures / "ts"))
    end = (fixtures / "ts_training_end.txt").read_text().strip()
    assert ts.models["1000"].training_end == end  # the model's attribute
    assert ts.models["1002"].training_end == end  # a daily ts with a calendar start
    assert ts.models["1004"].training_end is None and ts.dates_assumed() == ["1004"]
    assert "1004" in ts.to_json()["dates_assumed"]["first"]


def test_csv_input_scores_factor_logical_numeric_models_as_r_predict(azurite, blobs, fixtures):
    version = register(blobs, fixtures / "typed")
    result = run_worker(azurite, job(version, upload(blobs, (fixtures / "typed.csv").read_bytes()), "t/typed/"))
    assert result.returncode == EXIT_OK, result.stderr
    assert_equal_to_r(read_csv(blobs, "t/typed/results.csv"), reference(fixtures / "typed_reference.csv"))


def test_formula_bases_gam_and_other_classes_equal_r_predict(azurite, blobs, fixtures):
    version = register(blobs, fixtures / "bases")
    result = run_worker(azurite, job(version, upload(blobs, (fixtures / "bases.csv").read_bytes()), "t/bases/"))
    assert result.returncode == EXIT_OK, result.stderr + result.stdout
    assert_equal_to_r(read_csv(blobs, "t/bases/results.csv"), reference(fixtures / "bases_reference.csv"))


def _with_value(csv_bytes: bytes, postcode: str, column: str, value: str) -> bytes:
    rows = list(csv.reader(csv_bytes.decode().splitlines()))
    i = rows[0].index(column)
    for row in rows[1:]:
        if row[0] == postcode:
            row[i] = value
            break
    return ("\n".join(",".join(r) for r in rows) + "\n").encode()


def test_unseen_level_and_bad_type_fail_their_postcode_by_name(azurite, blobs, fixtures):
    version = register(blobs, fixtures / "typed")
    data = _with_value((fixtures / "typed.csv").read_bytes(), "1000", "month", "13")
    data = _with_value(data, "1002", "promo", "maybe")
    blob = upload(blobs, data)

    planned = plan(blobs, version, blob)
    assert set(planned.failed) == {"1000", "1002"}
    assert "column 'month'" in planned.failed["1000"] and "'13'" in planned.failed["1000"]
    assert "column 'promo'" in planned.failed["1002"] and "'maybe'" in planned.failed["1002"]
    assert [s.postcodes for s in planned.shards] == [["1004", "1006"]]

    # The worker applies the same rules (a job written by hand, or an input that changed).
    result = run_worker(azurite, job(version, blob, "t/unseen/"))
    assert result.returncode == EXIT_PARTIAL
    status = blobs.read_json("results", "t/unseen/status.json")
    assert "column 'month'" in status["failed"]["1000"] and "'13'" in status["failed"]["1000"]
    assert "not seen in fitting" in status["failed"]["1000"]
    assert "column 'promo'" in status["failed"]["1002"] and "'maybe'" in status["failed"]["1002"]
    assert status["scored"] == ["1004", "1006"]


def test_missing_column_fails_the_postcodes_that_need_it_by_name(blobs, fixtures):
    version = register(blobs, fixtures / "typed")
    rows = [r.split(",") for r in (fixtures / "typed.csv").read_text().splitlines()]
    i = rows[0].index("temp")
    blob = upload(blobs, ("\n".join(",".join(r[:i] + r[i + 1:]) for r in rows) + "\n").encode())
    planned = plan(blobs, version, blob)
    assert sorted(planned.failed) == ["1000", "1002", "1004"]  # 1006 (nls) does not read temp
    assert all("lacks column(s) the model was fitted with: temp" in why for why in planned.failed.values())
    assert [s.postcodes for s in planned.shards] == [["1006"]]


def test_time_series_forecast_lands_on_the_input_dates(azurite, blobs, fixtures):
    version = register(blobs, fixtures / "ts")
    blob = upload(blobs, (fixtures / "ts.csv").read_bytes())
    result = run_worker(azurite, job(version, blob, "t/ts/"))
    assert result.returncode == EXIT_OK, result.stderr
    # 1000/1002: the last DAYS values of forecast(model, h = GAP + DAYS); 1004 (no training end): h = DAYS.
    assert_equal_to_r(read_csv(blobs, "t/ts/results.csv"), reference(fixtures / "ts_reference.csv"),
                      ("volume", "lower_80", "upper_95"))
    planned = plan(blobs, version, blob)
    assert planned.failed == {} and any("dates assumed" in w and "1004" in w for w in planned.warnings)

    # A manifest written before steps existed (no `step` on its entries) steps one day, as it always did.
    name = f"parcels/{version}/manifest.json"
    manifest = blobs.read_json("models", name)
    assert manifest["models"]["1000"]["step"] == "1 day"
    for entry in manifest["models"].values():
        entry.pop("step"), entry.pop("step_source")
    blobs.write_json("models", name, manifest)
    assert ModelStore(blobs).read_manifest("parcels", version).models["1000"].step is None
    result = run_worker(azurite, job(version, blob, "t/ts-old/"))
    assert result.returncode == EXIT_OK, result.stderr
    assert_equal_to_r(read_csv(blobs, "t/ts-old/results.csv"), reference(fixtures / "ts_reference.csv"),
                      ("volume", "lower_80", "upper_95"))


def test_time_series_input_before_training_end_or_too_late_fails(azurite, blobs, fixtures):
    version = register(blobs, fixtures / "ts")
    end = date.fromisoformat((fixtures / "ts_training_end.txt").read_text().strip())
    early = "postcode,date\n" + "".join(f"1000,{end + timedelta(days=d)}\n1002,{end + timedelta(days=d)}\n"
                                        for d in range(0, DAYS))
    result = run_worker(azurite, job(version, upload(blobs, early.encode()), "t/ts-early/",
                                     postcodes=["1000", "1002"]))
    status = blobs.read_json("results", "t/ts-early/status.json")
    assert result.returncode == EXIT_PARTIAL and set(status["failed"]) == {"1000", "1002"}
    assert f"on or before the model's training end {end}" in status["failed"]["1000"]

    late = "postcode,date\n" + "".join(f"1000,{end + timedelta(days=d)}\n" for d in range(10, 10 + DAYS))
    blob = upload(blobs, late.encode())
    result = run_worker(azurite, job(version, blob, "t/ts-late/", postcodes=["1000"], ts_max_gap_days=3))
    assert result.returncode == EXIT_PARTIAL
    status = blobs.read_json("results", "t/ts-late/status.json")
    assert "9 days after the model's training end" in status["failed"]["1000"]
    # The only postcode with input fails its model: the whole plan fails, saying why.
    with pytest.raises(PlanError, match="9 days after the model's training end.*TS_MAX_GAP_DAYS"):
        plan(blobs, version, blob, TS_MAX_GAP_DAYS="3")


def test_training_end_given_at_registration_wins_and_is_checked(blobs, fixtures, tmp_path):
    folder = tmp_path / "ts"
    folder.mkdir()
    for f in (fixtures / "ts").glob("*.rds"):
        (folder / f.name).write_bytes(f.read_bytes())
    (folder / "training_end.csv").write_text("postcode,training_end\n1004,2026-01-31\n")
    manifest = ModelStore(blobs).read_manifest("parcels", register(blobs, folder, training_end="2026-02-28"))
    assert manifest.models["1004"].training_end == "2026-01-31"
    assert manifest.models["1000"].training_end == "2026-02-28"
    assert manifest.dates_assumed() == []
    (folder / "training_end.csv").write_text("postcode,training_end\n1004,31.01.2026\n")
    with pytest.raises(ModelStoreError, match="not YYYY-MM-DD"):
        register(blobs, folder)


def test_image_check_covers_the_models_packages(blobs, fixtures):
    version = register(blobs, fixtures / "bases")
    blob = upload(blobs, (fixtures / "bases.csv").read_bytes())
    with pytest.raises(PlanError, match="lacks: .*mgcv"):
        plan(blobs, version, blob, IMAGE_R_PACKAGES="forecast=8.20;data.table=1.14.8;jsonlite=1.8.4")


def test_steps_come_from_the_series_or_the_data_scientist_and_are_checked(blobs, tmp_path):
    folder = tmp_path / "monthly"
    folder.mkdir()
    # USAccDeaths: monthly from January 1973 to December 1978; the hourly series has no calendar step.
    subprocess.run(["Rscript", "-e", f"saveRDS(forecast::ets(USAccDeaths), '{folder / '1000.rds'}'); "
                    f"saveRDS(forecast::ets(ts(1:100 + 0, frequency = 24)), '{folder / '1002.rds'}')"],
                   check=True, capture_output=True)
    manifest = ModelStore(blobs).read_manifest("parcels", register(blobs, folder))
    derived = manifest.models["1000"]
    assert (derived.training_end, derived.training_end_source) == ("1978-12-01", "monthly ts calendar")
    assert (derived.step, derived.step_source) == ("1 month", "ts frequency 12")
    assert manifest.models["1002"].step is None and manifest.dates_assumed() == ["1002"]
    # Given: a month end anchors month ends; a step for the hourly one; day 30 of a 31-day month is refused.
    (folder / "training_end.csv").write_text("postcode,training_end,step\n1000,1978-12-31,\n1002,2026-11-01,1 day\n")
    given = ModelStore(blobs).read_manifest("parcels", register(blobs, folder))
    assert (given.models["1000"].training_end, given.models["1000"].step) == ("1978-12-31", "1 month")
    assert (given.models["1002"].step, given.models["1002"].step_source) == ("1 day", "registration")
    (folder / "training_end.csv").write_text("postcode,training_end\n1000,1978-12-30\n")
    with pytest.raises(ModelStoreError, match="1000.rds: training end 1978-12-30 with a step of 1 month: use a day"):
        register(blobs, folder)
    (folder / "training_end.csv").write_text("postcode,training_end\n1002,2026-11-01\n")
    with pytest.raises(ModelStoreError, match="1002.rds: a training end .* frequency 24, which names no calendar step"):
        register(blobs, folder)
    (folder / "training_end.csv").unlink()
    with pytest.raises(ModelStoreError, match="--step: step 'fortnight' is not"):
        register(blobs, folder, step="fortnight")


def test_weekly_monthly_and_two_day_models_forecast_on_the_input_dates(azurite, blobs, fixtures):
    """The input starts GAP steps after each model's training end: R's forecast(model, h = GAP + n), last n."""
    version = register(blobs, fixtures / "steps")
    manifest = ModelStore(blobs).read_manifest("parcels", version)
    steps = {pc: (e.step, e.step_source) for pc, e in manifest.models.items()}
    assert steps == {"2000": ("1 week", "ts frequency 52"), "2002": ("1 month", "ts frequency 12"),
                     "2004": ("1 month", "ts frequency 12"), "2006": ("2 days", "model attribute step")}
    assert manifest.models["2002"].training_end_source == "monthly ts calendar"
    blob = upload(blobs, (fixtures / "steps.csv").read_bytes())
    # The limit counts the days of the steps skipped: GAP months are ~150 days.
    result = run_worker(azurite, job(version, blob, "t/steps/", ts_max_gap_days=400))
    assert result.returncode == EXIT_OK, result.stderr
    assert_equal_to_r(read_csv(blobs, "t/steps/results.csv"), reference(fixtures / "steps_reference.csv"),
                      ("volume", "lower_80", "upper_95"))
    assert plan(blobs, version, blob, TS_MAX_GAP_DAYS="400").failed == {}
    assert set(plan(blobs, version, blob).failed) == {"2002", "2004"}  # the default 90 days: too long ago


def test_dates_off_the_step_grid_or_too_late_fail_in_the_plan_and_the_worker(azurite, blobs, fixtures):
    version = register(blobs, fixtures / "steps")
    given = {pc: [r["date"] for r in rows] for pc, rows in _by_postcode(fixtures / "steps.csv").items()}
    shift = {"2000": timedelta(days=2),  # Wednesdays for a model stepping Mondays
             "2006": timedelta(days=0)}  # untouched: the plan keeps one postcode to score
    text = "postcode,date\n"
    for pc in ("2000", "2006"):
        text += "".join(f"{pc},{date.fromisoformat(d) + shift[pc]}\n" for d in given[pc])
    first_month = date.fromisoformat(given["2002"][0])
    text += "".join(f"2002,{first_month + timedelta(days=d)}\n" for d in range(DAYS))  # daily rows, monthly model
    late = [date(first_month.year + 1, first_month.month, 1)]  # a year later: on the grid, too far
    while len(late) < DAYS:
        late.append(date(late[-1].year + (late[-1].month == 12), late[-1].month % 12 + 1, 1))
    text += "".join(f"2004,{_month_end(d)}\n" for d in late)
    blob = upload(blobs, text.encode())

    result = run_worker(azurite, job(version, blob, "t/steps-bad/", ts_max_gap_days=400))
    assert result.returncode == EXIT_PARTIAL, result.stderr
    worker = blobs.read_json("results", "t/steps-bad/status.json")["failed"]
    planned = plan(blobs, version, blob, TS_MAX_GAP_DAYS="400").failed
    assert set(worker) == set(planned) == {"2000", "2002", "2004"}
    assert planned["2000"].startswith(worker["2000"]) and planned["2002"].startswith(worker["2002"])  # same words
    wednesday = str(date.fromisoformat(given["2000"][0]) + timedelta(days=2))
    for reasons in (worker, planned):
        assert f"input date(s) '{wednesday}'" in reasons["2000"]
        assert "are not on the model's step grid (1 week from its training end" in reasons["2000"]
        assert f"'{first_month + timedelta(days=1)}'" in reasons["2002"]
        assert "not on the model's step grid (1 month from its training end" in reasons["2002"]
        assert f"input starts on {_month_end(late[0])}, step {GAP + 13} of 1 month" in reasons["2004"]
        assert "days are allowed" in reasons["2004"]


def _by_postcode(path: Path) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in csv.DictReader(path.open()):
        out.setdefault(row["postcode"], []).append(row)
    return out


def _month_end(d: date) -> date:
    nxt = date(d.year + (d.month == 12), d.month % 12 + 1, 1)
    return nxt - timedelta(days=1)


CASES = [("numeric", None, v) for v in ("3", "3.5", "1e5", "-2", "+4", ".5", " 7 ", "Inf", "0x1A", "abc", "1,5",
                                         "3 apples", "TRUE", "", "NA")]
CASES += [("logical", None, v) for v in ("TRUE", "false", "T", "1", "0", "yes", "2", "")]
CASES += [("factor", ["a", "b"], v) for v in ("a", "b", "c", "A", "NA")]
CASES += [("factor", ["1", "2"], v) for v in ("1", "01", "3")]
CASES += [("ordered", ["S", "M", "L"], v) for v in ("M", "XL")]
CASES += [("character", ["north", "south"], v) for v in ("north", "west")]
CASES += [("Date", None, v) for v in ("2026-01-31", "2026-02-30", "31.01.2026")]
CASES += [("numeric-levels", ["1", "2", "7"], v) for v in ("7", "07", "8", "2.0")]


@pytest.mark.integration  # runs R
def test_planning_and_the_worker_agree_on_every_hostile_value(tmp_path):
    """What the plan check lets through, R converts; what it refuses, R refuses (same column, same values)."""
    from pipeline.model_checks import column_problem

    columns = []
    for i, (kind, levels, _) in enumerate(CASES):
        col = {"name": f"c{i}", "type": "numeric" if kind == "numeric-levels" else kind}
        if levels is not None:
            col["levels"] = levels
        if kind == "numeric-levels":
            col["levels_of"] = f"factor(c{i})"
        columns.append(col)
    (tmp_path / "cases.json").write_text(json.dumps(columns))
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([[c["name"] for c in columns], [v for _, _, v in CASES]])
    (tmp_path / "values.csv").write_text(out.getvalue())
    subprocess.run(["Rscript", str(REPO / "tests" / "r" / "conform_cases.R"), str(REPO / "scoring" / "R"),
                    str(tmp_path / "cases.json"), str(tmp_path / "values.csv"), str(tmp_path / "r.csv")], check=True,
                   capture_output=True)
    in_r = {int(r["case"]): r for r in csv.DictReader((tmp_path / "r.csv").open())}
    refused = 0
    for i, (col, (_, _, value)) in enumerate(zip(columns, CASES, strict=True)):
        python_problem = column_problem(col, {value})
        assert (python_problem is None) == (in_r[i]["ok"] == "TRUE"), (col, value, python_problem, in_r[i])
        if python_problem:
            refused += 1
            assert f"column '{col['name']}'" in python_problem and in_r[i]["message"].startswith(
                f"column '{col['name']}'")
            assert value.strip() in python_problem and value.strip() in in_r[i]["message"]
    assert refused == 15  # the cases above that no conversion can rescue


@pytest.mark.integration  # runs R
def test_planning_and_the_worker_agree_on_every_step_grid(tmp_path):
    """Python's grid (planning) and R's (the worker) give the same step index, or both none, for every date
    of two years after training ends on awkward days (month ends, a leap day, the 15th, the 28th)."""
    from scoring.steps import add_steps, parse_step, step_index

    ends = ["2026-01-31", "2024-02-29", "2026-02-28", "2026-03-15", "2026-04-28", "2026-12-31", "2026-11-30"]
    steps = ["1 day", "2 days", "1 week", "3 weeks", "1 month", "2 months", "3 months", "12 months"]
    rows = [(end, step, str(date.fromisoformat(end) + timedelta(days=d)))
            for end in ends for step in steps for d in range(1, 731, 1 if "month" in step else 3)]
    with (tmp_path / "cases.csv").open("w", newline="") as f:
        csv.writer(f).writerows([("end", "step", "date"), *rows])
    subprocess.run(["Rscript", str(REPO / "tests" / "r" / "step_cases.R"), str(REPO / "scoring" / "R"),
                    str(tmp_path / "cases.csv"), str(tmp_path / "r.csv")], check=True, capture_output=True)
    in_r = {(r["end"], r["step"], r["date"]): r for r in csv.DictReader((tmp_path / "r.csv").open())}
    assert len(in_r) == len(rows)
    on_grid = 0
    for end, step, day in rows:
        e, s = date.fromisoformat(end), parse_step(step)
        k = step_index(e, date.fromisoformat(day), s)
        r = in_r[(end, step, day)]
        assert r["k"] == ("NA" if k is None else str(k)), (end, step, day, k, r)
        assert r["grid"] == " ".join(str(add_steps(e, i, s)) for i in (1, 2, 3)), (end, step, r)
        on_grid += k is not None
    assert 0 < on_grid < len(rows)


@pytest.mark.parametrize("gap", [-1, "30", True, 1.5])
def test_job_refuses_a_bad_gap_limit(gap):
    from scoring.job import JobError, parse_job

    with pytest.raises(JobError, match="ts_max_gap_days"):
        parse_job(job("v1", "x.csv", "p/", ts_max_gap_days=gap))
