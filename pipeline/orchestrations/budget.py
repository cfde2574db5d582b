"""The shard's side of the shared vCPU budget (pipeline/admission.py): wait for it, give it back. No I/O."""

from __future__ import annotations

from datetime import timedelta

import azure.durable_functions as df

from ..payloads import Attempt, BudgetAnswer, BudgetRequest, Timing


def acquire_vcpu(context: df.DurableOrchestrationContext, group: str, run_id: str, timing: Timing,
                 cancel: df.Task, attempt: Attempt, retry: df.RetryOptions):
    """Wait (durable timers, backing off) until the group's vCPU fits in the budget; False if the run was
    cancelled while waiting."""
    while True:
        answer: BudgetAnswer = yield context.call_activity_with_retry(
            "acquire_vcpu", retry, BudgetRequest(holder=group, run=run_id))
        if answer.granted:
            return True
        attempt.budget_waits += 1
        # Backing off to 16 polls: many waiting shards must not keep the host and the budget blob busy.
        delay = timing.poll_seconds * 2 ** min(attempt.budget_waits - 1, 4)
        timer = context.create_timer(context.current_utc_datetime + timedelta(seconds=delay))
        if (yield context.task_any([timer, cancel])) is cancel:
            timer.cancel()
            return False


def release_vcpu(context: df.DurableOrchestrationContext, group: str, retry: df.RetryOptions):
    """Give the vCPU back once the group is deleted; if that fails, admission drops it when stale."""
    try:
        yield context.call_activity_with_retry("release_vcpu", retry, group)
    except Exception:  # noqa: BLE001 - never fails the shard
        pass
