"""Replay tests of the production orchestrators through the real azure-functions-durable SDK.

Each test hands `score_shard` / `score_run` a history exactly as the Durable host would (tests/support/replay.py)
and asserts on the actions the SDK returns. No host, no storage, no ACI: the orchestrators do no I/O, the tests
answer their activities.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from azure.durable_functions.models.actions.ActionType import ActionType
from support.replay import ACTIVITY_SECONDS, Fail, Raise, Replay, Work

from devenv.durable_host import history as h
from pipeline import naming
from pipeline.payloads import Attempt, BudgetAnswer, RunPlan, ShardOutcome

# --------------------------------------------------------------------------------------------- realistic data

RUN_ID = "run-0f3a9c2b7d4e4a1b9c8d"
TIMING = {"poll_seconds": 20, "deadline_minutes": 60, "provisioning_deadline_minutes": 15,
          "retry_interval_seconds": 15, "retry_attempts": 5, "shard_attempts": 2, "quota_waits": 10,
          "poll_first_seconds": 0.0}  # 0: poll_seconds throughout (test_poll_backoff covers the first interval)
INPUT = {"container": "input", "blob": "daily/2026-11-23.csv", "etag": "0x8DD0B5F3A2C41E7"}


def shard_postcodes(index: int) -> list[str]:
    """The postcodes make_plan cuts into shard `index` (they live in its plan blob, never in history)."""
    return [str(8001 + 3 * index + k) for k in range(3)]


def shard(index: int = 0, **timing: Any) -> dict:
    """A shard orchestration's input, as RunPlan.shard_input builds it: its postcodes by reference."""
    return {"run_id": RUN_ID, "index": index, "postcodes": 3, "postcodes_blob": naming.plan_shard_blob(RUN_ID, index),
            "model": "parcels", "version": "v20261120", "input": INPUT, "horizon": 14,
            "timing": {**TIMING, **timing}, "ts_max_gap_days": None}


def container(state: str | None, exit_code: int | None = None, group_state: str | None = None,
              detail: str | None = None) -> dict:
    """get_container_state's answer: a ContainerState, as plain JSON."""
    group = group_state or {"Running": "Running", "Waiting": "Pending"}.get(
        state or "", "Succeeded" if exit_code == 0 else "Failed")
    terminated = state == "Terminated" or group in ("Succeeded", "Failed", "Stopped")
    return {"group_state": group, "provisioning_state": "Succeeded" if state else "Creating", "state": state,
            "exit_code": exit_code, "start_time": "2026-11-23T06:00:41Z" if state != "Waiting" else None,
            "finish_time": "2026-11-23T06:04:12Z" if terminated else None, "detail": detail}


RUNNING = container("Running")
WAITING = container("Waiting", detail="pulling image \"scoringacr.azurecr.io/r-scoring:1.4.2\"")


def shard_status(prefix: str, postcodes: list[str], exit_code: int = 0, failed: dict | None = None) -> dict:
    """read_shard_status's answer: the worker's status.json as counts, with its prefix."""
    failed = failed or {}
    scored = [pc for pc in postcodes if pc not in failed]
    return {"scored": len(scored), "failed": len(failed), "rows": 14 * len(scored), "exit_code": exit_code,
            "error": None,
            "timings": {"load": 1.2, "score": 8.4}, "started": "2026-11-23T06:00:43Z",
            "finished": "2026-11-23T06:04:11Z", "cores": 2, "output_prefix": prefix}


def aci_shard(states: Callable[[str, int], dict | None] | None = None, *, create: Any = None,
              status: Callable[[str], dict | None] | None = None, overrides: dict | None = None,
              postcodes: list[str] | None = None) -> Callable[[Work], Any]:
    """Answers a shard's activities like the ACI stand-in would.

    states(group, poll) -> get_container_state's answer for the poll-th poll (1-based) of that group; by default
    Running once, then Terminated with exit 0. create: create_container_group's answer (default ok) or a Fail.
    status(prefix) -> read_shard_status's answer (default: all postcodes scored). overrides: name -> answer fn.
    """
    polls: dict[str, int] = {}
    postcodes = postcodes or shard_postcodes(0)

    def default_states(group: str, poll: int) -> dict:
        return RUNNING if poll == 1 else container("Terminated", 0, detail="Completed")

    def answer(work: Work) -> Any:
        if overrides and work.name in overrides:
            return overrides[work.name](work)
        if work.kind == "timer":
            return None
        if work.name == "create_container_group":
            return {"ok": True} if create is None else create
        if work.name == "get_container_state":
            polls[work.input] = polls.get(work.input, 0) + 1
            return (states or default_states)(work.input, polls[work.input])
        if work.name == "save_container_logs":
            return f"results/{work.input['blob']}"
        if work.name == "delete_container_group":
            return True
        if work.name == "read_shard_status":
            return (status or (lambda prefix: shard_status(prefix, postcodes)))(work.input)
        if work.name == "acquire_vcpu":  # the shared vCPU budget has room
            return BudgetAnswer(granted=True, in_use=2.0, quota=20)
        if work.name == "release_vcpu":
            return True
        raise AssertionError(f"unexpected work {work}")

    return answer


def run_shard(answer: Callable[[Work], Any], shard_input: dict | None = None) -> Replay:
    replay = Replay("score_shard", shard_input or shard(), instance_id=naming.shard_instance_id(RUN_ID, 0))
    replay.run(answer)
    return replay


GROUP = naming.group_name(RUN_ID, 0)  # run-0f3a9c2b7d4e4a1b9c8d-s000
GROUP_A2 = naming.group_name(RUN_ID, 0, 2)


# --------------------------------------------------------------------------------------------- score_shard


def test_shard_happy_path_polls_with_a_durable_timer_then_keeps_logs_deletes_and_reads_status():
    replay = run_shard(aci_shard())

    assert replay.timeline() == ["acquire_vcpu", "create_container_group", "get_container_state", "timer",
                                 "get_container_state",
                                 "save_container_logs", "delete_container_group", "release_vcpu", "read_shard_status"]
    create = replay.calls("create_container_group")[0]
    assert create.input == {"shard": shard(), "attempt": 1, "group": GROUP,
                            "output_prefix": naming.staging_prefix(RUN_ID, 0)}
    assert create.retry["firstRetryIntervalInMilliseconds"] == 15000 and create.retry["maxNumberOfAttempts"] == 5
    assert [w.input for w in replay.calls("get_container_state")] == [GROUP, GROUP]
    # The poll wait is a durable timer at now + poll_seconds (no sleep), raced against a 'cancel' event.
    timer = next(w for w in replay.scheduled if w.kind == "timer")
    assert timer.fire_at == timer.scheduled_at + timedelta(seconds=TIMING["poll_seconds"])
    timer_episode = [a for a in replay.actions if a["actionType"] in (ActionType.CREATE_TIMER,
                                                                       ActionType.WAIT_FOR_EXTERNAL_EVENT)]
    assert [a["actionType"] for a in timer_episode] == [ActionType.CREATE_TIMER, ActionType.WAIT_FOR_EXTERNAL_EVENT]
    assert timer_episode[1]["externalEventName"] == "cancel"
    assert replay.calls("save_container_logs")[0].input == {"group": GROUP,
                                                            "blob": naming.logs_blob(RUN_ID, 0)}
    assert replay.calls("delete_container_group")[0].input == GROUP
    assert replay.calls("delete_container_group")[0].retry == create.retry
    assert replay.calls("read_shard_status")[0].input == naming.staging_prefix(RUN_ID, 0)

    out = replay.output
    assert out["state"] == "succeeded" and out["reason"] == "" and out["index"] == 0 and out["postcodes"] == 3
    assert out["status"] == shard_status(naming.staging_prefix(RUN_ID, 0), ["8001", "8002", "8003"])
    [attempt] = out["attempts"]
    # Billed from the orchestration time right after the create succeeded to right after the delete succeeded.
    billed_from = create.scheduled_at + timedelta(seconds=ACTIVITY_SECONDS)
    billed_to = replay.calls("delete_container_group")[0].scheduled_at + timedelta(seconds=ACTIVITY_SECONDS)
    assert attempt == attempt_json({
        "attempt": 1, "group": GROUP, "state": "succeeded", "reason": "", "exit_code": 0, "quota_waits": 0,
        "started": "2026-11-23T06:00:41Z", "finished": "2026-11-23T06:04:12Z", "billed_from": billed_from.isoformat(),
        "billed_to": billed_to.isoformat(), "logs": f"results/{naming.logs_blob(RUN_ID, 0)}", "deleted": True})
    assert attempt["permanent"] is False and attempt["delete_error"] is None and attempt["logs_error"] is None
    assert attempt["billed_from"] == "2026-11-23T06:00:04+00:00"  # after acquire_vcpu and the create


def test_shard_exit_code_3_with_matching_status_is_partial():
    failed = {"8002": "model did not converge"}
    replay = run_shard(aci_shard(
        lambda group, poll: container("Terminated", 3, group_state="Succeeded", detail="Completed"),
        status=lambda prefix: shard_status(prefix, ["8001", "8002", "8003"], exit_code=3, failed=failed)))
    assert replay.output["state"] == "partial"
    assert replay.output["status"]["failed"] == len(failed)  # a count: the reasons stay in status.json
    assert len(replay.output["attempts"]) == 1  # partial is an outcome, not a failure: no second attempt


def test_shard_nonzero_exit_keeps_logs_deletes_and_retries_in_a_new_group():
    replay = run_shard(aci_shard(lambda group, poll: container("Terminated", 1, detail="Error"),
                                 status=lambda prefix: None))

    assert replay.timeline() == ["acquire_vcpu", "create_container_group", "get_container_state", "save_container_logs",
                                 "delete_container_group", "release_vcpu", "read_shard_status"] * 2
    assert [w.input["group"] for w in replay.calls("create_container_group")] == [GROUP, GROUP_A2]
    assert [w.input["attempt"] for w in replay.calls("create_container_group")] == [1, 2]
    assert [w.input for w in replay.calls("delete_container_group")] == [GROUP, GROUP_A2]
    assert [w.input["blob"] for w in replay.calls("save_container_logs")] == [naming.logs_blob(RUN_ID, 0, 1),
                                                                              naming.logs_blob(RUN_ID, 0, 2)]
    assert [w.input for w in replay.calls("read_shard_status")] == [naming.staging_prefix(RUN_ID, 0, 1),
                                                                    naming.staging_prefix(RUN_ID, 0, 2)]
    out = replay.output
    assert out["state"] == "failed"
    assert "exited with code 1" in out["reason"] and "no status written" in out["reason"]
    assert [(a["group"], a["state"], a["deleted"]) for a in out["attempts"]] == [(GROUP, "failed", True),
                                                                                 (GROUP_A2, "failed", True)]


def test_shard_second_attempt_can_succeed():
    replay = run_shard(aci_shard(
        lambda group, poll: container("Terminated", 1 if group == GROUP else 0, detail="Completed")))
    out = replay.output
    assert out["state"] == "succeeded" and out["reason"] == ""
    assert out["status"]["output_prefix"] == naming.staging_prefix(RUN_ID, 0, 2)
    assert [a["state"] for a in out["attempts"]] == ["failed", "succeeded"]
    assert [w.input for w in replay.calls("delete_container_group")] == [GROUP, GROUP_A2]


def test_shard_single_attempt_when_shard_attempts_is_1():
    replay = run_shard(aci_shard(lambda group, poll: container("Terminated", 1, detail="Error"),
                                 status=lambda prefix: None), shard(shard_attempts=1))
    assert replay.output["state"] == "failed" and len(replay.output["attempts"]) == 1
    assert [w.input for w in replay.calls("delete_container_group")] == [GROUP]


def test_shard_worker_error_in_status_is_the_reason():
    def status(prefix: str) -> dict:
        return {**shard_status(prefix, []), "exit_code": 2, "error": "input daily/2026-11-23.csv: no such blob"}

    replay = run_shard(aci_shard(lambda group, poll: container("Terminated", 2), status=status),
                       shard(shard_attempts=1))
    assert replay.output["reason"] == ("the container exited with code 2: input daily/2026-11-23.csv: "
                                       "no such blob")


def test_shard_group_that_ends_without_exit_code_fails_without_reading_status():
    replay = run_shard(aci_shard(lambda group, poll: container(None, None, group_state="Failed",
                                                               detail="Container group was OOM killed")),
                       shard(shard_attempts=1))
    assert replay.timeline() == ["acquire_vcpu", "create_container_group", "get_container_state", "save_container_logs",
                                 "delete_container_group", "release_vcpu"]
    assert replay.output["state"] == "failed"
    assert replay.output["reason"] == "the container group ended Failed: Container group was OOM killed"


def test_shard_group_that_disappears_fails_and_is_still_deleted():
    replay = run_shard(aci_shard(lambda group, poll: None), shard(shard_attempts=1))
    assert replay.output["reason"] == "the container group disappeared while running"
    assert [w.input for w in replay.calls("delete_container_group")] == [GROUP]


def test_shard_permanent_create_error_is_not_polled_nor_retried_but_deleted():
    reason = ("InaccessibleImage: The image 'scoringacr.azurecr.io/r-scoring:1.4.2' in container group "
              f"'{GROUP}' is not accessible. Please check the image and registry credential.")
    replay = run_shard(aci_shard(create={"ok": False, "reason": reason, "code": "InaccessibleImage"}))

    assert replay.timeline() == ["acquire_vcpu", "create_container_group", "save_container_logs",
                                 "delete_container_group", "release_vcpu"]
    assert not replay.calls("get_container_state") and not replay.calls("read_shard_status")
    assert not [w for w in replay.scheduled if w.kind == "timer"]
    out = replay.output
    assert out["state"] == "failed" and out["reason"] == reason
    assert out["attempts"] == [attempt_json({
        "attempt": 1, "group": GROUP, "state": "failed", "reason": reason, "permanent": True, "quota_waits": 0,
        "logs": f"results/{naming.logs_blob(RUN_ID, 0)}", "deleted": True})]
    assert out["attempts"][0]["billed_from"] is None  # no group was created: nothing billed


def test_shard_create_that_always_raises_is_retried_durably_then_the_group_is_still_deleted():
    error = Fail("Activity function 'create_container_group' failed: AciError: 503 ServiceUnavailable: "
                 "the service is temporarily unavailable", "Traceback (most recent call last): ...")
    replay = run_shard(aci_shard(create=error), shard(retry_attempts=3))

    creates = replay.calls("create_container_group")
    assert [(w.input["group"], w.attempt) for w in creates] == [(GROUP, 1), (GROUP, 2), (GROUP, 3),
                                                                (GROUP_A2, 1), (GROUP_A2, 2), (GROUP_A2, 3)]
    # Between tries, the retry loop's durable timers (none of the orchestrator's own poll timers: never polled).
    assert not replay.calls("get_container_state") and not replay.calls("read_shard_status")
    assert [w.input for w in replay.calls("delete_container_group")] == [GROUP, GROUP_A2]
    assert [w.input["group"] for w in replay.calls("save_container_logs")] == [GROUP, GROUP_A2]
    out = replay.output
    assert out["state"] == "failed"
    assert out["reason"].startswith(f"container group {GROUP_A2}: Activity function 'create_container_group' "
                                    "failed: AciError: 503")
    assert "Traceback" not in out["reason"]
    assert [a["deleted"] for a in out["attempts"]] == [True, True]


def test_shard_aci_retries_carry_the_backoff_coefficient_the_orchestrator_sets():
    """SDK 1.7's RetryOptions.to_json() sends only firstRetryIntervalInMilliseconds and maxNumberOfAttempts;
    aci_retry() must put the coefficient in the JSON itself or the host retries ACI calls at a fixed interval."""
    replay = run_shard(aci_shard(create=Fail("Activity function 'create_container_group' failed: AciError: 429")),
                       shard(retry_attempts=3, shard_attempts=1))
    for call in replay.calls("create_container_group") + replay.calls("delete_container_group"):
        assert call.retry.get("backoffCoefficient") == 2, call.retry


QUOTA_REASON = ("ContainerGroupQuotaReached: Resource type 'Microsoft.ContainerInstance/containerGroups' has reached "
                "the quota 'StandardCores' of 10 in region 'westeurope'.")
QUOTA = {"ok": False, "quota": True, "reason": QUOTA_REASON, "code": "ContainerGroupQuotaReached"}


def quota_creates(full: int) -> Callable[[Work], Any]:
    """create_container_group's answers: a full quota for the first `full` calls of each group, then ok."""
    calls: dict[str, int] = {}

    def create(work: Work) -> dict:
        calls[work.input["group"]] = calls.get(work.input["group"], 0) + 1
        return QUOTA if calls[work.input["group"]] <= full else {"ok": True}

    return create


def own_timers(replay: Replay) -> list[Work]:
    """The orchestrator's own durable timers (not those of the activity retry loop)."""
    return [w for w in replay.scheduled if w.kind == "timer" and w.retry_timer_for is None]


def test_shard_full_quota_is_waited_out_with_durable_timers_then_created():
    replay = run_shard(aci_shard(overrides={"create_container_group": quota_creates(2)}))

    assert replay.timeline() == ["acquire_vcpu", "create_container_group", "timer", "create_container_group", "timer",
                                 "create_container_group", "get_container_state", "timer", "get_container_state",
                                 "save_container_logs", "delete_container_group", "release_vcpu", "read_shard_status"]
    creates = replay.calls("create_container_group")
    assert [w.input for w in creates] == [creates[0].input] * 3  # the same group, the same attempt
    assert creates[0].input["group"] == GROUP and [w.attempt for w in creates] == [1, 1, 1]
    # retry_interval_seconds * 2 ** waits after the orchestration time the full quota was reported.
    quota_timers = [a for a in replay.actions if a["actionType"] == ActionType.CREATE_TIMER][:2]
    assert [h.parse_timestamp(a["fireAt"]) for a in quota_timers] == [
        creates[0].scheduled_at + timedelta(seconds=ACTIVITY_SECONDS + 15 * 2),
        creates[1].scheduled_at + timedelta(seconds=ACTIVITY_SECONDS + 15 * 4)]
    timers = own_timers(replay)
    assert [t.fire_at - t.scheduled_at for t in timers[:2]] == [timedelta(seconds=30), timedelta(seconds=60)]
    assert creates[1].scheduled_at == timers[0].fire_at and creates[2].scheduled_at == timers[1].fire_at
    assert timers[2].fire_at - timers[2].scheduled_at == timedelta(seconds=TIMING["poll_seconds"])

    out = replay.output
    assert out["state"] == "succeeded"
    [attempt] = out["attempts"]
    assert attempt["quota_waits"] == 2 and attempt["deleted"] is True
    assert attempt["billed_from"] == (creates[2].scheduled_at + timedelta(seconds=ACTIVITY_SECONDS)).isoformat()
    assert attempt["billed_to"] is not None and attempt["permanent"] is False


def test_shard_quota_that_stays_full_fails_the_attempt_not_permanently_and_deletes():
    replay = run_shard(aci_shard(overrides={"create_container_group": quota_creates(10 ** 6)}),
                       shard(quota_waits=7))

    creates = replay.calls("create_container_group")
    assert [w.input["group"] for w in creates] == [GROUP] * 8 + [GROUP_A2] * 8  # 1 + 7 waits per attempt
    delays = [(t.fire_at - t.scheduled_at).total_seconds() for t in own_timers(replay)]
    assert delays == [30, 60, 120, 240, 480, 960, 960] * 2  # doubling, capped at 2 ** 6
    assert not replay.calls("get_container_state") and not replay.calls("read_shard_status")
    assert [w.input for w in replay.calls("delete_container_group")] == [GROUP, GROUP_A2]

    out = replay.output
    assert out["state"] == "failed" and out["reason"] == QUOTA_REASON
    assert out["attempts"] == [attempt_json(
        {"attempt": n, "group": group, "state": "failed", "reason": QUOTA_REASON, "quota_waits": 7,
         "permanent": False, "logs": f"results/{naming.logs_blob(RUN_ID, 0, n)}", "deleted": True})
        for n, group in ((1, GROUP), (2, GROUP_A2))]


def test_shard_quota_waits_are_recorded_even_when_a_later_create_raises():
    """Known bug (see the report): run_attempt copies quota_waits into the attempt only when create_group returns;
    if the quota was waited out and the next create then raises (retries exhausted), the attempt has no
    quota_waits, so score_run does not lower its parallelism although this shard met a full quota."""
    calls: list[Work] = []
    error = Fail("Activity function 'create_container_group' failed: AciError: 503 ServiceUnavailable")

    def create(work: Work) -> Any:  # full twice, then the third create fails every retry
        calls.append(work)
        return QUOTA if len(calls) <= 2 else error

    replay = run_shard(aci_shard(overrides={"create_container_group": create}),
                       shard(retry_attempts=2, shard_attempts=1))
    assert len(own_timers(replay)) == 2  # the quota was waited out twice
    [attempt] = replay.output["attempts"]
    assert attempt["reason"].startswith(f"container group {GROUP}: Activity function 'create_container_group'")
    assert attempt["deleted"] is True
    assert attempt.get("quota_waits") == 2, attempt


def test_shard_cancel_during_a_quota_wait_creates_no_group():
    """Known bug (see the report): the quota wait is a bare durable timer, not raced against the shard's 'cancel'
    event. A run cancelled while a shard waits out a full quota keeps that shard creating container groups
    (all quota waits, then a second attempt); if the quota frees up, it creates and bills a group after the
    cancel, only to stop it at the first poll."""
    sent: list[bool] = []
    aci = aci_shard(lambda group, poll: RUNNING, overrides={"create_container_group": quota_creates(2)})

    def answer(work: Work) -> Any:
        if work.kind == "timer" and not sent:
            sent.append(True)
            return Raise("cancel")  # while the shard waits out its first full quota
        return aci(work)

    replay = run_shard(answer, shard(quota_waits=3))
    assert replay.output["state"] == "cancelled"
    assert len(replay.calls("create_container_group")) == 1  # none after the cancel
    assert len(replay.output["attempts"]) == 1
    assert [w.input for w in replay.calls("delete_container_group")] == [GROUP]


def test_shard_poll_that_fails_once_is_retried_durably_and_the_attempt_succeeds():
    failures: list[Work] = []
    error = Fail("Activity function 'get_container_state' failed: AciError: 502 BadGateway",
                 "Traceback (most recent call last): ...")
    aci = aci_shard()

    def answer(work: Work) -> Any:
        if work.name == "get_container_state" and not failures:
            failures.append(work)
            return error
        return aci(work)

    replay = run_shard(answer)

    polls = replay.calls("get_container_state")
    assert [(w.input, w.attempt) for w in polls] == [(GROUP, 1), (GROUP, 2), (GROUP, 1)]
    assert polls[0].retry == {"firstRetryIntervalInMilliseconds": 15000, "maxNumberOfAttempts": 5,
                              "backoffCoefficient": 2}
    assert polls[0].retry == replay.calls("create_container_group")[0].retry
    [retry_timer] = [w for w in replay.scheduled if w.retry_timer_for is polls[0]]
    assert retry_timer.fire_at == polls[0].scheduled_at + timedelta(seconds=ACTIVITY_SECONDS + 15)
    assert polls[1].scheduled_at == retry_timer.fire_at
    assert len(replay.calls("create_container_group")) == 1  # no new group
    assert [w.input for w in replay.calls("delete_container_group")] == [GROUP]
    out = replay.output
    assert out["state"] == "succeeded" and out["reason"] == ""
    [attempt] = out["attempts"]  # no second attempt
    assert attempt["state"] == "succeeded" and attempt["exit_code"] == 0 and attempt["quota_waits"] == 0


def test_shard_delete_failure_is_reported_not_raised():
    error = Fail("Activity function 'delete_container_group' failed: AciError: 409 Conflict")
    replay = run_shard(aci_shard(overrides={"delete_container_group": lambda work: error}),
                       shard(retry_attempts=2))
    out = replay.output
    assert out["state"] == "succeeded"  # the shard's results are in; the orphan is reported for the sweeper
    assert len(replay.calls("delete_container_group")) == 2  # retried durably first
    [attempt] = out["attempts"]
    assert attempt["deleted"] is False
    assert attempt["delete_error"].startswith(f"could not delete container group {GROUP}: Activity function")


def test_shard_save_logs_failure_still_deletes():
    error = Fail("Activity function 'save_container_logs' failed: AciError: 404 ContainerGroupNotFound")
    replay = run_shard(aci_shard(overrides={"save_container_logs": lambda work: error}))
    [attempt] = replay.output["attempts"]
    assert attempt["logs_error"].startswith("Activity function 'save_container_logs' failed")
    assert attempt["deleted"] is True and replay.output["state"] == "succeeded"


def test_shard_deadline_times_out_on_the_orchestration_clock_and_deletes():
    replay = run_shard(aci_shard(lambda group, poll: RUNNING), shard(deadline_minutes=5, shard_attempts=1))

    out = replay.output
    assert out["state"] == "timed_out"
    assert out["reason"] == "the container did not finish within 5 min"
    assert out["attempts"][0]["started"] == "2026-11-23T06:00:41Z"
    timers = [w for w in replay.scheduled if w.kind == "timer"]
    deadline = replay.calls("get_container_state")[0].scheduled_at + timedelta(minutes=5)
    assert all(t.fire_at <= deadline for t in timers)  # the last wait is cut to the deadline
    assert timers[-1].fire_at == deadline
    assert replay.calls("get_container_state")[-1].scheduled_at >= deadline
    assert replay.timeline()[-3:] == ["save_container_logs", "delete_container_group", "release_vcpu"]
    assert not replay.calls("read_shard_status")


def test_shard_provisioning_deadline_times_out_a_group_that_never_starts():
    replay = run_shard(aci_shard(lambda group, poll: WAITING), shard(provisioning_deadline_minutes=2,
                                                                     shard_attempts=1))
    out = replay.output
    assert out["state"] == "timed_out"
    assert out["reason"].startswith("the container did not start within 2 min (state Waiting: pulling image")
    polls = replay.calls("get_container_state")
    assert polls[-1].scheduled_at - polls[0].scheduled_at >= timedelta(minutes=2)
    assert polls[-1].scheduled_at - polls[0].scheduled_at < timedelta(minutes=60)
    assert replay.calls("delete_container_group")[0].input == GROUP


def test_shard_cancel_during_the_poll_wait_cancels_the_timer_and_deletes():
    def answer(work: Work) -> Any:
        if work.kind == "timer":
            return Raise("cancel")
        return aci_shard(lambda group, poll: RUNNING)(work)

    replay = run_shard(answer)

    out = replay.output
    assert out["state"] == "cancelled" and out["reason"] == "the run was cancelled"
    assert len(out["attempts"]) == 1  # a cancelled shard is not tried again
    [timer] = [w for w in replay.scheduled if w.kind == "timer"]
    assert timer.canceled and not timer.done
    assert replay.timeline() == ["acquire_vcpu", "create_container_group", "get_container_state", "timer",
                                 "save_container_logs",
                                 "delete_container_group", "release_vcpu"]
    assert replay.calls("delete_container_group")[0].input == GROUP


def test_shard_cancel_raised_while_a_later_poll_is_outstanding_is_honoured():
    """The run forwards 'cancel' to its shards at any moment, e.g. while the shard waits for its second
    get_container_state. The SDK hands an event to the newest *open* waiter, so a wait per poll loop would let
    an abandoned one swallow it; score_shard keeps one wait for the whole shard."""
    polls: list[int] = []
    cancel_sent: list[int] = []
    aci = aci_shard(lambda group, poll: RUNNING if poll < 6 else container("Terminated", 0, detail="Completed"))

    def answer(work: Work) -> Any:
        if work.name == "get_container_state" and len(polls) == 1 and not cancel_sent:
            cancel_sent.append(len(polls))
            return Raise("cancel")  # the second poll is outstanding when the event arrives
        if work.name == "get_container_state":
            polls.append(1)
        return aci(work)

    replay = run_shard(answer, shard(shard_attempts=1))

    assert replay.output["state"] == "cancelled"
    assert len(replay.calls("get_container_state")) == 2  # the outstanding poll, then no more
    assert replay.calls("delete_container_group")[0].input == GROUP


# --------------------------------------------------------------------------------------------- score_run

REQUEST = {"model": "parcels", "version": "latest", "input_blob": "latest", "postcodes": None, "horizon": 14,
           "shard_size": 3, "trigger": "http", "dry_run": False, "retry_of": None, "input_etag": "",
           "postcodes_blob": None}


def make_plan(shards: int = 5, parallel_groups: int = 2, failed: dict | None = None) -> dict:
    """plan_run's answer (a RunPlan), as plain JSON: shards by reference, plan-time failures as a count."""
    cut = [{"index": i, "size": 3, "first": shard_postcodes(i)[0], "last": shard_postcodes(i)[-1],
            "blob": naming.plan_shard_blob(RUN_ID, i)} for i in range(shards)]
    failed = failed or {}
    return {"run_id": RUN_ID, "model": "parcels", "version": "v20261120", "input": INPUT, "horizon": 14,
            "trigger": "http", "retry_of": None, "subset": False, "postcodes_total": 3 * shards + len(failed),
            "failed": len(failed), "parallel_groups": parallel_groups,
            "container": {"image": "scoringacr.azurecr.io/r-scoring:1.4.2", "cpu": 2.0, "memory_gb": 4.0},
            "estimate": {"groups": shards, "vcpu_seconds": 420.0 * shards, "gb_seconds": 840.0 * shards,
                         "price_usd": round(0.00481 * shards, 6)},
            "shards": cut, "timing": TIMING, "plan_blob": f"results/{naming.plan_blob(RUN_ID)}",
            "input_time": "2026-11-23T05:00:00+00:00", "planned_at": "2026-11-23T06:00:00.000000Z",
            "champion": True, "ts_max_gap_days": None, "warnings": []}


def attempt_json(fields: dict) -> dict:
    """An Attempt's plain JSON: the given fields, every other one at its default."""
    return Attempt.from_json(fields).to_json()


def shard_outcome(shard_input: dict, state: str = "succeeded", reason: str = "", failed: dict | None = None,
                  delete_error: str | None = None, quota_waits: int = 0) -> dict:
    """score_shard's output for its input."""
    index = shard_input["index"]
    prefix = naming.staging_prefix(RUN_ID, index)
    status = shard_status(prefix, shard_postcodes(index), 3 if failed else 0, failed) \
        if state in ("succeeded", "partial") else None
    attempt = {"attempt": 1, "group": naming.group_name(RUN_ID, index), "state": state, "reason": reason,
               "quota_waits": quota_waits, "billed_from": "2026-11-23T06:00:02+00:00",
               "logs": f"results/{naming.logs_blob(RUN_ID, index)}", "deleted": delete_error is None}
    if delete_error:
        attempt["delete_error"] = delete_error
    else:
        attempt["billed_to"] = "2026-11-23T06:04:30+00:00"
    return ShardOutcome.from_json({"index": index, "state": state, "reason": reason, "status": status,
                                   "postcodes": shard_input["postcodes"], "attempts": [attempt]}).to_json()


REVISION = f"runs/{RUN_ID}/revisions/{RUN_ID}/"


def published(plan: dict, failed: int = 0) -> dict:
    """publish_run's answer (publish.publish_run's return value): counts and where the failures are."""
    scored = plan["postcodes_total"] - failed
    return {"results": f"results/{REVISION}results.csv", "manifest": f"results/{REVISION}manifest.json",
            "rows": 14 * scored, "postcodes_scored": scored, "postcodes_failed_count": failed,
            "failures": f"results/{REVISION}failures.json",
            "state": "completed_with_failures" if failed else "completed",
            "cost": {"container_seconds": 268.0, "vcpu_seconds": 536.0, "gb_seconds": 1072.0, "price_usd": 0.0062}}


def recorded(publication: dict) -> dict:
    """record_failures' answer for a run that publishes nothing: every postcode of a failed shard, and the
    plan's and the ok shards' own failures (counted here as the activity would find them in the blobs)."""
    count = publication["plan"]["failed"] + sum(
        o["status"]["failed"] if o["state"] in ("succeeded", "partial") and o["status"] else 3
        for o in publication["shards"])
    return {"failures": f"results/{naming.failures_blob(RUN_ID)}", "count": count}


def run_answers(plan: dict | Fail, shard_answer: Callable[[Work], Any] | None = None,
                failed: int = 0) -> Callable[[Work], Any]:
    def answer(work: Work) -> Any:
        if work.name == "plan_run":
            return plan
        if work.kind == "sub":
            return (shard_answer or (lambda w: shard_outcome(w.input)))(work)
        if work.name == "publish_run":
            return published(plan, failed)
        if work.name == "record_failures":
            return recorded(work.input)
        if work.name == "request_shard_cancel":
            return len(work.input)
        raise AssertionError(f"unexpected work {work}")

    return answer


def assert_bounded(replay: Replay, bound: int) -> None:
    """At most `bound` shards outstanding after every episode, and a new one only when one has finished."""
    for episode in replay.episodes:
        assert len(episode.pending_subs) <= bound, episode
        started = [w for w in episode.new_work if w.kind == "sub"]
        if started and not episode.delivered.startswith("completed plan_run"):
            assert episode.delivered.startswith(("completed score_shard", "failed score_shard")), episode
            assert len(started) == 1, episode


def test_run_fans_out_with_bounded_concurrency_then_publishes():
    plan = make_plan(shards=5, parallel_groups=2)
    replay = Replay("score_run", REQUEST, instance_id=RUN_ID)
    out = replay.run(run_answers(plan))

    [plan_call] = replay.calls("plan_run")
    assert plan_call.input == {"request": REQUEST, "run_id": RUN_ID, "today": "2026-11-23",
                               "started": "2026-11-23T06:00:00+00:00"}
    subs = [w for w in replay.scheduled if w.kind == "sub"]
    assert [w.instance_id for w in subs] == [f"{RUN_ID}:shard-00{i}" for i in range(5)]
    assert {w.name for w in subs} == {"score_shard"}
    assert [w.input for w in subs] == [  # by reference: the postcodes stay in the plan's blobs
        {"run_id": RUN_ID, "index": i, "postcodes": 3, "postcodes_blob": f"runs/{RUN_ID}/plan/shard-00{i}.json",
         "model": "parcels", "version": "v20261120", "input": INPUT, "horizon": 14, "timing": TIMING,
         "ts_max_gap_days": None}
        for i in range(5)]
    # The plan episode starts two shards; every later start follows one completion.
    assert [w.instance_id for w in replay.episodes[1].new_work] == [f"{RUN_ID}:shard-000", f"{RUN_ID}:shard-001"]
    assert max(len(e.pending_subs) for e in replay.episodes) == 2
    assert_bounded(replay, 2)

    [publish] = replay.calls("publish_run")
    assert publish.input == {"plan": plan, "shards": [shard_outcome(w.input) for w in subs]}
    assert replay.timeline()[-1] == "publish_run"
    assert not replay.calls("request_shard_cancel")
    assert out == {"run_id": RUN_ID, "model": "parcels", "trigger": "http", "errors": [], "retry_of": None,
                   "version": "v20261120", "input": INPUT, "shards_total": 5,
                   "shards": [{"index": i, "state": "succeeded", "reason": "",
                               "attempts": shard_outcome(subs[i].input)["attempts"]} for i in range(5)],
                   "cleanup_errors": [], "warnings": None, "postcodes_failed": {}, **published(plan)}
    assert replay.custom_status == {"stage": "done", "shards_total": 5, "shards_done": 5, "shards_running": 0,
                                    "postcodes_total": 15, "postcodes_scored": 15, "postcodes_failed": 0,
                                    "parallel_groups": None}
    assert RunPlan.from_json(plan).to_json() == plan  # the test's plan is a complete RunPlan


def test_run_fan_out_tolerates_completions_out_of_order():
    plan = make_plan(shards=4, parallel_groups=3)
    replay = Replay("score_run", REQUEST, instance_id=RUN_ID)
    replay.start()
    replay.complete(replay.pending[0], plan)
    while not replay.done:  # always finish the newest shard first
        work = replay.pending[-1]
        if work.kind == "sub":
            replay.complete(work, shard_outcome(work.input))
        else:
            replay.complete(work, run_answers(plan)(work))
    assert_bounded(replay, 3)
    assert [s["index"] for s in replay.output["shards"]] == [0, 1, 2, 3]
    assert [s["index"] for s in replay.calls("publish_run")[0].input["shards"]] == [0, 1, 2, 3]
    assert replay.output["state"] == "completed"


def test_run_with_a_failed_shard_still_publishes_the_rest_and_lists_its_postcodes_as_failed():
    plan = make_plan(shards=5, parallel_groups=2, failed={"8999": "no input rows for this postcode"})
    reason = "the container exited with code 1: no status written"

    def shards(work: Work) -> dict:
        return shard_outcome(work.input, "failed", reason) if work.input["index"] == 2 else shard_outcome(work.input)

    replay = Replay("score_run", REQUEST, instance_id=RUN_ID)
    out = replay.run(run_answers(plan, shards, failed=4))

    subs = [w for w in replay.scheduled if w.kind == "sub"]
    assert len(subs) == 5  # the other shards still ran
    [publish] = replay.calls("publish_run")
    # Which postcodes failed, and why, publish gathers from the plan's and the shards' blobs.
    assert publish.input == {"plan": plan,
                             "shards": [shards(w) for w in sorted(subs, key=lambda w: w.input["index"])]}
    assert replay.timeline()[-1] == "publish_run"
    # The publish activity decides the final state; the output carries it.
    assert out["state"] == "completed_with_failures"
    assert out["errors"] == [f"shard 2: {reason}"]
    assert out["postcodes_failed_count"] == 4 and out["postcodes_failed"] == {}
    assert out["failures"] == f"results/{REVISION}failures.json"
    assert out["postcodes_scored"] == 16 - 4
    assert out["results"] == f"results/{REVISION}results.csv"
    assert [s["state"] for s in out["shards"]] == ["succeeded", "succeeded", "failed", "succeeded", "succeeded"]
    assert replay.custom_status["stage"] == "done"


def test_run_where_every_shard_fails_publishes_nothing_and_fails():
    plan = make_plan(shards=3, parallel_groups=2, failed={"8999": "no input rows for this postcode"})
    crash = Fail("Orchestrator function 'score_shard' failed: KeyError: 'timing'", "Traceback ...")

    def shards(work: Work) -> Any:
        if work.input["index"] == 1:
            return crash
        return shard_outcome(work.input, "timed_out", "the container did not finish within 60 min")

    replay = Replay("score_run", REQUEST, instance_id=RUN_ID)
    out = replay.run(run_answers(plan, shards))

    assert len([w for w in replay.scheduled if w.kind == "sub"]) == 3
    assert not replay.calls("publish_run")
    assert replay.timeline()[-2:] == [f"sub:{RUN_ID}:shard-002", "record_failures"]
    [record] = replay.calls("record_failures")
    assert record.input["plan"] == plan and [o["index"] for o in record.input["shards"]] == [0, 1, 2]
    assert out["state"] == "failed"
    assert [s["state"] for s in out["shards"]] == ["timed_out", "failed", "timed_out"]
    assert len(out["errors"]) == 3
    assert out["errors"][0] == "shard 0: the container did not finish within 60 min"
    assert out["errors"][1].startswith("shard 1: Orchestrator function 'score_shard' failed: KeyError")
    assert out["errors"][2] == "shard 2: the container did not finish within 60 min"
    assert out["postcodes_failed_count"] == 1 + 9 and out["failures"] == f"results/{naming.failures_blob(RUN_ID)}"
    assert out["postcodes_scored"] == 0
    assert out["results"] is None and out["manifest"] is None
    assert replay.custom_status["stage"] == "done"
    assert replay.custom_status["shards_running"] == 0


def test_run_partial_shard_and_undeleted_group_still_publish():
    plan = make_plan(shards=2, parallel_groups=2)
    orphan = f"could not delete container group {naming.group_name(RUN_ID, 1)}: AciError: 409 Conflict"

    def shards(work: Work) -> dict:
        if work.input["index"] == 0:
            return shard_outcome(work.input, "partial", failed={"8002": "model did not converge"})
        return shard_outcome(work.input, delete_error=orphan)

    replay = Replay("score_run", REQUEST, instance_id=RUN_ID)
    out = replay.run(run_answers(plan, shards, failed=1))
    [publish] = replay.calls("publish_run")
    assert [s["state"] for s in publish.input["shards"]] == ["partial", "succeeded"]
    assert publish.input["shards"][0]["status"]["failed"] == 1 and out["postcodes_failed_count"] == 1
    assert out["cleanup_errors"] == [orphan]
    assert out["errors"] == []
    assert out["state"] == "completed_with_failures"
    assert replay.custom_status["postcodes_failed"] == 1


def test_run_shard_sub_orchestration_failure_fails_that_shard_not_the_run():
    """A shard orchestration that itself fails (SubOrchestrationInstanceFailed) becomes a failed shard outcome;
    the other shards still run and are published."""
    plan = make_plan(shards=3, parallel_groups=2)
    failure = Fail("Orchestrator function 'score_shard' failed: KeyError: 'timing'", "Traceback ...")

    def shards(work: Work) -> Any:
        return failure if work.input["index"] == 1 else shard_outcome(work.input)

    replay = Replay("score_run", REQUEST, instance_id=RUN_ID)
    out = replay.run(run_answers(plan, shards, failed=3))

    assert len([w for w in replay.scheduled if w.kind == "sub"]) == 3
    [publish] = replay.calls("publish_run")
    outcome = publish.input["shards"][1]
    assert outcome["index"] == 1 and outcome["state"] == "failed" and outcome["status"] is None
    assert outcome["attempts"] == []
    assert outcome["reason"].startswith("Orchestrator function 'score_shard' failed: KeyError")
    assert "Traceback" not in outcome["reason"]
    assert outcome["postcodes"] == 3  # from the plan's shard reference: publish lists those 3 as failed
    assert out["state"] == "completed_with_failures"
    assert [s["state"] for s in out["shards"]] == ["succeeded", "failed", "succeeded"]
    assert out["errors"] == [f"shard 1: {outcome['reason']}"]
    assert out["postcodes_failed_count"] == 3 and out["postcodes_scored"] == 6


def test_run_lowers_its_concurrency_after_a_shard_that_met_a_full_quota():
    plan = make_plan(shards=5, parallel_groups=2)

    def shards(work: Work) -> dict:
        return shard_outcome(work.input, quota_waits=1 if work.input["index"] == 0 else 0)

    replay = Replay("score_run", REQUEST, instance_id=RUN_ID)
    out = replay.run(run_answers(plan, shards))

    assert [w.instance_id for w in replay.episodes[1].new_work] == [f"{RUN_ID}:shard-000", f"{RUN_ID}:shard-001"]
    [lowered] = [i for i, e in enumerate(replay.episodes) if e.delivered.startswith("completed score_shard")][:1]
    episode = replay.episodes[lowered]
    assert episode.pending_subs == [f"{RUN_ID}:shard-001"]  # shard 0 done: nothing new starts beside shard 1
    assert not [w for w in episode.new_work if w.kind == "sub"]
    assert episode.custom_status["parallel_groups"] == 1
    assert all(e.custom_status["parallel_groups"] is None for e in replay.episodes[:lowered])
    for later in replay.episodes[lowered:]:
        assert len(later.pending_subs) <= 1, later
    assert_bounded(replay, 2)
    assert [w.instance_id for w in replay.scheduled if w.kind == "sub"] == [
        f"{RUN_ID}:shard-00{i}" for i in range(5)]
    assert replay.calls("publish_run") and out["state"] == "completed"
    assert replay.custom_status["parallel_groups"] == 1


def test_run_concurrency_never_drops_below_one():
    plan = make_plan(shards=4, parallel_groups=2)
    replay = Replay("score_run", REQUEST, instance_id=RUN_ID)
    out = replay.run(run_answers(plan, lambda work: shard_outcome(work.input, quota_waits=3)))

    assert [e.custom_status.get("parallel_groups") for e in replay.episodes
            if e.delivered.startswith("completed score_shard")] == [1, 1, 1, 1]
    assert len([w for w in replay.scheduled if w.kind == "sub"]) == 4  # every shard still ran, one at a time
    assert [len(e.pending_subs) for e in replay.episodes[1:]] == [2, 1, 1, 1, 0, 0]  # then publish_run
    assert out["state"] == "completed"


def test_run_publish_failure_after_a_failed_shard_still_names_the_failed_shard():
    """Known bug (see the report): when publish_run fails, score_run returns `errors: ["publish: ..."]`, replacing
    the list that named each failed shard. Before shard failures were published this list was always empty
    there; now a failed shard plus a failed publish loses the shard's error."""
    plan = make_plan(shards=2, parallel_groups=2)
    reason = "the container exited with code 1: no status written"
    answers = run_answers(plan, lambda w: shard_outcome(w.input, "failed", reason) if w.input["index"] == 1
                          else shard_outcome(w.input))

    def answer(work: Work) -> Any:
        if work.retry_timer_for is not None:  # publish is retried durably before the run gives up
            return None
        if work.name == "publish_run":
            return Fail("Activity function 'publish_run' failed: ValueError: shard 0 results lack postcode 8002")
        return answers(work)

    out = Replay("score_run", REQUEST, instance_id=RUN_ID).run(answer)
    assert out["state"] == "failed"
    assert f"shard 1: {reason}" in out["errors"]
    assert "publish: Activity function 'publish_run' failed: ValueError: shard 0 results lack postcode 8002" \
        in out["errors"]


def test_run_cancel_forwards_to_running_shards_and_starts_no_more():
    plan = make_plan(shards=5, parallel_groups=2)
    cancelled: list[str] = []

    def shards(work: Work) -> Any:
        if not cancelled:
            cancelled.append(work.instance_id)
            return Raise("cancel")  # while shards 0 and 1 run
        return shard_outcome(work.input, "cancelled", "the run was cancelled")

    replay = Replay("score_run", REQUEST, instance_id=RUN_ID)
    out = replay.run(run_answers(plan, shards))

    [forward] = replay.calls("request_shard_cancel")
    assert forward.input == [f"{RUN_ID}:shard-000", f"{RUN_ID}:shard-001"]
    assert [w.instance_id for w in replay.scheduled if w.kind == "sub"] == [f"{RUN_ID}:shard-000",
                                                                           f"{RUN_ID}:shard-001"]
    assert not replay.calls("publish_run")
    assert out["state"] == "cancelled"
    assert [(s["index"], s["state"]) for s in out["shards"]] == [(i, "cancelled") for i in range(5)]
    assert [s["reason"] for s in out["shards"][2:]] == ["the run was cancelled"] * 3
    assert [s["attempts"] for s in out["shards"][2:]] == [[], [], []]
    assert out["postcodes_failed_count"] == 15 and out["postcodes_scored"] == 0
    [record] = replay.calls("record_failures")  # the reasons, for the status and failures routes
    assert [(o["index"], o["state"], o["postcodes"]) for o in record.input["shards"]] == [
        (i, "cancelled", 3) for i in range(5)]
    cancelling = [e for e in replay.episodes if e.delivered == "event cancel"][0]
    assert cancelling.custom_status["stage"] == "cancelling"
    assert replay.custom_status["stage"] == "done"


def test_run_cancel_after_some_shards_finished_forwards_only_to_the_running_ones():
    plan = make_plan(shards=5, parallel_groups=2)
    seen: list[str] = []

    def shards(work: Work) -> Any:
        if work.instance_id.endswith("shard-002") and "cancel" not in seen:
            seen.append("cancel")
            return Raise("cancel")
        return shard_outcome(work.input, "cancelled", "the run was cancelled") if "cancel" in seen \
            else shard_outcome(work.input)

    replay = Replay("score_run", REQUEST, instance_id=RUN_ID)
    out = replay.run(run_answers(plan, shards))
    assert replay.calls("request_shard_cancel")[0].input == [f"{RUN_ID}:shard-002", f"{RUN_ID}:shard-003"]
    assert len([w for w in replay.scheduled if w.kind == "sub"]) == 4
    assert [s["state"] for s in out["shards"]] == ["succeeded", "succeeded", "cancelled", "cancelled", "cancelled"]
    assert out["state"] == "cancelled" and not replay.calls("publish_run")


def test_run_plan_failure_fails_the_run_without_shards():
    reason = ("Activity function 'plan_run' failed: PlanError: input input/daily/2026-11-23.csv lacks column(s) "
              "date; it has: postcode, day, parcels")
    replay = Replay("score_run", REQUEST, instance_id=RUN_ID)
    out = replay.run(run_answers(Fail(reason, "Traceback (most recent call last): ...")))

    assert replay.timeline() == ["plan_run"]
    assert out["state"] == "failed"
    assert len(out["errors"]) == 1 and out["errors"][0].startswith(f"plan: {reason}")
    assert "Traceback" not in out["errors"][0]
    assert out["run_id"] == RUN_ID and out["model"] == "parcels" and out["trigger"] == "http"
    assert replay.custom_status["stage"] == "done"


def test_run_publish_failure_fails_the_run():
    plan = make_plan(shards=2, parallel_groups=2)
    answers = run_answers(plan)

    def answer(work: Work) -> Any:
        if work.retry_timer_for is not None:  # publish is retried durably before the run gives up
            return None
        if work.name == "publish_run":
            return Fail("Activity function 'publish_run' failed: ValueError: shard 1 results lack postcode 8005")
        return answers(work)

    replay = Replay("score_run", REQUEST, instance_id=RUN_ID)
    out = replay.run(answer)
    assert len(replay.calls("publish_run")) == plan["timing"]["retry_attempts"]  # retried, then given up
    assert out["state"] == "failed"
    assert out["errors"] == ["publish: Activity function 'publish_run' failed: ValueError: shard 1 results lack "
                             "postcode 8005"]


def test_run_that_cannot_record_its_failures_still_ends_with_its_state_and_says_so():
    plan = make_plan(shards=2, parallel_groups=2)
    answers = run_answers(plan, lambda w: shard_outcome(w.input, "timed_out", "the container did not finish"))

    def answer(work: Work) -> Any:
        if work.retry_timer_for is not None:
            return None
        if work.name == "record_failures":
            return Fail("Activity function 'record_failures' failed: BlobNotFound: plan.json")
        return answers(work)

    replay = Replay("score_run", REQUEST, instance_id=RUN_ID)
    out = replay.run(answer)
    assert len(replay.calls("record_failures")) == TIMING["retry_attempts"]  # retried durably, then given up
    assert out["state"] == "failed" and out["failures"] is None
    assert out["postcodes_failed_count"] == 6  # still counted in the orchestration
    assert out["errors"][-1] == ("failures not recorded: Activity function 'record_failures' failed: BlobNotFound: "
                                 "plan.json")
