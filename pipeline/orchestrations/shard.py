"""One shard: create its container group, wait for it with durable timers, keep its logs, always delete it.

A failed attempt is retried (SHARD_ATTEMPTS) in a new group; a permanent error (e.g. InaccessibleImage) is not.
Never raises: the outcome, with its reason, is the return value.
"""

from __future__ import annotations

from datetime import timedelta

import azure.durable_functions as df

from .. import naming

# Exit codes of `python -m scoring run` (scoring.worker): 0 all scored, 3 some postcodes failed.
EXIT_OK, EXIT_PARTIAL = 0, 3


def error_text(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0].strip() if text else type(e).__name__


class BackoffRetryOptions(df.RetryOptions):
    """RetryOptions whose JSON carries the backoff coefficient (SDK 1.7 sends only interval and attempts)."""

    def to_json(self) -> dict:
        return {**super().to_json(), "backoffCoefficient": self.backoff_coefficient}


def aci_retry(timing: dict) -> df.RetryOptions:
    retry = BackoffRetryOptions(int(timing["retry_interval_seconds"] * 1000), int(timing["retry_attempts"]))
    retry.backoff_coefficient = 2
    return retry


def wait_for_container(context: df.DurableOrchestrationContext, name: str, timing: dict, cancel: df.Task):
    """Poll until the container terminates, a deadline passes or the run is cancelled."""
    started_at = context.current_utc_datetime
    deadline = started_at + timedelta(minutes=timing["deadline_minutes"])
    provisioning_deadline = started_at + timedelta(minutes=timing["provisioning_deadline_minutes"])
    # Short first interval, doubling up to poll_seconds (a plan made before this setting has no first interval).
    interval = timing.get("poll_first_seconds", timing["poll_seconds"])
    while True:
        # Retried: an ARM hiccup (or the stand-in restarting) must not fail a container that is fine.
        state = yield context.call_activity_with_retry("get_container_state", aci_retry(timing), name)
        if state is None:
            return {"state": "failed", "reason": "the container group disappeared while running"}
        if state["terminated"]:
            if state["exit_code"] is None:
                return {"state": "failed", "reason": f"the container group ended {state['group_state']}: "
                                                     f"{state['detail'] or 'no detail'}"}
            return {"state": "exited", "exit_code": state["exit_code"], "started": state["start_time"],
                    "finished": state["finish_time"]}
        now = context.current_utc_datetime
        if state["state"] not in ("Running", "Terminated") and now >= provisioning_deadline:
            return {"state": "timed_out", "reason": f"the container did not start within "
                                                    f"{timing['provisioning_deadline_minutes']} min (state "
                                                    f"{state['state'] or state['group_state']}: {state['detail']})"}
        if now >= deadline:
            return {"state": "timed_out", "started": state["start_time"],
                    "reason": f"the container did not finish within {timing['deadline_minutes']} min"}
        timer = context.create_timer(min(now + timedelta(seconds=interval), deadline))
        interval = min(2 * interval, timing["poll_seconds"])
        winner = yield context.task_any([timer, cancel])
        if winner is cancel:
            timer.cancel()
            return {"state": "cancelled", "reason": "the run was cancelled"}


def create_group(context: df.DurableOrchestrationContext, spec: dict, timing: dict, cancel: df.Task, result: dict):
    """Create the group; a full quota is waited out with durable timers (counted in result["quota_waits"] as
    they happen, so the run lowers its parallelism even if a later create fails), other transient errors are
    retried by the activity retry policy. A cancel during a quota wait creates nothing."""
    while True:
        created = yield context.call_activity_with_retry("create_container_group", aci_retry(timing), spec)
        if not created.get("quota") or result["quota_waits"] >= timing["quota_waits"]:
            return created
        result["quota_waits"] += 1
        delay = timing["retry_interval_seconds"] * 2 ** min(result["quota_waits"], 6)
        timer = context.create_timer(context.current_utc_datetime + timedelta(seconds=delay))
        if (yield context.task_any([timer, cancel])) is cancel:
            timer.cancel()
            return {"ok": False, "cancelled": True}


def run_attempt(context: df.DurableOrchestrationContext, shard: dict, attempt: int, cancel: df.Task):
    timing = shard["timing"]
    name = naming.group_name(shard["run_id"], shard["index"], attempt)
    prefix = naming.staging_prefix(shard["run_id"], shard["index"], attempt)
    result = {"attempt": attempt, "group": name, "state": "failed", "reason": "", "quota_waits": 0}
    try:
        created = yield from create_group(
            context, {**shard, "attempt": attempt, "group": name, "output_prefix": prefix}, timing, cancel, result)
        if created.get("cancelled"):
            result.update(state="cancelled", reason="the run was cancelled")
        elif created["ok"]:
            result["billed_from"] = context.current_utc_datetime.isoformat()
            result.update((yield from wait_for_container(context, name, timing, cancel)))
        else:
            result.update(reason=created["reason"], permanent=not created.get("quota"))
    except Exception as e:  # noqa: BLE001 - every failure becomes the attempt's reason
        result["reason"] = f"container group {name}: {error_text(e)}"
    # Logs first (they vanish with the group), then delete, whatever happened above.
    try:
        result["logs"] = yield context.call_activity(
            "save_container_logs", {"group": name, "blob": naming.logs_blob(shard["run_id"], shard["index"], attempt)})
    except Exception as e:  # noqa: BLE001
        result["logs_error"] = error_text(e)
    try:
        yield context.call_activity_with_retry("delete_container_group", aci_retry(timing), name)
        result["deleted"] = True
        if "billed_from" in result:
            result["billed_to"] = context.current_utc_datetime.isoformat()
    except Exception as e:  # noqa: BLE001 - reported with the run; the orphan sweeper retries it
        result["deleted"] = False
        result["delete_error"] = f"could not delete container group {name}: {error_text(e)}"
    if result["state"] == "exited":
        status = yield context.call_activity("read_shard_status", prefix)
        code = result["exit_code"]
        if status is not None and code in (EXIT_OK, EXIT_PARTIAL) and status["exit_code"] == code:
            result.update(state="succeeded" if code == EXIT_OK else "partial", status=status)
        else:
            reason = (status or {}).get("error") or "no status written"
            result.update(state="failed", reason=f"the container exited with code {code}: {reason}")
    return result


def score_shard(context: df.DurableOrchestrationContext):
    shard = context.get_input()
    # One wait for the whole shard: the SDK hands an event to the newest open wait, so a wait per poll
    # would let an abandoned one swallow the cancel.
    cancel = context.wait_for_external_event("cancel")
    attempts = []
    for attempt in range(1, int(shard["timing"]["shard_attempts"]) + 1):
        result = yield from run_attempt(context, shard, attempt, cancel)
        attempts.append(result)
        if result["state"] in ("succeeded", "partial", "cancelled") or result.get("permanent"):
            break
    final = attempts[-1]
    return {"index": shard["index"], "state": final["state"], "reason": final.get("reason", ""),
            "status": final.get("status"), "postcodes": len(shard["postcodes"]),
            "attempts": [{k: v for k, v in a.items() if k != "status"} for a in attempts]}
