"""Accuracy and run warnings through the real routes and triggers: a run published by the whole pipeline
(Durable dev host, ARM stand-in, Azurite, the worker), then actuals posted to POST /api/runs/{id}/evaluate
and dropped as a blob under actuals/<run id>/; GET /api/runs/{id}/accuracy serves the latest evaluation."""

from __future__ import annotations

import csv
import io
import subprocess
import time
from pathlib import Path

import pytest
from conftest import HORIZON, sample_stack

from scoring.modelstore import ModelStore
from scoring.registration import register_version


@pytest.fixture(scope="module")
def stack(tmp_path_factory, sample_models):
    root = Path(tmp_path_factory.mktemp("accuracy-stack"))
    overrides = {"MIN_SHARD_SIZE": "10", "DEFAULT_HORIZON_DAYS": str(HORIZON), "SHARD_ATTEMPTS": "1"}
    with sample_stack(root, sample_models, overrides, host_args=["--blob-poll-interval", "0.5"]) as s:
        yield s


@pytest.fixture(scope="module")
def run(stack) -> tuple[str, list[dict]]:
    r = stack.post("/api/runs", {"input": "manual/input.csv", "horizon": HORIZON})
    assert r.status_code == 202, r.text
    view = stack.wait_for_run(r.json()["id"])
    assert view["state"] == "completed", view
    container, _, name = view["results"].partition("/")
    return view["id"], list(csv.DictReader(io.StringIO(stack.blobs.read_bytes(container, name).decode())))


def wait_for_accuracy(stack, run_id: str, evaluation: str | None = None, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = stack.get(f"/api/runs/{run_id}/accuracy")
        if r.status_code == 200 and (evaluation is None or r.json()["evaluation"] == evaluation):
            return r.json()
        time.sleep(0.3)
    raise TimeoutError(f"no accuracy for {run_id} within {timeout} s")


def test_posted_then_dropped_actuals_are_evaluated(stack, run):
    run_id, rows = run
    assert stack.get(f"/api/runs/{run_id}/accuracy").status_code == 404
    # Actuals 10% above the forecast for the first half of the rows: bias is known exactly.
    half = rows[: len(rows) // 2]
    body = "postcode,date,volume\n" + "".join(f"{r['postcode']},{r['date']},{float(r['volume']) * 1.1!r}\n"
                                               for r in half)
    r = stack.post(f"/api/runs/{run_id}/evaluate", data=body.encode(), headers={"Content-Type": "text/csv"})
    assert r.status_code == 202, r.text
    first = wait_for_accuracy(stack, run_id, r.json()["id"])
    overall = first["overall"]
    assert overall["n"] == len(half)
    expected_me = sum(float(x["volume"]) * 0.1 for x in half) / len(half)
    assert abs(overall["me"] - expected_me) <= 1e-9 * max(1.0, expected_me)
    assert abs(overall["wape"] - sum(float(x["volume"]) * 0.1 for x in half)
               / sum(float(x["volume"]) * 1.1 for x in half)) <= 1e-9
    metrics = stack.blobs.read_bytes("results", first["metrics"].partition("/")[2]).decode()
    assert metrics.splitlines()[0].startswith("level,key,n,me,mae,rmse,wape,mase")

    # The rest arrives as a blob: the blob event evaluates the run again, with all its actuals.
    rest = rows[len(rows) // 2:]
    blob = "postcode,date,volume\n" + "".join(f"{r['postcode']},{r['date']},{r['volume']}\n" for r in rest)
    stack.blobs.write_bytes("input", f"actuals/{run_id}/day2.csv", blob.encode())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        second = wait_for_accuracy(stack, run_id)
        if second["evaluation"] != first["evaluation"]:
            break
        time.sleep(0.3)
    assert second["overall"]["n"] == len(rows) and len(second["actuals"]) == 2


@pytest.mark.parametrize(("run_id", "body", "status", "message"), [
    ("run-00000000000000000000", b"postcode,date,volume\n", 404, "no published run"),
    (None, b"postcode,when,volume\n1002,2026-01-01,3\n", 400, "lacks column(s) date"),
    (None, b"postcode,date,volume\n1002,2026-01-01,-3\n", 400, "volume '-3'"),
])
def test_bad_evaluate_requests_are_refused_with_the_reason(stack, run, run_id, body, status, message):
    r = stack.post(f"/api/runs/{run_id or run[0]}/evaluate", data=body, headers={"Content-Type": "text/csv"})
    assert r.status_code == status and message in r.json()["error"], r.text


def test_run_status_says_when_time_series_dates_are_assumed(stack, run, tmp_path):
    # A HoltWinters model with no training end anywhere: scored, and the run says its dates are assumed.
    folder = tmp_path / "hw"
    folder.mkdir()
    subprocess.run(["Rscript", "-e", f"saveRDS(HoltWinters(ts(100 + sin(1:200 * 2 * pi / 7) * 10 + "
                    f"rnorm(200), frequency = 7)), '{folder / '1002.rds'}')"], check=True, capture_output=True)
    register_version(ModelStore(stack.blobs), "parcels", "hw-no-end", folder)
    r = stack.post("/api/runs", {"input": "manual/input.csv", "horizon": HORIZON, "version": "hw-no-end"})
    assert r.status_code == 202, r.text
    view = stack.wait_for_run(r.json()["id"])
    assert view["state"] == "completed", view
    assert any("dates assumed" in w and "1002" in w for w in view["warnings"]), view
    manifest = stack.blobs.read_json("results", view["manifest"].partition("/")[2])
    assert manifest["warnings"] == view["warnings"]
    # A challenger (a version that is not the champion) publishes, but never takes latest/<model>.json.
    latest = stack.blobs.read_json("results", "latest/parcels.json") if stack.blobs.exists(
        "results", "latest/parcels.json") else {}
    assert latest.get("run_id") != r.json()["id"], latest
