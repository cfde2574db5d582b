"""The whole pipeline through real HTTP routes and real SDK clients: Durable dev host, ARM stand-in (ACI over
HTTPS with the real azure-mgmt-containerinstance client), Azurite, and the scoring worker run as the image's
entrypoint. Nothing is mocked; the only stand-ins are the local servers for what cannot exist here (ACI, the
Functions host)."""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import HORIZON, published_manifest, r_reference, sample_stack

pytestmark = pytest.mark.integration  # Azurite, R, the stand-in or the dev host

POSTCODES = 10  # 2 shards of 5 (MIN_SHARD_SIZE 4, two groups at once)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, sample_models):
    root = Path(tmp_path_factory.mktemp("stack"))
    overrides = {"MIN_SHARD_SIZE": "4", "DEFAULT_HORIZON_DAYS": str(HORIZON), "SHARD_ATTEMPTS": "1",
                 "SHARD_DEADLINE_MINUTES": "2"}
    with sample_stack(root, sample_models, overrides, host_args=["--blob-poll-interval", "0.5"]) as s:
        yield s


@pytest.fixture(autouse=True)
def no_group_outlives_its_test(request):
    yield
    if "stack" not in request.fixturenames:
        return
    stack = request.getfixturevalue("stack")
    stack.standin.clear_faults()
    # Runs the test set off on the side (a blob event for an input it wrote) may still be waiting for the
    # shared vCPU budget: a group may only outlive its test while its run is active, never its run.
    deadline = time.monotonic() + 120
    while any(r["runtimeStatus"] in ("Pending", "Running") for r in stack.get("/api/runs").json()["runs"]):
        assert time.monotonic() < deadline, "runs still active two minutes after the test"
        time.sleep(0.5)
    assert stack.standin.groups() == [], "a container group outlived its run"


def start(stack, body: dict) -> str:
    r = stack.post("/api/runs", body)
    assert r.status_code == 202, r.text
    assert r.headers["Location"].endswith(f"/api/runs/{r.json()['id']}")
    assert set(r.json()) == {"id", "statusUrl", "cancelUrl"}  # no durable management URLs: they carry a system key
    return r.json()["id"]


def results(stack, view: dict) -> list[dict]:
    container, _, name = view["results"].partition("/")
    return list(csv.DictReader(io.StringIO(stack.blobs.read_bytes(container, name).decode())))


def test_http_run_publishes_what_r_computes(stack, sample_models, tmp_path):
    run_id = start(stack, {"input": "manual/input.csv", "horizon": HORIZON})
    view = stack.wait_for_run(run_id)
    assert view["state"] == "completed", view
    assert view["progress"] == {"stage": "done", "shards_total": 2, "shards_done": 2, "shards_running": 0,
                                "postcodes_total": POSTCODES, "postcodes_scored": POSTCODES, "postcodes_failed": 0}
    got = {(r["postcode"], r["date"]): r for r in results(stack, view)}
    expected = r_reference(*sample_models, tmp_path)
    assert len(got) == len(expected) == POSTCODES * HORIZON
    for row in expected:
        assert abs(float(got[(row["postcode"], row["date"])]["volume"]) - float(row["volume"])) <= 1e-9

    prefix = f"runs/{run_id}/"
    manifest = published_manifest(stack.blobs, run_id)
    assert manifest["input"]["etag"] == stack.blobs.info("input", "manual/input.csv").etag
    assert manifest["model"]["version"] == "v1" and len(manifest["model"]["sha256"]) == POSTCODES
    assert [s["state"] for s in manifest["shards"]] == ["succeeded", "succeeded"]
    assert view["results"] == "results/" + stack.blobs.read_json("results", prefix + "current.json")["results"]
    assert stack.blobs.read_json("results", "latest/parcels.json")["run_id"] == run_id
    for shard in view["shards"]:  # logs were kept before each group was deleted
        attempt = shard["attempts"][0]
        assert attempt["deleted"] is True
        log = stack.blobs.read_bytes("results", attempt["logs"].partition("/")[2]).decode()
        assert '"scored": 5' in log

    listed = stack.get("/api/runs").json()["runs"]
    assert run_id in [r["id"] for r in listed]

    # Containers wrote only to staging (their job came from there too); results holds what the app published.
    in_results = sorted(b.name[len(prefix):] for b in stack.blobs.list("results", prefix))
    published = {n for n in in_results if not n.startswith("logs/")}
    revision = f"revisions/{run_id}/"
    assert {"current.json", revision + "manifest.json", revision + "results.csv", revision + "failures.json",
            "plan/plan.json", "plan/shard-000.json", "plan/shard-001.json"} <= published
    assert published <= {"current.json", revision + "manifest.json", revision + "results.csv",
                         revision + "results.index.json", revision + "failures.json",
                         "plan/plan.json", "plan/shard-000.json", "plan/shard-001.json"}, published
    staged = {b.name for b in stack.blobs.list("staging", f"{run_id}/")}
    for shard in range(2):
        for name in ("job.json", "results.csv", "status.json"):
            assert f"{run_id}/shard-{shard:03d}-a1/{name}" in staged


def test_subset_of_postcodes_and_unknown_postcode(stack, sample_models):
    models, _ = sample_models
    first, second = sorted(p.stem for p in models.glob("*.rds"))[:2]
    latest_before = stack.blobs.read_json("results", "latest/parcels.json")
    run_id = start(stack, {"input": "manual/input.csv", "postcodes": [first, second, "9998"]})
    view = stack.wait_for_run(run_id)
    assert view["state"] == "completed_with_failures"
    assert stack.blobs.read_json("results", "latest/parcels.json") == latest_before  # a subset never moves latest
    assert view["postcodes_failed"] == {"9998": "no model for this postcode in parcels/v1"}
    assert {r["postcode"] for r in results(stack, view)} == {first, second}


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b"{not json", 400, "body"),
        (b'{"input": "manual/input.csv", "colour": "red"}', 400, "colour"),
        (b'{"input": "manual/input.csv", "horizon": 0}', 400, "horizon"),
        (b'{"input": "manual/input.csv", "horizon": "60"}', 400, "horizon"),
        (b'{"input": "manual/input.csv", "postcodes": ["80 01"]}', 400, "postcodes"),
        (b'{"input": "../../models/parcels/v1/manifest.json"}', 400, "input"),
        (b'{"model": "Parcels!", "input": "manual/input.csv"}', 400, "model"),
        (b'{"horizon": 60}', 400, "input"),
        (b'{"input": "' + b"a" * 300_000 + b'"}', 413, ""),
    ],
)
def test_invalid_body_is_refused_naming_the_field(stack, body, status, field):
    r = stack.post("/api/runs", data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    assert r.json()["field"] == field
    assert r.json()["error"]


def test_unknown_run_is_404(stack):
    assert stack.get("/api/runs/run-doesnotexist").status_code == 404
    assert stack.get("/api/runs/..%2F..%2Fetc").status_code == 404
    assert stack.post("/api/runs/run-doesnotexist/cancel").status_code == 404


def test_timer_fired_twice_makes_one_run(stack, sample_models):
    _, input_csv = sample_models
    stack.blobs.write_bytes("input", "daily/today.csv", input_csv.read_bytes())
    for _ in range(2):
        assert stack.post("/admin/functions/daily_scoring", {"input": ""}).status_code == 202
    run_id = f"daily-parcels-{datetime.now(UTC).date().isoformat()}"
    view = stack.wait_for_run(run_id)
    assert view["state"] == "completed" and view["trigger"] == "timer"
    assert view["input"]["blob"] == "daily/today.csv"  # the latest input under the prefix
    assert stack.post("/admin/functions/daily_scoring", {"input": ""}).status_code == 202
    time.sleep(1)
    daily = [r for r in stack.get("/api/runs").json()["runs"] if r["id"].startswith("daily-")]
    assert [r["id"] for r in daily] == [run_id]


def test_a_late_timer_runs_for_its_scheduled_day(stack, sample_models):
    """The daily id comes from the schedule's occurrence (ScheduleStatus.Next as the host hands it), not from
    the clock: yesterday's 02:00 occurrence, delivered late today, is yesterday's run."""
    _, input_csv = sample_models
    stack.blobs.write_bytes("input", "daily/late.csv", input_csv.read_bytes())
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    timer = {"IsPastDue": True, "Schedule": {"AdjustForDST": True},
             "ScheduleStatus": {"Last": f"{yesterday - timedelta(days=1)}T02:00:00+00:00",
                                "Next": f"{yesterday}T02:00:00+00:00", "LastUpdated": f"{yesterday}T02:00:00+00:00"}}
    assert stack.post("/admin/functions/daily_scoring", {"input": json.dumps(timer)}).status_code == 202
    view = stack.wait_for_run(f"daily-parcels-{yesterday.isoformat()}")
    assert view["trigger"] == "timer" and view["state"] == "completed", view["errors"]


def test_blob_event_starts_one_run(stack, sample_models):
    _, input_csv = sample_models
    stack.blobs.write_bytes("input", "daily/event.csv", input_csv.read_bytes())
    etag = stack.blobs.info("input", "daily/event.csv").etag
    from pipeline.naming import blob_run_id

    run_id = blob_run_id("daily/event.csv", etag)
    deadline = time.monotonic() + 30
    while stack.get(f"/api/runs/{run_id}").status_code == 404:
        assert time.monotonic() < deadline, "the blob event started no run"
        time.sleep(0.2)
    view = stack.wait_for_run(run_id)
    assert view["state"] == "completed" and view["trigger"] == "blob"
    assert view["input"] == {"container": "input", "blob": "daily/event.csv", "etag": etag}


def test_shard_whose_container_exits_non_zero_is_reported_and_the_rest_published(stack):
    stack.standin.inject({"kind": "exit", "exit_code": 1, "output": "Segmentation fault in R", "match": "-s001"})
    run_id = start(stack, {"input": "manual/input.csv"})
    view = stack.wait_for_run(run_id)
    assert view["state"] == "completed_with_failures"
    assert any("shard 1" in e and "exited with code 1" in e for e in view["errors"]), view["errors"]
    failed_shard = view["shards"][1]
    assert failed_shard["state"] == "failed" and failed_shard["attempts"][0]["deleted"] is True
    assert "Segmentation fault in R" in stack.blobs.read_bytes(
        "results", failed_shard["attempts"][0]["logs"].partition("/")[2]).decode()
    assert len(view["postcodes_failed"]) == 5
    assert all("exited with code 1" in reason for reason in view["postcodes_failed"].values())
    published = {r["postcode"] for r in results(stack, view)}
    assert len(published) == 5 and not published & set(view["postcodes_failed"])
    manifest = published_manifest(stack.blobs, run_id)
    assert manifest["state"] == "completed_with_failures" and manifest["postcodes_failed"] == view["postcodes_failed"]
    assert [a["exit_code"] for a in manifest["shards"][1]["attempts"]] == [1]


def test_retry_reruns_only_the_failed_postcodes_into_the_same_run(stack):
    stack.standin.inject({"kind": "exit", "exit_code": 1, "output": "out of memory", "match": "-s001", "times": 1})
    run_id = start(stack, {"input": "manual/input.csv"})
    first = stack.wait_for_run(run_id)
    assert first["state"] == "completed_with_failures" and len(first["postcodes_failed"]) == 5
    r = stack.post(f"/api/runs/{run_id}/retry")
    assert r.status_code == 202, r.text
    retry = stack.wait_for_run(r.json()["id"])
    assert retry["state"] == "completed" and retry["postcodes_scored"] == POSTCODES
    # merged into the original run, as its new revision
    assert retry["results"] == f"results/runs/{run_id}/revisions/{r.json()['id']}/results.csv"
    rows = results(stack, retry)
    assert len(rows) == POSTCODES * HORIZON
    manifest = published_manifest(stack.blobs, run_id)
    assert manifest["state"] == "completed" and manifest["postcodes_failed"] == {}
    assert [rev["run_id"] for rev in manifest["revisions"]] == [run_id, r.json()["id"]]
    assert stack.post(f"/api/runs/{r.json()['id']}/retry").status_code == 409  # the rerun left nothing to retry



def test_container_that_never_finishes_hits_its_deadline(stack, sample_models):
    # One shard only (two postcodes): the deadline, which counts from the create, does not race another
    # shard's scoring on a loaded machine.
    first, second = sorted(p.stem for p in sample_models[0].glob("*.rds"))[:2]
    stack.settings["SHARD_DEADLINE_MINUTES"] = "0.05"
    stack.restart_host(hard=False)
    try:
        stack.standin.inject({"kind": "hang", "match": "-s000"})
        run_id = start(stack, {"input": "manual/input.csv", "postcodes": [first, second]})
        view = stack.wait_for_run(run_id, timeout=120)
    finally:
        stack.settings["SHARD_DEADLINE_MINUTES"] = "2"
        stack.restart_host(hard=False)
    assert view["state"] == "failed" and len(view["shards"]) == 1, (view["errors"], view.get("shards"))
    assert view["shards"][0]["state"] == "timed_out", view["shards"][0]
    assert "did not finish within 0.05 min" in view["shards"][0]["reason"]
    assert view["shards"][0]["attempts"][0]["deleted"] is True
    assert set(view["postcodes_failed"]) == {first, second}


def test_cancel_stops_the_run_and_deletes_its_groups(stack):
    stack.standin.inject({"kind": "hang"})
    run_id = start(stack, {"input": "manual/input.csv"})
    deadline = time.monotonic() + 60
    while len(stack.standin.groups()) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert stack.post(f"/api/runs/{run_id}/cancel").status_code == 202
    view = stack.wait_for_run(run_id)
    assert view["state"] == "cancelled"
    assert {s["state"] for s in view["shards"]} == {"cancelled"}
    assert stack.post(f"/api/runs/{run_id}/cancel").status_code == 409
    r = stack.post(f"/api/runs/{run_id}/retry")  # it published nothing: a retry would publish a subset as whole
    assert r.status_code == 409 and "published no results" in r.json()["error"]


def test_dev_host_killed_mid_run_finishes_the_run(stack, sample_models, tmp_path):
    run_id = start(stack, {"input": "manual/input.csv"})
    deadline = time.monotonic() + 60
    while not stack.standin.groups():  # containers are running: the run is mid-flight
        assert time.monotonic() < deadline
        time.sleep(0.1)
    stack.restart_host(hard=True)  # SIGKILL, then a new host on the same state directory
    view = stack.wait_for_run(run_id)
    assert view["state"] == "completed", view
    assert len(results(stack, view)) == POSTCODES * HORIZON
