"""Typed payloads: what the durable SDK does with them, and how they refuse what does not fit."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from azure.functions._durable_functions import _deserialize_custom_object, _serialize_custom_object

from pipeline import payloads as p

TIMING = p.Timing(poll_seconds=20, deadline_minutes=60, provisioning_deadline_minutes=15, retry_interval_seconds=15,
                  retry_attempts=5, shard_attempts=2, quota_waits=10)
INPUT = p.InputRef(container="input", blob="daily/2026-11-23.csv", etag="0x8DD0B5F3A2C41E7")
SHARD = p.ShardInput(run_id="run-abc", index=3, postcodes=2, postcodes_blob="runs/run-abc/plan/shard-003.json",
                     model="parcels", version="v1", input=INPUT, horizon=14, timing=TIMING)
REPORT = p.ShardReport(output_prefix="runs/run-abc/staging/shard-003-a1/", scored=1, failed=1, rows=14, exit_code=3,
                       timings={"total": 1.5})
OUTCOME = p.ShardOutcome(index=3, state=p.ShardState.PARTIAL, status=REPORT, postcodes=2,
                         attempts=[p.Attempt(attempt=1, group="run-abc-s003", state=p.ShardState.PARTIAL,
                                             exit_code=3, deleted=True)])
PLAN = p.Plan(run_id="run-abc", model="parcels", version="v1", model_packages={"stats": "4.2.2"}, input=INPUT,
              horizon=14, trigger=p.Trigger.HTTP, retry_of=None, subset=False, postcodes_total=2, failed={},
              not_in_input=0, parallel_groups=1, container=p.ContainerSize("img:1", 2.0, 4.0),
              estimate=p.Estimate(1, 120.0, 240.0, 0.002), shards=[p.ShardPlan(0, ["8001", "8002"])], timing=TIMING)
RUN_PLAN = p.RunPlan(run_id="run-abc", model="parcels", version="v1", input=INPUT, horizon=14, trigger=p.Trigger.HTTP,
                     retry_of=None, subset=False, postcodes_total=3, failed=1, parallel_groups=1,
                     container=p.ContainerSize("img:1", 2.0, 4.0), estimate=p.Estimate(1, 120.0, 240.0, 0.002),
                     shards=[p.ShardRef(0, 2, "8001", "8002", "runs/run-abc/plan/shard-000.json")], timing=TIMING,
                     plan_blob="results/runs/run-abc/plan/plan.json")


def through_sdk(value):
    """What the other side of an activity or sub-orchestration call receives (the SDK's own two hooks)."""
    return json.loads(json.dumps(value, default=_serialize_custom_object), object_hook=_deserialize_custom_object)


@pytest.mark.parametrize("payload", [
    SHARD, REPORT, OUTCOME, PLAN, RUN_PLAN, TIMING,
    p.RunRequest("parcels", "champion", "latest", None, 60, None, p.Trigger.TIMER),
    p.PlanRequest(p.RunRequest("parcels", "v1", "x.csv", ["8001"], 7, 5, p.Trigger.HTTP, True), "run-a", "2026-11-23",
                  "2026-11-23T06:00:00+00:00"),
    p.GroupRequest(shard=SHARD, attempt=2, group="run-abc-s003-a2", output_prefix="runs/run-abc/staging/x/"),
    p.CreateResult(ok=False, reason="quota", code="ContainerGroupQuotaReached", quota=True),
    p.ContainerState("Running", "Succeeded", "Running", None, "2026-11-23T06:00:41Z", None, None),
    p.LogsRequest(group="g", blob="runs/run-abc/logs/shard-000-a1.log"),
    p.Publication(plan=RUN_PLAN, shards=[OUTCOME]),
    p.Published("results/runs/run-abc/results.csv", "results/runs/run-abc/manifest.json", 14, 1, 2,
                "results/runs/run-abc/revisions/run-abc/failures.json", p.RunState.COMPLETED_WITH_FAILURES,
                {"price_usd": 0.01}),
    p.FailuresWritten(failures="results/runs/run-abc/failures.json", count=3),
    p.RunResult(run_id="run-abc", model="parcels", trigger=p.Trigger.BLOB, input=INPUT),
    p.Progress(stage=p.Stage.SCORING, shards_total=3),
], ids=lambda v: type(v).__name__)
def test_every_payload_arrives_as_its_own_class_through_the_sdk_hooks(payload):
    received = through_sdk(payload)
    assert type(received) is type(payload)
    assert received == payload


def test_nested_payloads_travel_as_plain_json_inside_one_envelope():
    text = json.dumps(OUTCOME, default=_serialize_custom_object)
    envelope = json.loads(text)
    assert envelope["__class__"] == "ShardOutcome" and envelope["__module__"] == "pipeline.payloads"
    assert "__class__" not in json.dumps(envelope["__data__"])  # no nested envelopes
    data = envelope["__data__"]
    assert data["state"] == "partial" and data["status"]["failed"] == 1


def test_states_are_strings_in_json_and_enums_after_reading():
    data = OUTCOME.to_json()
    assert data["state"] == "partial" and data["attempts"][0]["state"] == "partial"
    back = p.ShardOutcome.from_json(data)
    assert back.state is p.ShardState.PARTIAL and back.attempts[0].state is p.ShardState.PARTIAL
    assert json.dumps({"s": p.RunState.COMPLETED}) == '{"s": "completed"}'


def test_ok_states_are_succeeded_and_partial_only():
    assert {s for s in p.ShardState if s.ok} == {p.ShardState.SUCCEEDED, p.ShardState.PARTIAL}


@pytest.mark.parametrize("data, message", [
    ({**SHARD.to_json(), "indx": 1}, "unknown field(s) indx"),
    ({k: v for k, v in SHARD.to_json().items() if k != "timing"}, "field 'timing' is missing"),
    ({**SHARD.to_json(), "index": "3"}, "ShardInput.index must be int, got str"),
    ({**SHARD.to_json(), "index": True}, "ShardInput.index must be int, got bool"),
    # A shard input carries how many postcodes and where they are, never the list (slim history).
    ({**SHARD.to_json(), "postcodes": ["8001", "8002"]}, "ShardInput.postcodes must be int, got list"),
    ({k: v for k, v in SHARD.to_json().items() if k != "postcodes_blob"}, "field 'postcodes_blob' is missing"),
    ({**SHARD.to_json(), "input": None}, "ShardInput.input must not be null"),
    ({**SHARD.to_json(), "timing": {**TIMING.to_json(), "shard_attempts": 2.5}}, "Timing.shard_attempts must be int"),
])
def test_a_payload_that_does_not_fit_its_type_is_refused_naming_the_field(data, message):
    with pytest.raises(p.PayloadError, match=re.escape(message)):
        p.ShardInput.from_json(data)


def test_an_unknown_state_is_refused_with_the_allowed_ones():
    with pytest.raises(p.PayloadError, match="'finished' is not one of succeeded, partial"):
        p.ShardOutcome.from_json({**OUTCOME.to_json(), "state": "finished"})


def test_ints_are_accepted_where_floats_are_expected():
    timing = p.Timing.from_json({**TIMING.to_json(), "poll_seconds": 20})
    assert timing.poll_seconds == 20.0 and isinstance(timing.poll_seconds, float)


def test_decode_reads_the_envelope_the_plain_json_and_json_text():
    envelope = json.loads(json.dumps(PLAN, default=_serialize_custom_object))
    assert p.decode(envelope, p.Plan) == PLAN
    assert p.decode(PLAN.to_json(), p.Plan) == PLAN  # an instance started before payloads were typed
    assert p.decode(json.dumps(envelope), p.Plan) == PLAN
    assert p.decode(PLAN, p.Plan) is PLAN


def test_decode_refuses_another_class_in_the_envelope():
    envelope = json.loads(json.dumps(TIMING, default=_serialize_custom_object))
    with pytest.raises(p.PayloadError, match="expected a Plan, got pipeline.payloads.Timing"):
        p.decode(envelope, p.Plan)


def test_plan_shard_input_carries_the_plan_fields_and_the_shard_by_reference():
    shard = RUN_PLAN.shard_input(RUN_PLAN.shards[0])
    assert shard == p.ShardInput(run_id="run-abc", index=0, postcodes=2,
                                 postcodes_blob="runs/run-abc/plan/shard-000.json", model="parcels", version="v1",
                                 input=INPUT, horizon=14, timing=TIMING)


@pytest.mark.parametrize("state, group_state, terminated", [
    ("Terminated", "Running", True),
    ("Running", "Running", False),
    ("Waiting", "Pending", False),
    (None, "Failed", True),
    (None, "Stopped", True),
    (None, "Succeeded", True),
    (None, None, False),
])
def test_container_terminated(state, group_state, terminated):
    assert p.ContainerState(group_state, None, state, None, None, None, None).terminated is terminated


def test_defaults_make_independent_lists():
    a, b = p.RunResult("run-a", "m", p.Trigger.HTTP), p.RunResult("run-b", "m", p.Trigger.HTTP)
    a.errors.append("x")
    assert b.errors == []


def run_orchestrator_once(function) -> str:
    """One episode of `function` under the real SDK, as the host would start it; returns the SDK's answer."""
    from azure.durable_functions import Orchestrator
    from azure.functions import meta
    from azure.functions.durable_functions import OrchestrationTriggerConverter

    from devenv.durable_host import history as h

    ts = h.format_timestamp(datetime(2026, 11, 23, 6, 0, tzinfo=UTC))
    context = {"history": [h.orchestrator_started(ts), h.execution_started(ts, "toy", "null", "", None)],
               "instanceId": "toy-1", "isReplaying": False, "parentInstanceId": None, "input": None,
               "upperSchemaVersion": 2}
    decoded = OrchestrationTriggerConverter.decode(meta.Datum(type="json", value=json.dumps(context)),
                                                   trigger_metadata={})
    return Orchestrator.create(function)(decoded)


def test_the_sdk_takes_an_orchestration_output_only_as_plain_json():
    """Why score_run and score_shard return payload.to_json(): a payload object as the output fails the run."""
    def returns_object_at_once(context):
        return TIMING
        yield  # a generator, as orchestrators are

    def returns_json(context):
        return TIMING.to_json()
        yield

    with pytest.raises(Exception, match="not JSON serializable"):
        run_orchestrator_once(returns_object_at_once)
    assert json.loads(run_orchestrator_once(returns_json))["output"] == TIMING.to_json()
