"""One shard: create its container group, wait for it with durable timers, keep its logs, always delete it.

A failed attempt is retried (SHARD_ATTEMPTS) in a new group; a permanent error (e.g. InaccessibleImage) is not.
Never raises: the outcome, with its reason, is the return value.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import azure.durable_functions as df

from scoring.errors import one_line
from scoring.exit_codes import EXIT_OK, EXIT_PARTIAL

from .. import naming
from ..payloads import (
    CANCEL_EVENT,
    Attempt,
    ContainerState,
    CreateResult,
    GroupRequest,
    LogsRequest,
    ShardInput,
    ShardOutcome,
    ShardReport,
    ShardState,
    Timing,
)
from .budget import acquire_vcpu, release_vcpu


class BackoffRetryOptions(df.RetryOptions):
    """RetryOptions whose JSON carries the backoff coefficient (SDK 1.7 sends only interval and attempts)."""

    def to_json(self) -> dict:
        return {**super().to_json(), "backoffCoefficient": self.backoff_coefficient}


def aci_retry(timing: Timing) -> df.RetryOptions:
    retry = BackoffRetryOptions(int(timing.retry_interval_seconds * 1000), int(timing.retry_attempts))
    retry.backoff_coefficient = 2
    return retry


@dataclass(frozen=True)
class ContainerEnd:
    """How waiting for a container ended (internal to this orchestrator)."""

    state: ShardState
    reason: str = ""
    exit_code: int | None = None
    started: str | None = None
    finished: str | None = None


def wait_for_container(context: df.DurableOrchestrationContext, name: str, timing: Timing, cancel: df.Task):
    """Poll until the container terminates, a deadline passes or the run is cancelled.

    Called right after the create PUT (which does not wait for the image pull), so both deadlines count
    from the create. Until the container runs, ACI shows provisioning Pending/Creating, a group state
    Pending (or no instance view at all) and a container Waiting: all of it waits against the
    provisioning deadline. A Failed provisioning is terminal (the attempt fails, with ACI's detail).
    """
    started_at = context.current_utc_datetime
    deadline = started_at + timedelta(minutes=timing.deadline_minutes)
    provisioning_deadline = started_at + timedelta(minutes=timing.provisioning_deadline_minutes)
    # Short first interval, doubling up to poll_seconds (a plan made before this setting has none).
    interval = timing.poll_first_seconds or timing.poll_seconds
    while True:
        # Retried: an ARM hiccup (or the stand-in restarting) must not fail a container that is fine.
        state: ContainerState | None = yield context.call_activity_with_retry(
            "get_container_state", aci_retry(timing), name)
        if state is None:
            return ContainerEnd(ShardState.FAILED, "the container group disappeared while running")
        if state.terminated:
            if state.exit_code is None:
                ended = state.group_state or f"with provisioning {state.provisioning_state}"
                return ContainerEnd(ShardState.FAILED, f"the container group ended {ended}: "
                                                       f"{state.detail or 'no detail'}")
            return ContainerEnd(ShardState.EXITED, exit_code=state.exit_code, started=state.start_time,
                                finished=state.finish_time)
        now = context.current_utc_datetime
        if not state.has_started and now >= provisioning_deadline:
            return ContainerEnd(ShardState.TIMED_OUT, f"the container did not start within "
                                                      f"{timing.provisioning_deadline_minutes:g} min (state "
                                                      f"{state.state or state.group_state or state.provisioning_state}"
                                                      f": {state.detail})")
        if now >= deadline:
            return ContainerEnd(ShardState.TIMED_OUT, f"the container did not finish within "
                                                      f"{timing.deadline_minutes:g} min", started=state.start_time)
        timer = context.create_timer(min(now + timedelta(seconds=interval), deadline))
        interval = min(2 * interval, timing.poll_seconds)
        winner = yield context.task_any([timer, cancel])
        if winner is cancel:
            timer.cancel()
            return ContainerEnd(ShardState.CANCELLED, "the run was cancelled")


def create_group(context: df.DurableOrchestrationContext, request: GroupRequest, cancel: df.Task, attempt: Attempt):
    """Create the group; a full quota is waited out with durable timers (counted in attempt.quota_waits as
    they happen, so the run lowers its parallelism even if a later create fails), other transient errors are
    retried by the activity retry policy. A cancel during a quota wait creates nothing."""
    timing = request.shard.timing
    while True:
        created: CreateResult = yield context.call_activity_with_retry(
            "create_container_group", aci_retry(timing), request)
        if not created.quota or attempt.quota_waits >= timing.quota_waits:
            return created
        attempt.quota_waits += 1
        delay = timing.retry_interval_seconds * 2 ** min(attempt.quota_waits, 6)
        timer = context.create_timer(context.current_utc_datetime + timedelta(seconds=delay))
        if (yield context.task_any([timer, cancel])) is cancel:
            timer.cancel()
            return CreateResult(ok=False, cancelled=True)


def run_attempt(context: df.DurableOrchestrationContext, shard: ShardInput, number: int, cancel: df.Task):
    """One container group, from create to delete; returns the Attempt and, when it produced results, the
    worker's report."""
    timing = shard.timing
    name = naming.group_name(shard.run_id, shard.index, number)
    prefix = naming.staging_prefix(shard.run_id, shard.index, number)
    attempt = Attempt(attempt=number, group=name)
    # Small (well under Azure's 16 kB): the dashboard's live shard bar reads it.
    context.set_custom_status({"attempt": number, "group": name, "since": context.current_utc_datetime.isoformat()})
    # The shared vCPU budget first: CORE_QUOTA bounds the groups of all runs together.
    if not (yield from acquire_vcpu(context, name, shard.run_id, timing, cancel, attempt, aci_retry(timing))):
        attempt.state, attempt.reason = ShardState.CANCELLED, "the run was cancelled"
        return attempt, None
    try:
        created = yield from create_group(
            context, GroupRequest(shard=shard, attempt=number, group=name, output_prefix=prefix), cancel, attempt)
        if created.cancelled:
            attempt.state, attempt.reason = ShardState.CANCELLED, "the run was cancelled"
        elif created.ok:
            attempt.billed_from = context.current_utc_datetime.isoformat()
            end: ContainerEnd = yield from wait_for_container(context, name, timing, cancel)
            attempt.state, attempt.reason = end.state, end.reason
            attempt.exit_code, attempt.started, attempt.finished = end.exit_code, end.started, end.finished
        else:
            attempt.reason, attempt.permanent = created.reason, not created.quota
    except Exception as e:  # noqa: BLE001 - every failure becomes the attempt's reason
        attempt.reason = f"container group {name}: {one_line(e)}"
    # Logs first (they vanish with the group), then delete, whatever happened above.
    try:
        attempt.logs = yield context.call_activity(
            "save_container_logs", LogsRequest(group=name, blob=naming.logs_blob(shard.run_id, shard.index, number)))
    except Exception as e:  # noqa: BLE001
        attempt.logs_error = one_line(e)
    try:
        yield context.call_activity_with_retry("delete_container_group", aci_retry(timing), name)
        attempt.deleted = True
        if attempt.billed_from is not None:
            attempt.billed_to = context.current_utc_datetime.isoformat()
        yield from release_vcpu(context, name, aci_retry(timing))  # a group not deleted keeps its vCPU
    except Exception as e:  # noqa: BLE001 - reported with the run; the orphan sweeper retries it
        attempt.deleted = False
        attempt.delete_error = f"could not delete container group {name}: {one_line(e)}"
    report: ShardReport | None = None
    if attempt.state is ShardState.EXITED:
        report = yield context.call_activity("read_shard_status", prefix)
        code = attempt.exit_code
        if report is not None and code in (EXIT_OK, EXIT_PARTIAL) and report.exit_code == code:
            attempt.state = ShardState.SUCCEEDED if code == EXIT_OK else ShardState.PARTIAL
        else:
            why = (report.error if report is not None else None) or "no status written"
            attempt.state, attempt.reason = ShardState.FAILED, f"the container exited with code {code}: {why}"
            report = None
    return attempt, report


def score_shard(context: df.DurableOrchestrationContext):
    shard = ShardInput.from_json(context.get_input())
    # One wait for the whole shard: the SDK hands an event to the newest open wait, so a wait per poll
    # would let an abandoned one swallow the cancel.
    cancel = context.wait_for_external_event(CANCEL_EVENT)
    attempts: list[Attempt] = []
    report: ShardReport | None = None
    for number in range(1, shard.timing.shard_attempts + 1):
        attempt, report = yield from run_attempt(context, shard, number, cancel)
        attempts.append(attempt)
        if attempt.state.ok or attempt.state is ShardState.CANCELLED or attempt.permanent:
            break
    final = attempts[-1]
    # An orchestration's output must be plain JSON (SDK 1.7 json.dumps it without the custom-object hook);
    # the parent reads it back with ShardOutcome.from_json.
    return ShardOutcome(index=shard.index, state=final.state, reason=final.reason, status=report,
                        postcodes=shard.postcodes, attempts=attempts).to_json()
