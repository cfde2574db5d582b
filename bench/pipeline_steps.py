"""Where the local pipeline's time goes: per-step times of one run, read from the dev host's durable history.

The dev host keeps each orchestration's history (the events the Durable SDK replays) in SQLite; activity
TaskScheduled/TaskCompleted timestamps and the container's own start/finish times (from the run's output)
give each step. Benchmark tooling only: it reads the dev host's state, never production code's.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from azure.durable_functions.models.history import HistoryEventType

from pipeline.payloads import RunResult, decode

STEPS = ("http_start", "plan", "create", "container_start", "first_poll", "worker", "exit_seen", "logs", "delete",
         "status", "publish", "done_seen")


def _ts(text: str) -> float:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _activities(db: sqlite3.Connection, instance_id: str) -> list[tuple[str, float, float]]:
    """(name, scheduled, completed) of each activity call, in order of scheduling."""
    scheduled: dict[int, tuple[str, float]] = {}
    done: list[tuple[str, float, float]] = []
    for (text,) in db.execute("SELECT event FROM history WHERE instance_id = ? ORDER BY seq", (instance_id,)):
        event = json.loads(text)
        kind = event["EventType"]
        if kind == HistoryEventType.TASK_SCHEDULED:
            scheduled[event["EventId"]] = (event["Name"], _ts(event["Timestamp"]))
        elif kind in (HistoryEventType.TASK_COMPLETED, HistoryEventType.TASK_FAILED):
            name, start = scheduled.pop(event["TaskScheduledId"])
            done.append((name, start, _ts(event["Timestamp"])))
    return sorted(done, key=lambda a: a[1])


def pipeline_steps(state_dir: Path, run_id: str, posted: float, seen: float) -> dict[str, float]:
    """Seconds per step of a one-shard run: `posted` is when the HTTP start was sent, `seen` when the client
    saw the run finished (both time.time())."""
    db = sqlite3.connect(f"file:{state_dir / 'durable.sqlite'}?mode=ro", uri=True)
    try:
        run = _activities(db, run_id)
        shard_id = f"{run_id}:shard-000"
        shard = _activities(db, shard_id)
        (started,) = db.execute("SELECT created_time FROM instances WHERE instance_id = ?", (run_id,)).fetchone()
        (output,) = db.execute("SELECT output FROM instances WHERE instance_id = ?", (run_id,)).fetchone()
        (finished,) = db.execute("SELECT last_updated_time FROM instances WHERE instance_id = ?",
                                 (run_id,)).fetchone()
    finally:
        db.close()
    first = {}
    for name, start, end in run + shard:
        first.setdefault(name, (start, end))
    polls = [a for a in shard if a[0] == "get_container_state"]
    attempt = decode(output, RunResult).shards[0].attempts[0]
    container_start, container_end = _ts(attempt.started), _ts(attempt.finished)
    created = first["create_container_group"][1]
    steps = {
        "http_start": _ts(started) - posted,
        "plan": first["plan_run"][1] - first["plan_run"][0],
        "create": created - first["create_container_group"][0],
        "container_start": container_start - created,
        "first_poll": polls[0][2] - created,
        "worker": container_end - container_start,
        "exit_seen": polls[-1][2] - container_end,
        "logs": first["save_container_logs"][1] - first["save_container_logs"][0],
        "delete": first["delete_container_group"][1] - first["delete_container_group"][0],
        "status": first["read_shard_status"][1] - first["read_shard_status"][0],
        "publish": first["publish_run"][1] - first["publish_run"][0],
        "done_seen": seen - _ts(finished),
        "polls": float(len(polls)),
    }
    return steps
