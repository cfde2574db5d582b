"""Hostile input, store inconsistencies and concurrency against the local stack (Azurite, the ARM stand-in,
the Durable dev host, the real worker): no request ends in a 500, no run publishes a mix, nothing slips through.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import requests
from conftest import HORIZON, published_manifest, sample_stack

from pipeline import payloads as p
from pipeline.payloads import RunRequest, Trigger
from pipeline.planning import PlanError, plan_run
from pipeline.settings import Settings
from scoring.modelstore import ModelStore
from scoring.registration import register_version

POSTCODES = 10


@pytest.fixture(scope="module")
def stack(tmp_path_factory, sample_models):
    root = Path(tmp_path_factory.mktemp("hardening"))
    overrides = {"MIN_SHARD_SIZE": "1", "DEFAULT_HORIZON_DAYS": str(HORIZON), "SHARD_ATTEMPTS": "1",
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
                         horizon=HORIZON, shard_size=None, trigger=Trigger.HTTP)
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
    """The job specs written for the run's container groups (one per group created), in the staging container."""
    return [stack.blobs.read_json("staging", b.name) for b in stack.blobs.list("staging", f"{run_id}/")
            if b.name.endswith("/job.json")]


def sample_rows(sample_models) -> list[str]:
    _, input_csv = sample_models
    return input_csv.read_text().splitlines()


@pytest.mark.integration  # starts R
def test_postcodes_are_normalised_as_the_worker_does(tmp_path):
    """One definition of a postcode in the input: the plan's Python and the worker's R agree."""
    from pipeline.planning import input_postcodes
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
    manifest = published_manifest(stack.blobs, run_id)
    assert manifest["postcodes_failed"] == view["postcodes_failed"]


def test_missing_input_is_refused_at_the_door(stack):
    r = stack.post("/api/runs", {"input": "manual/nosuch.csv"})
    assert r.status_code == 400 and r.json()["field"] == "input", r.text
    assert "nosuch.csv" in r.json()["error"]


def test_latest_skips_names_the_worker_refuses(stack, sample_models):
    from pipeline.planning import resolve_input

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


# ------------------------------------------------------------- 3. published results valid by construction

DAYS = [f"2099-01-{d:02d}" for d in range(1, HORIZON + 1)]


def staged_shard(blobs, run_id: str, index: int, rows: list[list], scored: list[str]) -> p.ShardOutcome:
    """A shard outcome as score_shard returns it, with its results.csv staged in Azurite's staging container."""
    from pipeline import naming
    from pipeline.shard_output import RESULT_COLUMNS

    prefix = naming.staging_prefix(run_id, index)
    text = ",".join(RESULT_COLUMNS) + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows)
    blobs.write_bytes("staging", prefix + "results.csv", text.encode())
    blobs.write_json("staging", prefix + "status.json", {"scored": scored, "failed": {}, "exit_code": 0})
    status = p.ShardReport(output_prefix=prefix, scored=len(scored), rows=len(rows), exit_code=0)
    return p.ShardOutcome(index=index, state=p.ShardState.SUCCEEDED, status=status)


def publish_planned(plan: p.Plan, shards: list[p.ShardOutcome], settings: Settings, blobs) -> p.Published:
    """publish_run as the run calls it: the plan kept in blobs by plan_run, passed by reference (a RunPlan)."""
    from pipeline.plan_store import write_plan
    from pipeline.publish import publish_run

    request = p.PlanRequest(p.RunRequest("parcels", "v1", "manual/input.csv", None, HORIZON, None, Trigger.HTTP),
                            plan.run_id, "2099-01-01")
    return publish_run(write_plan(blobs, "results", request, plan), shards, settings, blobs)


def failures_of(blobs, out: p.Published) -> dict[str, str]:
    from pipeline.failures import read_failures

    return read_failures(blobs, out.failures)


def good_rows(postcodes: list[str], volume: float = 10.0, days: list[str] = DAYS) -> list[list]:
    return [[pc, day, volume, volume - 1, volume + 1, volume - 2, volume + 2, "parcels", "v1"]
            for pc in postcodes for day in days]


def publish_plan(run_id: str, shards: list[list[str]], **extra) -> p.Plan:
    values = dict(run_id=run_id, model="parcels", version="v1", model_packages={}, horizon=HORIZON,
                  trigger=Trigger.HTTP, retry_of=None, subset=False, champion=True, failed={},
                  input=p.InputRef("input", "manual/input.csv", "0x1"), postcodes_total=sum(map(len, shards)),
                  not_in_input=0, parallel_groups=2, input_time="2099-01-01T00:00:00+00:00",
                  planned_at="2099-01-01T00:00:00.000000Z", container=p.ContainerSize("img", 2.0, 4.0),
                  estimate=p.Estimate(len(shards), 0.0, 0.0, 0.0), timing=p.Timing(1, 1, 1, 1, 1, 1, 1),
                  shards=[p.ShardPlan(i, pcs) for i, pcs in enumerate(shards)])
    return p.Plan(**{**values, **extra})


def test_publish_excludes_shards_that_fail_validation_and_keeps_the_rest(stack):
    from pipeline.revisions import current_revision

    blobs, run_id = stack.blobs, "run-validation"
    plan = publish_plan(run_id, [["1002", "1004"], ["1006", "1008"], ["1010", "1012"], ["1014", "1016"],
                                 ["1018", "1020"]])
    bad_order = good_rows(["1006", "1008"])
    bad_order[3][6] = 9.5  # upper_95 below the volume (10)
    inf_interval = good_rows(["1014", "1016"])
    inf_interval[0][4] = "Inf"
    shards = [
        staged_shard(blobs, run_id, 0, good_rows(["1002", "1004", "1006"]), ["1002", "1004", "1006"]),  # stray
        staged_shard(blobs, run_id, 1, bad_order, ["1006", "1008"]),
        staged_shard(blobs, run_id, 2, good_rows(["1010", "1012"])[:-1] + [["1012", DAYS[-1], 1]], ["1010", "1012"]),
        staged_shard(blobs, run_id, 3, inf_interval, ["1014", "1016"]),
        staged_shard(blobs, run_id, 4, good_rows(["1018", "1020"]), ["1018", "1020"]),
    ]
    out = publish_planned(plan, shards, Settings.from_env(stack.settings), blobs)
    assert out.postcodes_scored == 2 and out.rows == 2 * HORIZON
    failed = failures_of(blobs, out)
    assert "not assigned" in failed["1002"] and "not assigned" in failed["1004"]
    assert "shard 1" in failed["1006"] and "> upper_95 9.5" in failed["1006"], failed["1006"]  # not shard 0's claim
    assert "line 29: 3 fields, expected 9" in failed["1012"]
    assert "upper_80 is Inf" in failed["1014"]
    current = current_revision(blobs, "results", run_id)
    rows = blobs.read_bytes("results", current.results).decode().splitlines()
    assert len(rows) == 1 + 2 * HORIZON and {r.split(",")[0] for r in rows[1:]} == {"1018", "1020"}
    manifest = blobs.read_json("results", current.manifest)
    assert [s["state"] for s in manifest["shards"]] == ["rejected"] * 4 + ["succeeded"]


def test_publish_with_nothing_valid_is_a_permanent_error(stack):
    from pipeline.publish import PublishError

    plan = publish_plan("run-novalid", [["1002"]])
    shard = staged_shard(stack.blobs, "run-novalid", 0, [["1002", DAYS[0], "NaN"]], ["1002"])
    with pytest.raises(PublishError, match="no shard produced valid results"):
        publish_planned(plan, [shard], Settings.from_env(stack.settings), stack.blobs)


def test_a_permanent_publish_error_is_not_retried():
    from support.replay import Replay, Work
    from test_orchestrator_replay import RUN_ID, make_plan, run_answers

    plan = make_plan(shards=2, parallel_groups=2)
    answers = run_answers(plan)
    calls = []

    def answer(work: Work):
        if work.name == "publish_run":
            calls.append(work)
            return p.PublishFailed(error="no shard produced valid results")
        return answers(work)

    out = Replay("score_run", {"model": "parcels", "version": "champion", "input_blob": "latest", "postcodes": None,
                               "horizon": 14, "shard_size": 3, "trigger": "http", "dry_run": False,
                               "retry_of": None}, instance_id=RUN_ID).run(answer)
    assert len(calls) == 1
    assert out["state"] == "failed" and out["errors"] == ["publish: no shard produced valid results"]


def test_publish_memory_does_not_grow_with_rows(stack, monkeypatch):
    """Publish of 4x the rows peaks at about the same Python memory: rows are streamed, never all held.
    (Ranged reads and staged blocks of 64 kB instead of MBs, so that both sizes here are many chunks.)"""
    import tracemalloc

    from pipeline import shard_output
    from scoring import blobstore

    monkeypatch.setattr(blobstore, "_STREAM_CHUNK", 64 * 1024)
    monkeypatch.setattr(shard_output, "OUT_CHUNK", 64 * 1024)


    settings = Settings.from_env(stack.settings)

    def peak_for(horizon: int) -> int:
        """Peak Python memory publishing 1,000 postcodes x horizon days (what is per postcode, such as the
        reasons and the dashboard's index, stays the same; only the rows grow)."""
        run_id = f"run-memory{horizon}"
        codes = [f"{n:05d}" for n in range(20000, 21000)]
        days = [(date(2099, 1, 1) + timedelta(days=d)).isoformat() for d in range(horizon)]
        plan = publish_plan(run_id, [codes[:500], codes[500:]], horizon=horizon)
        shards = [staged_shard(stack.blobs, run_id, i, good_rows(s.postcodes, days=days), s.postcodes)
                  for i, s in enumerate(plan.shards)]
        tracemalloc.start()
        try:
            out = publish_planned(plan, shards, settings, stack.blobs)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            assert out.rows == 1000 * horizon

    small, large = peak_for(14), peak_for(56)
    assert large < 1.5 * small, (small, large)


def test_worker_fails_a_postcode_whose_intervals_are_not_finite_or_ordered(stack, tmp_path, sample_models):
    models, _ = sample_models
    folder = tmp_path / "badint"
    folder.mkdir()
    for pc in ("1002", "1004", "1006"):
        (folder / f"{pc}.rds").write_bytes((models / f"{pc}.rds").read_bytes())
    (folder / "scorer.R").write_text(
        "score <- function(model, newdata) {\n"
        "  v <- rep(5, nrow(newdata)); pc <- newdata$postcode[1]\n"
        "  up <- if (pc == '1002') v - 1 else if (pc == '1004') rep(Inf, nrow(newdata)) else v + 1\n"
        "  data.frame(volume = v, lower_95 = v - 2, upper_95 = up)\n"
        "}\n")
    register_version(ModelStore(stack.blobs), "parcels", "badint", folder)
    run_id = start(stack, {"input": "manual/input.csv", "version": "badint"})
    view = stack.wait_for_run(run_id)
    assert view["state"] == "completed_with_failures", view
    failed = view["postcodes_failed"]
    assert set(failed) == {"1002", "1004"}, failed
    assert "volume > upper_95" in failed["1002"] and "upper_95 is NA or infinite" in failed["1004"]


# ------------------------------------------------------------ 4. atomic revisions and a monotonic latest


def test_a_retry_publishes_a_new_revision_and_leaves_the_old_one_intact(stack):
    from pipeline.revisions import current_revision

    blobs, settings, run_id = stack.blobs, Settings.from_env(stack.settings), "run-revisions"
    plan = publish_plan(run_id, [["1002"], ["1004"]])
    first = publish_planned(plan, [staged_shard(blobs, run_id, 0, good_rows(["1002"]), ["1002"]),
                                   p.ShardOutcome(index=1, state=p.ShardState.FAILED, reason="boom")],
                            settings, blobs)
    old = current_revision(blobs, "results", run_id)
    old_results, old_manifest = blobs.read_bytes("results", old.results), blobs.read_bytes("results", old.manifest)
    assert failures_of(blobs, first) == {"1004": "shard 1 failed: boom"}

    retry_id = f"{run_id}-retry1"
    retry_plan = publish_plan(retry_id, [["1004"]], retry_of=run_id, subset=True)
    out = publish_planned(retry_plan, [staged_shard(blobs, retry_id, 0, good_rows(["1004"], 20.0), ["1004"])],
                          settings, blobs)
    new = current_revision(blobs, "results", run_id)
    assert new.revision == retry_id != old.revision and out.state == "completed"
    assert blobs.read_bytes("results", old.results) == old_results  # the old revision was not touched
    assert blobs.read_bytes("results", old.manifest) == old_manifest
    rows = blobs.read_bytes("results", new.results).decode().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1002"] * HORIZON + ["1004"] * HORIZON
    manifest = blobs.read_json("results", new.manifest)
    assert manifest["postcodes_failed"] == {} and manifest["postcodes_scored"] == 2
    assert [r["run_id"] for r in manifest["revisions"]] == [run_id, retry_id]


def test_the_pointer_flips_only_from_the_version_read(stack):
    from pipeline.revisions import RevisionConflict, current_revision, flip_pointer

    blobs = stack.blobs
    flip_pointer(blobs, "results", "run-flip", "run-flip", "t0", None)
    read = current_revision(blobs, "results", "run-flip")
    results = []

    def flip(revision: str) -> None:
        try:
            flip_pointer(blobs, "results", "run-flip", revision, "t1", read)
            results.append(revision)
        except RevisionConflict:
            results.append("conflict")

    threads = [threading.Thread(target=flip, args=(f"run-flip-retry{n}",)) for n in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if r != "conflict"]
    assert len(winners) == 1 and results.count("conflict") == 3
    assert current_revision(blobs, "results", "run-flip").revision == winners[0]
    with pytest.raises(RevisionConflict):  # a second first publish
        flip_pointer(blobs, "results", "run-flip", "run-flip", "t2", None)


def test_latest_moves_only_forward_and_only_for_champion_runs(stack):
    from pipeline.revisions import Revision, move_latest

    blobs, model = stack.blobs, "monotonic"

    def publish(run_id: str, input_time: str, planned_at: str, **extra) -> bool:
        plan = publish_plan(run_id, [["1002"]], model=model, input_time=input_time, planned_at=planned_at, **extra)
        return move_latest(blobs, "results", plan, Revision(run_id, run_id, "t", ""))

    def latest() -> str:
        return blobs.read_json("results", f"latest/{model}.json")["run_id"]

    assert publish("run-b", "2099-01-02", "p1")
    assert not publish("run-a", "2099-01-01", "p9")  # older input, published later
    assert latest() == "run-b"
    assert not publish("run-c", "2099-01-03", "p1", champion=False)  # a challenger
    assert not publish("run-d", "2099-01-03", "p1", subset=True)
    assert publish("run-e", "2099-01-02", "p2")  # same input, planned later
    assert latest() == "run-e"
    # Many runs publishing at once: the newest wins, whatever the order of the writes.
    threads = [threading.Thread(target=publish, args=(f"run-n{n}", f"2099-02-{n:02d}", "p")) for n in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert latest() == "run-n8"


def test_a_retry_refuses_an_input_that_changed_since_the_run(stack, sample_models):
    _, input_csv = sample_models
    stack.blobs.write_bytes("input", "manual/pinned.csv", input_csv.read_bytes())
    stack.standin.inject({"kind": "exit", "exit_code": 1, "output": "boom", "match": "-s001", "times": 1})
    run_id = start(stack, {"input": "manual/pinned.csv", "postcodes": ["1002", "1004"], "shardSize": 1})
    assert stack.wait_for_run(run_id)["state"] == "completed_with_failures"
    stack.blobs.write_bytes("input", "manual/pinned.csv", input_csv.read_bytes())  # same bytes, new version
    r = stack.post(f"/api/runs/{run_id}/retry")
    assert r.status_code == 202, r.text
    view = stack.wait_for_run(r.json()["id"])
    assert view["state"] == "failed" and "changed since run" in view["errors"][0], view["errors"]
    assert stack.standin.groups() == [] and jobs_of(stack, r.json()["id"]) == []
    manifest = published_manifest(stack.blobs, run_id)
    assert manifest["revision"] == run_id and list(manifest["postcodes_failed"]) == ["1004"]


# ----------------------------------------------------------------------- 6. duplicate blob events ignored


def test_a_blob_event_redelivered_after_its_run_was_purged_starts_nothing(stack, sample_models):
    from pipeline.naming import blob_run_id

    _, input_csv = sample_models
    stack.blobs.write_bytes("input", "daily/redelivered.csv", input_csv.read_bytes())
    run_id = blob_run_id("daily/redelivered.csv", stack.blobs.info("input", "daily/redelivered.csv").etag)
    fire = {"input": "input/daily/redelivered.csv"}
    assert stack.post("/admin/functions/new_input_blob", fire).status_code == 202
    deadline = time.monotonic() + 30
    while stack.get(f"/api/runs/{run_id}").status_code == 404:
        assert time.monotonic() < deadline, "the blob event started no run"
        time.sleep(0.2)
    assert stack.wait_for_run(run_id)["state"] == "completed"
    purge = requests.delete(f"{stack.base_url}/runtime/webhooks/durabletask/instances/{run_id}", timeout=30)
    assert purge.status_code == 200, purge.text
    assert stack.post("/admin/functions/new_input_blob", fire).status_code == 202  # Event Grid delivers again
    time.sleep(3)
    assert stack.get(f"/api/runs/{run_id}").status_code == 404  # not run (and paid for) a second time
