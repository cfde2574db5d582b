"""Hostile input, store inconsistencies and concurrency against the local stack (Azurite, the ARM stand-in,
the Durable dev host, the real worker): no request ends in a 500, no run publishes a mix, nothing slips through.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from conftest import HORIZON, sample_stack

from orchestrators.planning import PlanError, plan_run
from orchestrators.run_requests import RunRequest
from orchestrators.settings import Settings

POSTCODES = 10


@pytest.fixture(scope="module")
def stack(tmp_path_factory, sample_models):
    root = Path(tmp_path_factory.mktemp("hardening"))
    overrides = {"MIN_SHARD_SIZE": "4", "DEFAULT_HORIZON_DAYS": str(HORIZON), "SHARD_ATTEMPTS": "1",
                 "SHARD_DEADLINE_MINUTES": "2"}
    with sample_stack(root, sample_models, overrides, host_args=["--blob-poll-interval", "3600"]) as s:
        yield s


def post_raw(stack, path: str, body: bytes) -> requests.Response:
    return requests.post(stack.base_url + path, data=body, headers={"Content-Type": "application/json"}, timeout=30)


def start(stack, body: dict) -> str:
    r = stack.post("/api/runs", body)
    assert r.status_code == 202, r.text
    return r.json()["id"]


# ------------------------------------------------------------------------------ 1. no 500s at the door


@pytest.mark.parametrize(("body", "field"), [
    (b"[" * 100_000 + b"]" * 100_000, "body"),
    (b'{"input": "manual/input.csv", "postcodes": ' + b"[" * 50 + b'"1002"' + b"]" * 50 + b"}", "body"),
    (b'{"input": "manual/input.csv", "horizon": ' + b"[" * 5000 + b"]" * 5000 + b"}", "body"),
    (b'{"input": "manual/input.csv", "version": "latest"}', "version"),
    (b'{"input": "manual/input.csv", "postcodes": ["' + b"1" * 100_000 + b'"]}', "postcodes"),
])
def test_hostile_bodies_get_a_400_naming_the_field(stack, body, field):
    r = post_raw(stack, "/api/runs", body)
    assert r.status_code == 400, r.text[:300]
    assert r.json()["field"] == field and r.json()["error"]
    assert len(r.text) < 2000  # a long value is not echoed back in full


@pytest.mark.parametrize(("model", "blob", "content", "problem"), [
    ("bad-alias-json", "champion.json", b"{not json", "not valid JSON"),
    ("bad-alias-list", "champion.json", b"[1, 2]", "not a JSON object"),
    ("bad-alias-name", "champion.json", b'{"version": "../../x"}', "invalid version"),
    ("bad-alias-latest", "champion.json", b'{"version": "latest"}', "reserved"),
    ("bad-manifest-json", "v1/manifest.json", b"{", "not valid JSON"),
    ("bad-manifest-shape", "v1/manifest.json", b'{"models": []}', "malformed"),
    ("bad-manifest-path", "v1/manifest.json", None, "unsafe postcode"),
])
def test_corrupt_model_store_is_a_clear_422_naming_the_blob(stack, model, blob, content, problem):
    if content is None:  # a manifest whose postcode would escape the worker's model folder
        content = json.dumps({"model": model, "version": "v1", "created": "x", "r_version": "4.2.2",
                              "r_packages": {}, "models": {"../../etc/passwd": {
                                  "blob": "packs/00000.bin", "offset": 0, "length": 1, "sha256": "0",
                                  "source_sha256": "0", "model_class": "glm", "slimmed": False}}}).encode()
    if blob.startswith("v1/"):
        stack.blobs.write_json("models", f"{model}/champion.json", {"version": "v1"})
    stack.blobs.write_bytes("models", f"{model}/{blob}", content)
    r = stack.post("/api/runs", {"input": "manual/input.csv", "model": model})
    assert r.status_code == 422, r.text
    body = r.json()
    assert f"models/{model}/{blob}" in body["error"] and problem in body["error"], body
    assert "Traceback" not in r.text


def test_corrupt_alias_fails_a_scheduled_run_with_the_reason(stack):
    """The timer's run is not checked at the door: its plan must say what is wrong with the store."""
    good = stack.blobs.read_bytes("models", "parcels/champion.json")
    stack.blobs.write_bytes("models", "parcels/champion.json", b'{"version": "latest"}')
    try:
        assert stack.post("/admin/functions/daily_scoring", {"input": ""}).status_code == 202
        run_id = f"daily-parcels-{datetime.now(UTC).date().isoformat()}"
        deadline = time.monotonic() + 30
        while stack.get(f"/api/runs/{run_id}").status_code == 404:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        view = stack.wait_for_run(run_id)
    finally:
        stack.blobs.write_bytes("models", "parcels/champion.json", good)
    assert view["state"] == "failed"
    assert "models/parcels/champion.json is corrupt" in view["errors"][0], view["errors"]
    assert stack.standin.groups() == []


def test_plan_names_the_corrupt_manifest(stack):
    stack.blobs.write_json("models", "plan-corrupt/champion.json", {"version": "v1"})
    stack.blobs.write_bytes("models", "plan-corrupt/v1/manifest.json", b'{"model": "plan-corrupt"}')
    request = RunRequest(model="plan-corrupt", version="champion", input_blob="manual/input.csv", postcodes=None,
                         horizon=HORIZON, shard_size=None, trigger="http")
    with pytest.raises(PlanError, match="models/plan-corrupt/v1/manifest.json is corrupt"):
        plan_run(request, "run-x", Settings.from_env(stack.settings), stack.blobs)


# --------------------------------------------------------------------------- 1. one retry at a time


def published_run_with_a_failure(stack) -> str:
    stack.standin.inject({"kind": "exit", "exit_code": 1, "output": "boom", "match": "-s001", "times": 1})
    run_id = start(stack, {"input": "manual/input.csv", "postcodes": ["1002", "1004"], "shardSize": 1})
    view = stack.wait_for_run(run_id)
    assert view["state"] == "completed_with_failures", view
    return run_id


def test_simultaneous_retries_start_one(stack):
    run_id = published_run_with_a_failure(stack)
    stack.standin.inject({"kind": "hang"})  # the retry stays active until cancelled
    barrier = threading.Barrier(3)
    answers: list[requests.Response] = []

    def retry() -> None:
        barrier.wait()
        answers.append(stack.post(f"/api/runs/{run_id}/retry"))

    try:
        threads = [threading.Thread(target=retry) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        codes = sorted(r.status_code for r in answers)
        assert codes == [202, 409, 409], [r.text for r in answers]
        started = next(r.json()["id"] for r in answers if r.status_code == 202)
        assert started == f"{run_id}-retry1"
        assert all("retry in progress" in r.json()["error"] for r in answers if r.status_code == 409)
        deadline = time.monotonic() + 60
        while not stack.standin.groups():
            assert time.monotonic() < deadline
            time.sleep(0.1)
        later = stack.post(f"/api/runs/{run_id}/retry")
        assert later.status_code == 409 and started in later.json()["error"], later.text
        assert stack.get(f"/api/runs/{run_id}-retry2").status_code == 404  # never a second retry at once
        assert stack.post(f"/api/runs/{started}/cancel").status_code == 202
        assert stack.wait_for_run(started)["state"] == "cancelled"
    finally:
        stack.standin.clear_faults()
    r = stack.post(f"/api/runs/{run_id}/retry")  # the first one finished: the next may start
    assert r.status_code == 202 and r.json()["id"] == f"{run_id}-retry2", r.text
    assert stack.wait_for_run(r.json()["id"])["state"] == "completed"


# ------------------------------------------------------------------ 2. the plan checks before any group


def jobs_of(stack, run_id: str) -> list[dict]:
    """The job specs written for the run's container groups (one per group created)."""
    return [stack.blobs.read_json("results", b.name) for b in stack.blobs.list("results", f"runs/{run_id}/jobs/")]


def sample_rows(sample_models) -> list[str]:
    _, input_csv = sample_models
    return input_csv.read_text().splitlines()


def test_postcodes_are_normalised_as_the_worker_does(tmp_path):
    """One definition of a postcode in the input: the plan's Python and the worker's R agree."""
    from orchestrators.planning import input_postcodes
    from scoring import r_session

    text = 'postcode,date\n" 1002",2099-01-01\n1004 ,2099-01-01\n"1006\t",2099-01-01\n1008,2099-01-01\n'
    path = tmp_path / "input.csv"
    path.write_text(text)
    planned = set(input_postcodes(text.encode(), "input"))
    r_session.call("load_input", str(path), ["1002", "1004", "1006", "1008"])
    in_r = set(r_session._r().r("names(.scoring$rows)"))
    assert planned == in_r == {"1002", "1004", "1006", "1008"}


def test_duplicates_after_normalisation_fail_the_plan(stack, sample_models):
    lines = sample_rows(sample_models)
    first = lines[1].split(",")
    duplicate = f'" {first[0]}",' + ",".join(first[1:])  # the same postcode and day, written with a blank
    stack.blobs.write_bytes("input", "manual/dup.csv", "\n".join(lines + [duplicate]).encode() + b"\n")
    run_id = start(stack, {"input": "manual/dup.csv"})
    view = stack.wait_for_run(run_id)
    assert view["state"] == "failed", view
    assert f"duplicate row for postcode {first[0]} on {first[1]}" in view["errors"][0], view["errors"]
    assert jobs_of(stack, run_id) == []


def test_short_and_missing_postcodes_fail_alone_in_the_plan(stack, sample_models):
    lines = sample_rows(sample_models)
    short = [line for line in lines if line.startswith("1002,")][-1]
    kept = [line for line in lines if line != short and not line.startswith("1020,")]
    stack.blobs.write_bytes("input", "manual/gaps.csv", "\n".join(kept).encode() + b"\n")
    run_id = start(stack, {"input": "manual/gaps.csv"})
    view = stack.wait_for_run(run_id)
    assert view["state"] == "completed_with_failures", view
    assert view["postcodes_failed"] == {
        "1002": f"input has {HORIZON - 1} rows for this postcode, expected {HORIZON} (the horizon)",
        "1020": "no input rows for this postcode"}
    assert view["postcodes_scored"] == POSTCODES - 2
    shipped = {pc for job in jobs_of(stack, run_id) for pc in job["postcodes"]}
    assert shipped and not shipped & {"1002", "1020"}  # no container was paid to find these out
    manifest = stack.blobs.read_json("results", f"runs/{run_id}/manifest.json")
    assert manifest["postcodes_failed"] == view["postcodes_failed"]


def test_missing_input_is_refused_at_the_door(stack):
    r = stack.post("/api/runs", {"input": "manual/nosuch.csv"})
    assert r.status_code == 400 and r.json()["field"] == "input", r.text
    assert "nosuch.csv" in r.json()["error"]


def test_latest_skips_names_the_worker_refuses(stack, sample_models):
    from orchestrators.planning import resolve_input

    _, input_csv = sample_models
    settings = Settings.from_env({**stack.settings, "INPUT_PREFIX": "latest-names/"})
    stack.blobs.write_bytes("input", "latest-names/good.csv", input_csv.read_bytes())
    time.sleep(1.1)  # Last-Modified has one-second resolution
    stack.blobs.write_bytes("input", "latest-names/bad name (copy).csv", input_csv.read_bytes())
    assert resolve_input(stack.blobs, settings, "latest") == "latest-names/good.csv"


def test_cancel_during_planning_creates_no_group(stack, sample_models):
    # Rows of postcodes no model has make the plan take a while (it reads every row): the cancel lands in it.
    filler = [f"{pc},2099-{m:02d}-{d:02d},0" for pc in range(50000, 54000) for m in (1, 2) for d in range(1, 29)]
    stack.blobs.write_bytes("input", "manual/big.csv", "\n".join(sample_rows(sample_models) + filler).encode())
    r = stack.post("/api/runs", {"input": "manual/big.csv"})
    assert r.status_code == 202
    run_id = r.json()["id"]
    assert stack.get(f"/api/runs/{run_id}").json()["progress"].get("stage") in (None, "planning")
    assert stack.post(f"/api/runs/{run_id}/cancel").status_code == 202
    view = stack.wait_for_run(run_id)
    assert view["state"] == "cancelled", view
    assert jobs_of(stack, run_id) == [] and stack.standin.groups() == []
