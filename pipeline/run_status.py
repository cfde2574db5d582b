"""The run view served by GET /api/runs[/{id}]: durable status in, a stable JSON shape out."""

from __future__ import annotations

from typing import Any

from azure.durable_functions import OrchestrationRuntimeStatus

from scoring.timestamps import iso_or_none

from .payloads import PayloadError, Progress, RunResult, RunState, decode

RUN_ORCHESTRATOR = "score_run"
FINISHED = frozenset({OrchestrationRuntimeStatus.Completed.value, OrchestrationRuntimeStatus.Failed.value,
                      OrchestrationRuntimeStatus.Terminated.value})
# What the view shows of a run's result, when the run has it.
RESULT_FIELDS = ("model", "version", "trigger", "input", "results", "manifest", "failures", "rows",
                 "postcodes_scored", "shards", "cleanup_errors", "warnings")
FAILED_IN_VIEW = 100  # failed postcodes listed in the view; all of them at failures_url


def run_result(status: Any) -> RunResult | None:
    """The score_run output of a DurableOrchestrationStatus, when it completed with one."""
    if status.runtime_status != OrchestrationRuntimeStatus.Completed or status.output is None:
        return None
    return decode(status.output, RunResult)


def run_progress(status: Any) -> Progress | None:
    """The run's custom status (set by score_run), or None before the first one."""
    if not status.custom_status:
        return None
    try:
        return decode(status.custom_status, Progress)
    except PayloadError:
        return None


def run_view(status: Any, failures: dict[str, str] | None = None, base_url: str = "") -> dict:
    """From a DurableOrchestrationStatus of score_run. `failures`: the run's failed postcodes as read from its
    failures blob (pipeline/failures.py), of which the view lists the first FAILED_IN_VIEW; without them (the
    run list) it gives the count and the route that lists them all."""
    runtime = status.runtime_status.value if status.runtime_status else "Unknown"
    try:
        result = run_result(status)
    except PayloadError as e:  # not a result this code wrote: show the run, say why its result is missing
        result = None
        unreadable = f"the run's result cannot be read: {e}"
    else:
        unreadable = ""
    output = result.to_json() if result is not None else {}
    if result is not None:
        state = result.state.value
    elif runtime == OrchestrationRuntimeStatus.Failed.value:
        state = RunState.FAILED.value
    elif runtime == OrchestrationRuntimeStatus.Terminated.value:
        state = RunState.CANCELLED.value
    elif runtime == OrchestrationRuntimeStatus.Running.value:
        state = RunState.RUNNING.value
    else:
        state = runtime.lower()
    errors = list(output.get("errors", [])) + ([unreadable] if unreadable else [])
    if runtime == OrchestrationRuntimeStatus.Failed.value and not errors:
        # The first line: the SDK's failure output may carry a stack trace.
        errors = [(str(status.output or "").strip().splitlines() or ["the orchestration failed"])[0]]
    progress = run_progress(status)
    view = {
        "id": status.instance_id,
        "state": state,
        "runtimeStatus": runtime,
        "created": iso_or_none(status.created_time),
        "updated": iso_or_none(status.last_updated_time),
        # Unset fields (parallel_groups until a full quota lowers it) are left out, as before payloads were typed.
        "progress": {k: v for k, v in progress.to_json().items() if v is not None} if progress is not None else {},
        "errors": errors,
    }
    view.update({key: output[key] for key in RESULT_FIELDS if output.get(key) is not None})
    if result is not None:
        # Runs from before slim history carry their failed postcodes inline; newer ones a count and a blob.
        inline = not result.failures
        shown = result.postcodes_failed if inline else failures
        view["postcodes_failed_count"] = len(result.postcodes_failed) if inline else result.postcodes_failed_count
        if shown is not None:
            view["postcodes_failed"] = {pc: shown[pc] for pc in sorted(shown)[:FAILED_IN_VIEW]}
        view["failures_url"] = f"{base_url}/api/runs/{status.instance_id}/failures"
    return view
