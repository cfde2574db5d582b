"""A scoring run: plan, fan out one sub-orchestration per shard (bounded), publish. No I/O here."""

from __future__ import annotations

import azure.durable_functions as df

from scoring.errors import one_line

from .. import naming
from ..payloads import (
    CANCEL_EVENT,
    FailuresWritten,
    PlanRequest,
    Progress,
    Publication,
    Published,
    PublishFailed,
    RunPlan,
    RunRequest,
    RunResult,
    RunState,
    ShardOutcome,
    ShardRef,
    ShardState,
    ShardSummary,
    Stage,
)
from .shard import aci_retry

SHARD_ORCHESTRATOR = "score_shard"


def fan_out(context: df.DurableOrchestrationContext, plan: RunPlan, progress: Progress, cancel: df.Task):
    """At most plan.parallel_groups shards at once, one fewer after each shard that met a full ACI quota;
    a 'cancel' event stops new ones and is forwarded to the running ones. A cancel that came during planning
    starts none."""
    limit = plan.parallel_groups
    pending = list(plan.shards)
    running: dict[str, tuple[ShardRef, df.Task]] = {}  # instance id -> (shard, its sub-orchestration)
    outcomes: list[ShardOutcome] = []
    cancelled = cancel.is_completed
    while pending or running:
        while pending and not cancelled and len(running) < limit:
            shard = pending.pop(0)
            instance_id = naming.shard_instance_id(plan.run_id, shard.index)
            task = context.call_sub_orchestrator(SHARD_ORCHESTRATOR, plan.shard_input(shard), instance_id)
            running[instance_id] = (shard, task)
        if not running:
            break
        progress.shards_running = len(running)
        context.set_custom_status(progress)
        tasks = [task for _, task in running.values()]
        winner = yield context.task_any(tasks + ([] if cancelled else [cancel]))
        if winner is cancel:
            cancelled = True
            progress.stage = Stage.CANCELLING
            try:
                yield context.call_activity("request_shard_cancel", sorted(running))
            except Exception:  # noqa: BLE001 - shards still finish on their deadlines and delete their groups
                pass
            continue
        instance_id, (shard, _) = next((i, entry) for i, entry in running.items() if entry[1] is winner)
        del running[instance_id]
        if isinstance(winner.result, Exception):  # the sub-orchestration itself failed
            outcome = ShardOutcome(index=shard.index, state=ShardState.FAILED, reason=one_line(winner.result),
                                   postcodes=shard.size)
        else:
            outcome = ShardOutcome.from_json(winner.result)
        outcomes.append(outcome)
        if any(a.quota_waits for a in outcome.attempts):
            limit = max(1, limit - 1)
            progress.parallel_groups = limit
        progress.shards_done += 1
        if outcome.status is not None:
            progress.postcodes_scored += outcome.status.scored
            progress.postcodes_failed += outcome.status.failed
    for shard in pending:  # never started: the run was cancelled first
        outcomes.append(ShardOutcome(index=shard.index, state=ShardState.CANCELLED, reason="the run was cancelled",
                                     postcodes=shard.size))
    return sorted(outcomes, key=lambda o: o.index), cancelled


def failed_count(plan: RunPlan, outcomes: list[ShardOutcome]) -> int:
    """How many postcodes were not scored: the plan's, those each shard reported, every one of a failed shard.
    (Which ones, and why, is gathered from blobs by publish_run or record_failures: pipeline/failures.py.)"""
    sizes = {s.index: s.size for s in plan.shards}
    return plan.failed + sum(o.status.failed if o.state.ok and o.status is not None else sizes[o.index]
                             for o in outcomes)


def record_failures(context: df.DurableOrchestrationContext, plan: RunPlan, outcomes: list[ShardOutcome],
                    result: RunResult):
    """A run that publishes nothing still keeps its failed postcodes, with reasons, where its routes read them."""
    try:
        written: FailuresWritten = yield context.call_activity_with_retry(
            "record_failures", aci_retry(plan.timing), Publication(plan=plan, shards=outcomes))
    except Exception as e:  # noqa: BLE001 - the run's outcome stands; only the list of reasons is lost
        result.errors = result.errors + [f"failures not recorded: {one_line(e)}"]
        return
    result.failures, result.postcodes_failed_count = written.failures, written.count


def score_run(context: df.DurableOrchestrationContext):
    request = RunRequest.from_json(context.get_input())
    run_id = context.instance_id
    progress = Progress()
    context.set_custom_status(progress)
    result = RunResult(run_id=run_id, model=request.model, trigger=request.trigger, retry_of=request.retry_of)
    # Raced against the plan: a cancel raised while the plan is being made ends the run before any group.
    # (The SDK completes a wait only once it has been yielded, so the wait must be part of this yield.)
    cancel = context.wait_for_external_event(CANCEL_EVENT)
    today = context.current_utc_datetime.date().isoformat()
    planning = context.call_activity("plan_run", PlanRequest(request=request, run_id=run_id, today=today,
                                                             started=context.current_utc_datetime.isoformat()))
    winner = yield context.task_any([planning, cancel])
    if winner is cancel:
        progress.stage = Stage.DONE
        context.set_custom_status(progress)
        result.state, result.errors = RunState.CANCELLED, ["cancelled while planning: no container group created"]
        return result.to_json()
    if isinstance(planning.result, Exception):  # a plan that cannot be made ends the run, with its reason
        progress.stage = Stage.DONE
        context.set_custom_status(progress)
        result.errors = [f"plan: {one_line(planning.result)}"]
        return result.to_json()
    plan: RunPlan = planning.result
    result.version, result.input, result.shards_total = plan.version, plan.input, len(plan.shards)
    result.warnings = plan.warnings or None  # e.g. time-series dates assumed (model_checks)
    progress.stage, progress.shards_total = Stage.SCORING, len(plan.shards)
    progress.postcodes_total, progress.postcodes_failed = plan.postcodes_total, plan.failed

    outcomes, cancelled = yield from fan_out(context, plan, progress, cancel)
    failed = failed_count(plan, outcomes)
    result.shards = [ShardSummary(index=o.index, state=o.state, reason=o.reason, attempts=o.attempts)
                     for o in outcomes]
    result.errors = [f"shard {o.index}: {o.reason}" for o in outcomes if not o.state.ok]
    # Never silently dropped: reported with the run (publishing still goes ahead); the sweeper retries them.
    result.cleanup_errors = [a.delete_error for o in outcomes for a in o.attempts if a.delete_error]
    result.postcodes_failed_count, result.postcodes_scored = failed, plan.postcodes_total - failed

    # One failed shard does not sink the run: what succeeded is published, the rest listed with reasons.
    if cancelled or not any(o.state.ok for o in outcomes):
        progress.stage, progress.shards_running = Stage.DONE, 0
        context.set_custom_status(progress)
        result.state = RunState.CANCELLED if cancelled else RunState.FAILED
        yield from record_failures(context, plan, outcomes, result)
        return result.to_json()

    progress.stage, progress.shards_running = Stage.PUBLISHING, 0
    context.set_custom_status(progress)
    try:
        published: Published | PublishFailed = yield context.call_activity_with_retry(
            "publish_run", aci_retry(plan.timing), Publication(plan=plan, shards=outcomes))
    except Exception as e:  # noqa: BLE001
        published = PublishFailed(error=one_line(e))
    if isinstance(published, PublishFailed):  # permanent (returned at once) or transient ones retried to the end
        progress.stage = Stage.DONE
        context.set_custom_status(progress)
        result.state, result.errors = RunState.FAILED, result.errors + [f"publish: {published.error}"]
        yield from record_failures(context, plan, outcomes, result)
        return result.to_json()
    progress.stage = Stage.DONE
    context.set_custom_status(progress)
    result.state, result.results, result.manifest = published.state, published.results, published.manifest
    result.rows, result.postcodes_scored = published.rows, published.postcodes_scored
    result.postcodes_failed_count, result.failures = published.postcodes_failed_count, published.failures
    result.cost = published.cost
    return result.to_json()
