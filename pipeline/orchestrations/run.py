"""A scoring run: plan, fan out one sub-orchestration per shard (bounded), publish. No I/O here."""

from __future__ import annotations

import azure.durable_functions as df

from .. import naming
from .shard import aci_retry, error_text

OK_SHARD_STATES = ("succeeded", "partial")


def shard_input(plan: dict, shard: dict) -> dict:
    return {"run_id": plan["run_id"], "index": shard["index"], "postcodes": shard["postcodes"],
            "model": plan["model"], "version": plan["version"], "input": plan["input"],
            "horizon": plan["horizon"], "timing": plan["timing"]}


def fan_out(context: df.DurableOrchestrationContext, plan: dict, progress: dict):
    """At most plan["parallel_groups"] shards at once, one fewer after each shard that met a full ACI quota;
    a 'cancel' event stops new ones and is forwarded to the running ones."""
    limit = plan["parallel_groups"]
    pending = list(plan["shards"])
    running: dict[str, df.Task] = {}
    outcomes: list[dict] = []
    cancel = context.wait_for_external_event("cancel")
    cancelled = False
    while pending or running:
        while pending and not cancelled and len(running) < limit:
            shard = pending.pop(0)
            instance_id = naming.shard_instance_id(plan["run_id"], shard["index"])
            running[instance_id] = context.call_sub_orchestrator("score_shard", shard_input(plan, shard), instance_id)
        if not running:
            break
        progress["shards_running"] = len(running)
        context.set_custom_status(progress)
        winner = yield context.task_any(list(running.values()) + ([] if cancelled else [cancel]))
        if winner is cancel:
            cancelled = True
            progress["stage"] = "cancelling"
            try:
                yield context.call_activity("request_shard_cancel", sorted(running))
            except Exception:  # noqa: BLE001 - shards still finish on their deadlines and delete their groups
                pass
            continue
        instance_id = next(i for i, task in running.items() if task is winner)
        del running[instance_id]
        outcome = winner.result if not isinstance(winner.result, Exception) else {
            "index": int(instance_id.rsplit("-", 1)[1]), "state": "failed", "reason": error_text(winner.result),
            "status": None, "attempts": []}
        outcomes.append(outcome)
        if any(a.get("quota_waits") for a in outcome["attempts"]):
            limit = max(1, limit - 1)
            progress["parallel_groups"] = limit
        status = outcome.get("status") or {}
        progress["shards_done"] += 1
        progress["postcodes_scored"] += len(status.get("scored") or [])
        progress["postcodes_failed"] += len(status.get("failed") or {})
    for shard in pending:  # never started: the run was cancelled first
        outcomes.append({"index": shard["index"], "state": "cancelled", "reason": "the run was cancelled",
                         "status": None, "attempts": []})
    return sorted(outcomes, key=lambda o: o["index"]), cancelled


def failed_postcodes(plan: dict, outcomes: list[dict]) -> dict[str, str]:
    failed = dict(plan["failed"])
    for outcome, shard in zip(outcomes, plan["shards"], strict=True):
        if outcome["state"] in OK_SHARD_STATES:
            failed.update(outcome["status"]["failed"])
        else:
            failed.update({pc: f"shard {shard['index']} {outcome['state']}: {outcome['reason']}"
                           for pc in shard["postcodes"]})
    return failed


def score_run(context: df.DurableOrchestrationContext):
    request = context.get_input()
    run_id = context.instance_id
    progress = {"stage": "planning", "shards_total": 0, "shards_done": 0, "shards_running": 0,
                "postcodes_total": 0, "postcodes_scored": 0, "postcodes_failed": 0}
    context.set_custom_status(progress)
    result = {"run_id": run_id, "model": request["model"], "trigger": request["trigger"], "errors": [],
              "retry_of": request.get("retry_of")}
    try:
        today = context.current_utc_datetime.date().isoformat()
        plan = yield context.call_activity("plan_run", {"request": request, "run_id": run_id, "today": today})
    except Exception as e:  # noqa: BLE001 - a plan that cannot be made ends the run, with its reason
        progress["stage"] = "done"
        context.set_custom_status(progress)
        return {**result, "state": "failed", "errors": [f"plan: {error_text(e)}"]}
    result.update(version=plan["version"], input=plan["input"], shards_total=len(plan["shards"]))
    progress.update(stage="scoring", shards_total=len(plan["shards"]), postcodes_total=plan["postcodes_total"],
                    postcodes_failed=len(plan["failed"]))

    outcomes, cancelled = yield from fan_out(context, plan, progress)
    failed = failed_postcodes(plan, outcomes)
    result["shards"] = [{k: o.get(k) for k in ("index", "state", "reason", "attempts")} for o in outcomes]
    result["errors"] = [f"shard {o['index']}: {o['reason']}" for o in outcomes if o["state"] not in OK_SHARD_STATES]
    # Never silently dropped: reported with the run (publishing still goes ahead); the sweeper retries them.
    result["cleanup_errors"] = [a["delete_error"] for o in outcomes for a in o["attempts"] if a.get("delete_error")]
    result.update(postcodes_failed=failed, postcodes_scored=plan["postcodes_total"] - len(failed))

    # One failed shard does not sink the run: what succeeded is published, the rest listed with reasons.
    if cancelled or not any(o["state"] in OK_SHARD_STATES for o in outcomes):
        progress.update(stage="done", shards_running=0)
        context.set_custom_status(progress)
        return {**result, "state": "cancelled" if cancelled else "failed"}

    progress.update(stage="publishing", shards_running=0)
    context.set_custom_status(progress)
    try:
        published = yield context.call_activity_with_retry(
            "publish_run", aci_retry(plan["timing"]), {"plan": plan, "shards": outcomes, "failed": failed})
    except Exception as e:  # noqa: BLE001
        progress["stage"] = "done"
        context.set_custom_status(progress)
        return {**result, "state": "failed", "errors": result["errors"] + [f"publish: {error_text(e)}"]}
    progress["stage"] = "done"
    context.set_custom_status(progress)
    return {**result, **published}
