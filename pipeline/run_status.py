"""The run view served by GET /api/runs[/{id}]: durable status in, a stable JSON shape out."""

from __future__ import annotations

from typing import Any

RUN_ORCHESTRATOR = "score_run"
FINISHED = {"Completed", "Failed", "Terminated"}


def run_view(status: Any) -> dict:
    """From a DurableOrchestrationStatus of score_run."""
    runtime = status.runtime_status.value if status.runtime_status else "Unknown"
    output = status.output if isinstance(status.output, dict) else {}
    if runtime == "Completed":
        state = output.get("state", "completed")
    elif runtime == "Failed":
        state = "failed"
    elif runtime == "Terminated":
        state = "cancelled"
    else:
        state = "running" if runtime == "Running" else runtime.lower()
    errors = list(output.get("errors", []))
    if runtime == "Failed" and not errors:
        errors = [str(status.output or "the orchestration failed")]
    view = {
        "id": status.instance_id,
        "state": state,
        "runtimeStatus": runtime,
        "created": _iso(status.created_time),
        "updated": _iso(status.last_updated_time),
        "progress": status.custom_status if isinstance(status.custom_status, dict) else {},
        "errors": errors,
    }
    for key in ("model", "version", "trigger", "input", "results", "manifest", "rows", "postcodes_scored",
                "postcodes_failed", "shards", "cleanup_errors"):
        if key in output:
            view[key] = output[key]
    return view


def _iso(value: Any) -> str | None:
    return value.isoformat() if hasattr(value, "isoformat") else value
