"""Accuracy when actuals arrive: the service's metrics equal forecast::accuracy() and direct R computations on
the same numbers (tests/r/accuracy_check.R), and are published atomically beside the run.

The run here is published by writing its results.csv and _SUCCESS to Azurite as publish_run would: the
pipeline itself is covered by test_pipeline_e2e.py; what is under test is the evaluation.
"""

from __future__ import annotations

import csv
import io
import math
import random
import subprocess
import uuid
from datetime import date, timedelta

import pytest
from conftest import REPO

from pipeline.accuracy import (
    METRIC_COLUMNS,
    AccuracyError,
    accuracy_pointer,
    evaluate_run,
    parse_actuals,
    read_accuracy,
)
from pipeline.publish import RESULT_COLUMNS

START = date(2026, 11, 23)
DAYS = 14
HISTORY = 14  # actuals before the forecast window: the 7-day seasonal naive needs them


def synthetic_run(rng: random.Random) -> tuple[list[list[str]], dict[tuple[str, date], float]]:
    """Forecasts for 3 postcodes (two with 80/95% intervals, one without) and actuals with gaps."""
    results, actuals = [], {}
    for k, pc in enumerate(("1000", "1002", "1004")):
        level = 50 + 40 * k
        for d in range(-HISTORY, DAYS):
            day = START + timedelta(days=d)
            actual = round(max(0.0, level + 15 * math.sin(2 * math.pi * d / 7) + rng.gauss(0, 6)))
            if not (pc == "1002" and d in (3, 9)):  # two actuals never arrive
                actuals[(pc, day)] = float(actual)
            if d < 0:
                continue
            f = level + 15 * math.sin(2 * math.pi * d / 7) + rng.gauss(0, 3)
            row = [pc, day.isoformat(), repr(f)]
            if pc == "1004":
                row += ["", "", "", ""]
            else:
                w = 4 + d
                row += [repr(f - w), repr(f + w), repr(f - 1.6 * w), repr(f + 1.6 * w)]
            results.append(row + ["parcels", "v7"])
    return results, actuals


def actuals_csv(actuals: dict[tuple[str, date], float]) -> bytes:
    lines = ["postcode,date,volume"] + [f"{pc},{day},{v:g}" for (pc, day), v in sorted(actuals.items())]
    return ("\n".join(lines) + "\n").encode()


def publish_fake_run(blobs, results: list[list[str]]) -> str:
    run_id = "run-" + uuid.uuid4().hex[:20]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(RESULT_COLUMNS)
    writer.writerows(results)
    blobs.write_bytes("results", f"runs/{run_id}/results.csv", out.getvalue().encode())
    blobs.write_bytes("results", f"runs/{run_id}/_SUCCESS", b"now")
    return run_id


def test_metrics_equal_forecast_accuracy_and_direct_r(blobs, tmp_path):
    results, actuals = synthetic_run(random.Random(7))
    run_id = publish_fake_run(blobs, results)
    history = {k: v for k, v in actuals.items() if k[1] < START}
    window = {k: v for k, v in actuals.items() if k[1] >= START}
    wrong = dict(window)
    wrong[("1000", START)] = 9999.0  # corrected by a later blob
    blobs.write_bytes("input", f"actuals/{run_id}/a-history.csv", actuals_csv(history))
    blobs.write_bytes("input", f"actuals/{run_id}/b-window.csv", actuals_csv(wrong))
    blobs.write_bytes("input", f"actuals/{run_id}/c-correction.csv",
                      actuals_csv({("1000", START): window[("1000", START)]}))

    pointer = evaluate_run(run_id, "eval-test", blobs, "results", "input", "actuals/")
    assert pointer["rows"] == 3 * DAYS - 2 and pointer["postcodes"] == 3
    assert read_accuracy(blobs, "results", run_id) == pointer
    metrics_csv = blobs.read_bytes("results", pointer["metrics"].partition("/")[2])
    assert metrics_csv.decode().splitlines()[0] == ",".join(METRIC_COLUMNS)

    paths = {name: tmp_path / f"{name}.csv" for name in ("results", "actuals", "metrics", "check")}
    paths["results"].write_bytes(blobs.read_bytes("results", f"runs/{run_id}/results.csv"))
    paths["actuals"].write_bytes(actuals_csv(actuals))
    paths["metrics"].write_bytes(metrics_csv)
    subprocess.run(["Rscript", str(REPO / "tests" / "r" / "accuracy_check.R"), *(str(paths[n]) for n in
                    ("results", "actuals", "metrics", "check"))], check=True, capture_output=True)
    checks = list(csv.DictReader(paths["check"].open()))
    sources = {c["source"] for c in checks}
    assert sources == {"direct", "forecast::accuracy"}
    assert {c["level"] for c in checks} == {"overall", "model_version", "lead", "postcode"}
    assert len([c for c in checks if c["level"] == "lead"]) == DAYS * 12
    for c in checks:
        if c["r"] == "NA":
            assert c["ours"] == "NA", c  # e.g. coverage of the postcode without intervals
            continue
        assert abs(float(c["ours"]) - float(c["r"])) <= 1e-9, c
    interval_free = [c for c in checks if c["key"] == "1004" and c["metric"] == "coverage_80"]
    assert interval_free and interval_free[0]["ours"] == "NA"


def test_pointer_is_written_last_and_names_complete_files(blobs):
    results, actuals = synthetic_run(random.Random(3))
    run_id = publish_fake_run(blobs, results)
    blobs.write_bytes("input", f"actuals/{run_id}/all.csv", actuals_csv(actuals))
    first = evaluate_run(run_id, "eval-one", blobs, "results", "input", "actuals/")
    # A failing evaluation (bad actuals added later) leaves the published one in place.
    blobs.write_bytes("input", f"actuals/{run_id}/zz.csv", b"postcode,date,volume\n1000,2026-11-23,-4\n")
    with pytest.raises(AccuracyError, match="line 2: volume '-4'"):
        evaluate_run(run_id, "eval-two", blobs, "results", "input", "actuals/")
    assert blobs.read_json("results", accuracy_pointer(run_id)) == first
    assert not list(blobs.list("results", f"runs/{run_id}/accuracy/eval-two/"))


@pytest.mark.parametrize(("text", "message"), [
    (b"", "is empty"),
    (b"postcode,day,volume\n", "lacks column"),
    (b"postcode,date,volume\n1000,23.11.2026,4\n", "date '23.11.2026' is not YYYY-MM-DD"),
    (b"postcode,date,volume\n1000,2026-11-23,lots\n", "volume 'lots' is not a number"),
    (b"postcode,date,volume\n1000,2026-11-23,4\n1000,2026-11-23,5\n", "a second row for postcode 1000"),
    (b"postcode,date,volume\n", "no rows"),
])
def test_bad_actuals_are_refused_with_the_reason(text, message):
    with pytest.raises(AccuracyError, match=message):
        parse_actuals(text, "actuals")


def test_actuals_for_an_unpublished_run_or_other_dates_are_refused(blobs):
    with pytest.raises(AccuracyError, match="has published no results"):
        evaluate_run("run-nothing", "eval-x", blobs, "results", "input", "actuals/")
    results, _ = synthetic_run(random.Random(1))
    run_id = publish_fake_run(blobs, results)
    blobs.write_bytes("input", f"actuals/{run_id}/old.csv", b"postcode,date,volume\n1000,2020-01-01,4\n")
    with pytest.raises(AccuracyError, match="share no"):
        evaluate_run(run_id, "eval-y", blobs, "results", "input", "actuals/")
