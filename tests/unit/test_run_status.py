"""GET /api/runs/{id}: the view built from the durable status, whatever form the result and progress are in."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from azure.durable_functions.models.DurableOrchestrationStatus import DurableOrchestrationStatus
from azure.functions._durable_functions import _serialize_custom_object

from pipeline import payloads as p
from pipeline.run_status import FINISHED, RUN_ORCHESTRATOR, run_view

CREATED = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)


def status(runtime: str, output=None, custom=None, instance_id: str = "run-abc") -> DurableOrchestrationStatus:
    """A status as the durable client builds it from the host's JSON answer."""
    return DurableOrchestrationStatus.from_json({
        "name": RUN_ORCHESTRATOR, "instanceId": instance_id, "runtimeStatus": runtime,
        "createdTime": "2026-11-23T06:00:00Z", "lastUpdatedTime": "2026-11-23T06:05:00Z",
        "output": output, "customStatus": custom, "input": None})


def as_sent(payload: p.Payload):
    """What the status API returns for a value the SDK wrote with its custom-object hook."""
    return json.loads(json.dumps(payload, default=_serialize_custom_object))


RESULT = p.RunResult(run_id="run-abc", model="parcels", trigger=p.Trigger.HTTP, state=p.RunState.COMPLETED,
                     version="v1", input=p.InputRef("input", "x.csv", "0x1"), shards_total=1,
                     postcodes_scored=3, results="results/runs/run-abc/results.csv",
                     manifest="results/runs/run-abc/manifest.json", rows=42)


def test_a_completed_run_shows_its_result():
    view = run_view(status("Completed", output=RESULT.to_json(),
                           custom=as_sent(p.Progress(stage=p.Stage.DONE, shards_total=1, shards_done=1))))
    assert view["id"] == "run-abc" and view["state"] == "completed" and view["runtimeStatus"] == "Completed"
    assert view["version"] == "v1" and view["rows"] == 42 and view["results"] == RESULT.results
    assert view["input"] == {"container": "input", "blob": "x.csv", "etag": "0x1"}
    assert view["progress"]["stage"] == "done" and view["progress"]["shards_done"] == 1
    assert view["created"].startswith("2026-11-23T06:00:00") and view["errors"] == []
    assert "cost" not in view and "cleanup_errors" in view  # the view's fields, not every result field


def test_fields_a_result_does_not_have_are_left_out():
    failed = p.RunResult(run_id="run-abc", model="parcels", trigger=p.Trigger.TIMER, errors=["plan: no input"])
    view = run_view(status("Completed", output=failed.to_json()))
    assert view["state"] == "failed" and view["errors"] == ["plan: no input"]
    assert "version" not in view and "results" not in view and "rows" not in view


def test_a_result_in_the_sdk_envelope_is_read_too():
    assert run_view(status("Completed", output=as_sent(RESULT)))["rows"] == 42


def test_an_orchestration_that_crashed_is_failed_with_its_error():
    view = run_view(status("Failed", output="Orchestrator function 'score_run' failed: boom"))
    assert view["state"] == "failed" and view["errors"] == ["Orchestrator function 'score_run' failed: boom"]


def test_terminated_is_cancelled_and_running_is_running():
    assert run_view(status("Terminated", output="no longer needed"))["state"] == "cancelled"
    running = run_view(status("Running", custom=as_sent(p.Progress(stage=p.Stage.SCORING, shards_running=2))))
    assert running["state"] == "running" and running["progress"]["shards_running"] == 2
    assert "parallel_groups" not in running["progress"]  # unset until a full quota lowers it
    assert run_view(status("Pending"))["state"] == "pending"
    assert run_view(status("Pending"))["progress"] == {}


def test_an_unreadable_result_is_reported_not_raised():
    view = run_view(status("Completed", output={"state": "done", "colour": "red"}))
    assert view["state"] == "completed"
    assert view["errors"] and view["errors"][0].startswith("the run's result cannot be read: RunResult")


def test_finished_runtime_statuses():
    assert FINISHED == {"Completed", "Failed", "Terminated"}
