"""Replay tests of the registration job (client_api.registration.register_version) through the real
azure-functions-durable SDK, with the replay driver of tests/support/replay.py: whatever happens, the
container's logs are kept, its group is deleted, and the outcome says why."""

from __future__ import annotations

import functools

import azure.durable_functions as df
import pytest
import support.replay as driver
from support.replay import Fail, Replay, Work
from test_orchestrator_replay import RUNNING, container

from client_api.blueprint import build_blueprint
from client_api.registration import FinishRequest, RegistrationOutcome, RegistrationRequest
from pipeline.payloads import CreateResult

REG_ID = "reg-0123456789abcdef0123"
TIMING = {"poll_seconds": 20, "deadline_minutes": 2, "provisioning_deadline_minutes": 1,
          "retry_interval_seconds": 15, "retry_attempts": 3, "shard_attempts": 1, "quota_waits": 0}


@functools.cache
def registration_orchestrators() -> dict:
    app = df.DFApp()
    app.register_functions(build_blueprint())
    return {f.get_function_name(): f.get_user_function() for f in app.get_functions()
            if f.get_trigger().type == "orchestrationTrigger"}


@pytest.fixture(autouse=True)
def driver_knows_the_registration_orchestrator(monkeypatch):
    monkeypatch.setattr(driver, "orchestrator_functions", registration_orchestrators)
    # What crosses each boundary of this orchestration, as production sends it.
    monkeypatch.setitem(driver.INPUT_TYPES, "register_version", RegistrationRequest)
    monkeypatch.setitem(driver.INPUT_TYPES, "create_registration_group", RegistrationRequest)
    monkeypatch.setitem(driver.INPUT_TYPES, "finish_registration", FinishRequest)
    monkeypatch.setitem(driver.RESULT_TYPES, "create_registration_group", CreateResult)
    monkeypatch.setitem(driver.RESULT_TYPES, "finish_registration", RegistrationOutcome)


def request() -> dict:
    return RegistrationRequest.from_json({
        "id": REG_ID, "model": "parcels", "version": "v2", "champion": True, "staged": f"uploads/{REG_ID}/upload.bin",
        "result": f"staging/{REG_ID}/result.json", "logs": f"registrations/{REG_ID}/container.log",
        "timing": TIMING}).to_json()


def answers(create=None, states=None, delete=None):
    polls = {"n": 0}

    def answer(work: Work):
        if work.kind == "timer":
            return None
        if work.name == "create_registration_group":
            return create or {"ok": True}
        if work.name == "get_container_state":
            polls["n"] += 1
            return (states or (lambda n: RUNNING if n == 1 else container("Terminated", 0)))(polls["n"])
        if work.name == "save_container_logs":
            return f"results/{work.input['blob']}"
        if work.name == "delete_container_group":
            return delete or True
        if work.name == "finish_registration":
            waited = work.input["waited"]
            return {"state": "registered" if waited.get("exit_code") == 0 else "failed",
                    "error": waited.get("reason", ""), "details": {}, "cleanup_error": ""}
        raise AssertionError(f"unexpected work {work}")

    return answer


def run(answer) -> Replay:
    replay = Replay("register_version", request(), instance_id=REG_ID)
    replay.run(answer)
    return replay


def test_registration_creates_waits_keeps_logs_deletes_then_reads_the_outcome():
    replay = run(answers())
    assert replay.timeline()[:2] == ["create_registration_group", "get_container_state"]
    assert replay.timeline()[-3:] == ["save_container_logs", "delete_container_group", "finish_registration"]
    assert replay.calls("save_container_logs")[0].input == {"group": REG_ID, "blob": request()["logs"]}
    assert replay.calls("delete_container_group")[0].input == REG_ID
    assert replay.output["state"] == "registered" and replay.output["cleanup_error"] == ""
    assert replay.episodes[1].custom_status == {"stage": "checking"}


def test_a_create_that_keeps_failing_is_retried_then_the_group_is_still_deleted():
    replay = run(answers(create=Fail("Activity function 'create_registration_group' failed: AciError: 503")))
    assert len(replay.calls("create_registration_group")) == TIMING["retry_attempts"]
    assert not replay.calls("get_container_state")
    assert [w.input for w in replay.calls("delete_container_group")] == [REG_ID]
    waited = replay.calls("finish_registration")[0].input["waited"]
    assert waited["state"] == "failed" and "AciError: 503" in waited["reason"]


def test_a_hanging_container_times_out_and_a_failed_delete_is_reported():
    replay = run(answers(states=lambda n: RUNNING,
                         delete=Fail("Activity function 'delete_container_group' failed: AciError: 500")))
    waited = replay.calls("finish_registration")[0].input["waited"]
    assert waited["state"] == "timed_out" and "2 min" in waited["reason"]
    assert len(replay.calls("delete_container_group")) == TIMING["retry_attempts"]
    assert replay.output["cleanup_error"].startswith(f"could not delete container group {REG_ID}")
