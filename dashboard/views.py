"""The dashboard's JSON views: durable statuses, run manifests and container groups in, small JSON out.

Pure functions (no I/O), so that each view and its error cases are unit-tested without a host.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pipeline import naming, sweeper
from pipeline.aci.client import GroupSummary
from pipeline.run_status import FINISHED

RETRY_SUFFIX = re.compile(r"-retry[0-9]+$")
# The files of a run the dashboard hands out: its manifest, its results and its container logs. Nothing else
# (job specs hold blob paths only, but there is no reason to serve them), and never a path with "..".
RUN_FILE = re.compile(r"(manifest\.json|results\.csv|logs/[a-z0-9][a-z0-9-]{0,80}\.log)")


class ViewError(Exception):
    """A request the dashboard refuses: the HTTP status and a message naming the problem."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def trigger_of(run_id: str, output: dict) -> str:
    """From the run's output when it has finished; else from its id (naming.py decides ids per trigger)."""
    if output.get("trigger"):
        return str(output["trigger"])
    if RETRY_SUFFIX.search(run_id):
        return "retry"
    return {"daily": "timer", "blob": "blob", "run": "http"}.get(run_id.split("-", 1)[0], "unknown")


ENVELOPE = frozenset({"__class__", "__module__", "__data__"})


def plain(value: Any) -> dict:
    """A durable status field (input, output, custom status) as a plain dict. The SDK serialises an object
    with to_json as an envelope {"__class__", "__module__", "__data__"} (azure/functions/_durable_functions.py),
    and the status API may hand back JSON text; anything that is not a JSON object is {}."""
    if isinstance(value, str) and value:
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    if hasattr(value, "to_json") and not isinstance(value, dict):
        value = value.to_json()
    if isinstance(value, dict) and ENVELOPE <= value.keys():
        value = value["__data__"]
    return value if isinstance(value, dict) else {}


def iso(value: Any) -> str | None:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).isoformat()
    return value


def parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def run_state(runtime: str, output: dict) -> str:
    if runtime == "Completed":
        return str(output.get("state", "completed"))
    return {"Failed": "failed", "Terminated": "cancelled", "Running": "running"}.get(runtime, runtime.lower())


def run_summary(status: Any, now: datetime, request: dict | None = None) -> dict:
    """One row of the runs table, from a DurableOrchestrationStatus of score_run (and its input if read)."""
    runtime = status.runtime_status.value if status.runtime_status else "Unknown"
    output, progress = plain(status.output), plain(status.custom_status)
    request = request or {}
    created, updated = parse_time(status.created_time), parse_time(status.last_updated_time)
    end = updated if runtime in FINISHED else now
    run_id = status.instance_id
    prefix = f"runs/{run_id}/"
    cost = output.get("cost") or {}
    scored = output.get("postcodes_scored", progress.get("postcodes_scored", 0))
    n_failed = failed_count(output, progress)
    # A published run reports its publication: for a retry, the whole run it completed, not just its subset.
    total = scored + n_failed if output.get("manifest") else progress.get("postcodes_total", 0)
    return {
        "id": run_id,
        "trigger": trigger_of(run_id, output),
        "model": output.get("model") or request.get("model"),
        "version": output.get("version") or request.get("version"),
        "state": run_state(runtime, output),
        "runtimeStatus": runtime,
        "stage": progress.get("stage"),
        "started": iso(created),
        "durationSeconds": round((end - created).total_seconds(), 1) if created and end else None,
        "shards": {"total": progress.get("shards_total", 0), "done": progress.get("shards_done", 0),
                   "running": progress.get("shards_running", 0)},
        "postcodes": {"total": total, "scored": scored, "failed": n_failed},
        "costUsd": cost.get("price_usd"),
        "retryOf": output.get("retry_of") or request.get("retry_of"),
        "published": bool(output.get("manifest")),
        "files": {"manifest": prefix + "manifest.json", "results": prefix + "results.csv"}
        if output.get("manifest") else {},
        "errors": list(output.get("errors") or [])[:5],
    }


def failed_count(output: dict, progress: dict) -> int:
    """A finished run's count (runs from before slim history list their failed postcodes inline instead), else
    the running count."""
    if output.get("failures"):
        return int(output.get("postcodes_failed_count") or 0)
    if isinstance(output.get("postcodes_failed"), dict):
        return len(output["postcodes_failed"])
    return int(progress.get("postcodes_failed", 0))


def shard_bars(plan_total: int, run_id: str, shard_statuses: dict[int, Any], run_output: dict,
               now: datetime) -> list[dict]:
    """One bar per shard. A finished run's output has every shard's attempts; a running run's shards come
    from their own orchestrations (custom status: current attempt and group; input: the deadline)."""
    finished = {s["index"]: s for s in run_output.get("shards") or []}
    total = max([plan_total, *[i + 1 for i in finished], *[i + 1 for i in shard_statuses]] or [0])
    bars = []
    for index in range(total):
        status = shard_statuses.get(index)
        outcome = finished.get(index)
        if outcome is None and status is not None and plain(status.output):
            outcome = plain(status.output)
        shard_input = plain(status.input_) if status is not None else {}
        deadline = (shard_input.get("timing") or {}).get("deadline_minutes")
        if outcome is not None:
            attempts = [_attempt_view(run_id, index, a, now) for a in outcome.get("attempts") or []]
            state, reason = outcome.get("state", "unknown"), outcome.get("reason", "")
        elif status is not None:
            live = plain(status.custom_status)
            attempts = [_attempt_view(run_id, index, live, now)] if live.get("group") else []
            state, reason = ("running" if status.runtime_status and status.runtime_status.value == "Running"
                             else (status.runtime_status.value.lower() if status.runtime_status else "pending")), ""
        else:
            attempts, state, reason = [], "pending", ""
        bars.append({"index": index, "state": state, "reason": reason, "attempts": attempts,
                     "deadlineMinutes": deadline, "instance": naming.shard_instance_id(run_id, index)})
    return bars


def _attempt_view(run_id: str, index: int, attempt: dict, now: datetime) -> dict:
    number = int(attempt.get("attempt") or 1)
    started = parse_time(attempt.get("started") or attempt.get("billed_from") or attempt.get("since"))
    finished = parse_time(attempt.get("finished") or attempt.get("billed_to"))
    elapsed = ((finished or now) - started).total_seconds() if started else None
    logs = attempt.get("logs")
    return {"attempt": number, "group": attempt.get("group"), "state": attempt.get("state", "running"),
            "exitCode": attempt.get("exit_code"), "reason": attempt.get("reason", ""),
            "started": iso(started), "finished": iso(finished),
            "elapsedSeconds": round(elapsed, 1) if elapsed is not None else None,
            "deleted": attempt.get("deleted"),
            # The kept log is a run file (logs/...); only offered once the shard saved it.
            "log": naming.logs_blob(run_id, index, number).removeprefix(naming.run_prefix(run_id)) if logs else None}


@dataclass(frozen=True)
class GroupView:
    name: str
    run: str | None
    shard: int | None
    age_minutes: float | None
    state: str | None
    active: bool | None  # None: the run's status could not be read

    def to_json(self, ttl_minutes: float) -> dict:
        orphan = self.active is False
        return {"name": self.name, "run": self.run, "shard": self.shard, "ageMinutes": self.age_minutes,
                "state": self.state, "orphan": orphan,
                # the sweeper deletes an orphan once it is older than the TTL
                "sweptAfterMinutes": ttl_minutes if orphan else None}


def group_view(group: GroupSummary, active: bool | None, now: datetime) -> GroupView:
    created = sweeper.created_at(group.tags)
    age = round((now - created).total_seconds() / 60, 1) if created else None
    return GroupView(group.name, sweeper.run_of(group.tags), sweeper.shard_of(group.tags), age,
                     group.provisioning_state, active)


def cost_view(runs: list[dict], now: datetime, days: int = 30) -> dict:
    """Per run, and summed over the last `days` days by day (UTC) of the run's start."""
    since = now - timedelta(days=days)
    by_day: dict[date, float] = {}
    priced = []
    for run in runs:
        started = parse_time(run.get("started"))
        if started is None or started < since or run.get("costUsd") is None:
            continue
        by_day[started.date()] = by_day.get(started.date(), 0.0) + float(run["costUsd"])
        priced.append({"id": run["id"], "started": run["started"], "costUsd": run["costUsd"]})
    first = (now - timedelta(days=days - 1)).date()
    daily = [{"day": (first + timedelta(days=i)).isoformat(),
              "costUsd": round(by_day.get(first + timedelta(days=i), 0.0), 6)} for i in range(days)]
    return {"days": days, "totalUsd": round(sum(by_day.values()), 6), "runs": priced, "daily": daily,
            "note": "ACI container time at ACI_PRICE_PER_* rates; Functions and Storage are not included"}


def forecast_view(run_id: str, postcode: str, rows: list[dict], actuals: dict[str, float],
                  accuracy: dict | None) -> dict:
    """Columns for a plot: dates, volume, the 80/95% bands (null where the model gives none), actuals."""
    def num(value: str | None) -> float | None:
        try:
            return float(value) if value not in (None, "", "NA") else None
        except ValueError:
            return None

    rows = sorted(rows, key=lambda r: r["date"])
    dates = [r["date"] for r in rows]
    view = {"run": run_id, "postcode": postcode, "dates": dates,
            "model": rows[0].get("model") if rows else None, "version": rows[0].get("model_version") if rows else None}
    for column in ("volume", "lower_80", "upper_80", "lower_95", "upper_95"):
        view[column] = [num(r.get(column)) for r in rows]
    view["actual"] = [actuals.get(d) for d in dates] if actuals else None
    view["accuracy"] = accuracy
    return view


def check_run_id(run_id: str) -> str:
    if not naming.is_run_id(run_id):
        raise ViewError(400, f"{run_id!r} is not a run id (lowercase letters, digits and '-')")
    return run_id


def check_run_file(path: str) -> str:
    if not RUN_FILE.fullmatch(path):
        raise ViewError(404, f"{path!r} is not a file the dashboard serves (manifest.json, results.csv, logs/*.log)")
    return path
