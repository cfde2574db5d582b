"""Plan checks against the models' prototypes (pipeline/model_checks.py), on manifests written directly: no R."""

from __future__ import annotations

from datetime import date, timedelta

from pipeline.input_scan import scan_input
from pipeline.model_checks import ModelInputCheck
from scoring.modelstore import Manifest, ModelEntry

GLM = {"class": "glm", "prototype": [{"name": "month", "type": "factor", "levels": ["1", "2", "3"]},
                                     {"name": "temp", "type": "numeric"}]}
TS = {"class": "ets", "time_series": True}


def manifest(profiles: list[dict], entries: dict[str, tuple]) -> Manifest:
    """entries: postcode -> (profile index, training end[, step])."""
    models = {pc: ModelEntry(blob="packs/00000.bin", offset=0, length=1, sha256="0" * 64, source_sha256="0" * 64,
                             model_class=profiles[i]["class"], slimmed=False, profile=i, training_end=end,
                             step=rest[0] if rest else None)
              for pc, (i, end, *rest) in entries.items()}
    return Manifest(model="parcels", version="v1", created="2026-11-20T00:00:00Z", r_version="4.2.2",
                    r_packages={}, models=models, profiles=profiles)


def check(m: Manifest, text: str, gap: int = 30) -> dict[str, str]:
    # As planning does: the check fed from the input scan's one pass.
    checker = ModelInputCheck(m, gap, "input x.csv")
    scan_input(text.encode(), "input x.csv", visit=checker.visit)
    failed, _ = checker.result(sorted(m.models))
    return failed


def test_postcodes_are_trimmed_as_planning_and_the_worker_read_them():
    # Planning counts ' 8001 ' as 8001; the prototype check must judge the same rows, not skip them.
    m = manifest([GLM], {"8001": (0, None), "8002": (0, None)})
    failed = check(m, "postcode,date,month,temp\n 8001 ,2026-12-01,7,1.5\n8002,2026-12-01,2,2.5\n")
    assert failed == {"8001": "column 'month' (fitted as factor) has level(s) not seen in fitting: '7' "
                              "(fitted levels: '1', '2', '3') (input x.csv)"}


def test_every_bad_value_is_named_once_and_good_postcodes_pass():
    m = manifest([GLM], {"8001": (0, None), "8002": (0, None), "8003": (0, None)})
    rows = ["8001,2026-12-01,1,1.5", "8001,2026-12-02,1,abc", "8001,2026-12-03,1,abc", "8001,2026-12-04,2,x",
            "8002,2026-12-01,3,NA", "8003,2026-12-01,9,1", "8003,2026-12-02,1,oops"]
    failed = check(m, "postcode,date,month,temp\n" + "\n".join(rows) + "\n")
    assert set(failed) == {"8001", "8003"}
    assert "(fitted as numeric) has values that are not numbers: 'abc', 'x'" in failed["8001"]
    assert "level(s) not seen in fitting: '9'" in failed["8003"]  # the first column's problem comes first


def test_a_missing_column_fails_every_postcode_of_that_profile_only():
    m = manifest([GLM, TS], {"8001": (0, None), "8002": (1, "2026-11-30")})
    failed = check(m, "postcode,date,month\n8001,2026-12-01,1\n8002,2026-12-01,1\n")
    assert list(failed) == ["8001"] and "input lacks column(s) the model was fitted with: temp" in failed["8001"]


def test_time_series_start_is_checked_against_the_training_end_from_trimmed_rows():
    m = manifest([TS], {"8001": (0, "2026-11-30"), "8002": (0, "2026-12-05"), "8003": (0, "2026-10-01")})
    text = ("postcode,date\n8001 ,2026-12-01\n8002,2026-12-01\n8002,2026-12-02\n 8003,2026-12-01\n")
    failed = check(m, text, gap=30)
    assert set(failed) == {"8002", "8003"}
    assert "on or before the model's training end 2026-12-05" in failed["8002"]
    assert "60 days after the model's training end 2026-10-01" in failed["8003"]


def rows(postcode: str, dates) -> str:
    return "".join(f"{postcode},{d}\n" for d in dates)


def test_time_series_dates_must_be_on_each_models_step_grid():
    end = date(2026, 11, 30)  # a Monday
    m = manifest([TS], {"8001": (0, "2026-11-30", "1 week"), "8002": (0, "2026-11-30", "1 week"),
                        "8003": (0, "2026-10-31", "1 month"), "8004": (0, "2026-10-31", "1 month"),
                        "8005": (0, "2026-11-30", "2 days"), "8006": (0, "2026-11-30", "2 days"),
                        "8007": (0, "2026-11-30")})  # no step: a manifest from before steps, one day
    text = "postcode,date\n" + rows("8001", [end + timedelta(weeks=k) for k in range(3, 6)])
    text += rows("8002", [end + timedelta(weeks=1), date(2026, 12, 9), end + timedelta(weeks=3)])  # a Wednesday
    text += rows("8003", ["2026-12-31", "2027-01-31", "2027-02-28", "2027-03-31"])  # month ends, as the end
    text += rows("8004", [end + timedelta(days=d) for d in range(8, 0, -1)])  # daily rows for a monthly model
    text += rows("8005", ["2026-12-02", "2026-12-04", "2026-12-06"])
    text += rows("8006", ["2026-12-02", "2026-12-03"])
    text += rows("8007", ["2026-12-01", "2026-12-02"])
    failed = check(m, text, gap=30)
    assert set(failed) == {"8002", "8004", "8006"}
    assert failed["8002"] == ("input date(s) '2026-12-09' are not on the model's step grid (1 week from its training "
                              "end 2026-11-30: 2026-12-07, 2026-12-14, 2026-12-21, ...) (input x.csv)")
    assert ("input date(s) '2026-12-01', '2026-12-02', '2026-12-03', '2026-12-04', '2026-12-05' and 3 more are not "
            "on the model's step grid (1 month from its training end 2026-10-31: 2026-11-30, 2026-12-31, 2027-01-31")\
        in failed["8004"]
    assert "'2026-12-03' are not on the model's step grid (2 days" in failed["8006"]


def test_time_series_gap_is_the_skipped_steps_in_days():
    m = manifest([TS], {"8001": (0, "2026-11-30", "1 week"), "8002": (0, "2026-11-30", "1 week"),
                        "8003": (0, "2026-09-01", "1 month"), "8004": (0, "2026-11-20")})
    text = ("postcode,date\n8001,2027-01-04\n"  # step 5: 4 steps (28 days) skipped
            "8002,2027-01-11\n"  # step 6: 35 days skipped
            "8003,2026-12-01\n"  # step 3: Sep + 2 months = 2026-11-01, 61 days
            "8004,2026-12-21\n")  # daily, 30 days skipped
    failed = check(m, text, gap=30)
    assert set(failed) == {"8002", "8003"}
    assert failed["8002"] == ("input starts on 2027-01-11, step 6 of 1 week after the model's training end "
                              "2026-11-30: the 5 step(s) before it span 35 days; at most 30 days are allowed "
                              "(TS_MAX_GAP_DAYS; retrain the model) (input x.csv)")
    assert "step 3 of 1 month after the model's training end 2026-09-01: the 2 step(s) before it span 61 days" \
        in failed["8003"]
    assert check(m, text, gap=61) == {}  # 61 days skipped is at the limit, not past it


def test_the_plans_fast_grid_check_agrees_with_the_step_grid_on_two_years_of_dates():
    """Planning checks each row with ordinal arithmetic (model_checks); scoring/steps.py (which R agrees with,
    tests/test_model_aware.py) is the definition."""
    from pipeline.model_checks import ModelInputCheck
    from scoring.steps import parse_step, step_index

    check = ModelInputCheck(manifest([TS], {}), 30, "x")
    for end_text in ("2026-01-31", "2024-02-29", "2026-02-28", "2026-03-15", "2026-04-30", "2026-11-30"):
        end = date.fromisoformat(end_text)
        texts = [str(end + timedelta(days=d)) for d in range(-40, 731)]
        for step_text in ("1 day", "2 days", "1 week", "1 month", "2 months", "3 months", "12 months"):
            step = parse_step(step_text)
            expected = [t for t in texts if step_index(end, date.fromisoformat(t), step) is None]
            assert check._off_grid(texts, end, step) == expected, (end_text, step_text)
