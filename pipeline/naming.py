"""Run ids, container group names and blob paths of a run: derived, never taken from users as-is.

Run ids are also durable instance ids and the stem of ARM names, so they use only [a-z0-9-].
"""

from __future__ import annotations

import hashlib
import re
from datetime import date

RUN_ID = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
MAX_RUN_ID = 55  # + "-s000-a2" stays within ACI's 63 characters


def daily_run_id(model: str, day: date) -> str:
    """One id per model and day: a timer that fires twice, or catches up, starts one run."""
    return f"daily-{model}-{day.isoformat()}"


def blob_run_id(blob_name: str, etag: str) -> str:
    """One id per blob version: a blob event delivered twice starts one run."""
    return "blob-" + hashlib.sha256(f"{blob_name}\n{etag}".encode()).hexdigest()[:20]


def adhoc_run_id(guid: str) -> str:
    return "run-" + guid.replace("-", "")[:20].lower()


def retry_run_id(run_id: str, n: int) -> str:
    return f"{run_id}-retry{n}"


def is_run_id(value: str) -> bool:
    return len(value) <= MAX_RUN_ID and bool(RUN_ID.fullmatch(value))


def group_name(run_id: str, shard: int, attempt: int = 1) -> str:
    """ACI names: 1-63 lowercase letters, digits and single '-', alphanumeric at both ends."""
    name = f"{run_id}-s{shard:03d}" + (f"-a{attempt}" if attempt > 1 else "")
    assert len(name) <= 63 and RUN_ID.fullmatch(name), name
    return name


def shard_instance_id(run_id: str, shard: int) -> str:
    return f"{run_id}:shard-{shard:03d}"


def run_prefix(run_id: str) -> str:
    return f"runs/{run_id}/"


def staging_prefix(run_id: str, shard: int, attempt: int = 1) -> str:
    """One attempt's folder in STAGING_CONTAINER: its job spec, and what its container writes."""
    return f"{run_id}/shard-{shard:03d}-a{attempt}/"


def job_blob(run_id: str, shard: int, attempt: int = 1) -> str:
    """In STAGING_CONTAINER, where the worker reads it with its own identity."""
    return staging_prefix(run_id, shard, attempt) + "job.json"


def logs_blob(run_id: str, shard: int, attempt: int = 1) -> str:
    return f"{run_prefix(run_id)}logs/shard-{shard:03d}-a{attempt}.log"


def plan_blob(run_id: str) -> str:
    """In RESULTS_CONTAINER: the run's full plan (every shard's postcodes, plan-time failures with reasons)."""
    return f"{run_prefix(run_id)}plan/plan.json"


def plan_shard_blob(run_id: str, shard: int) -> str:
    """In RESULTS_CONTAINER: one shard's postcodes, read when its container group is created."""
    return f"{run_prefix(run_id)}plan/shard-{shard:03d}.json"


def failures_blob(run_id: str) -> str:
    """In RESULTS_CONTAINER: the failed postcodes of a run that published nothing (a published run's are in
    its revision, pipeline/revisions.py)."""
    return f"{run_prefix(run_id)}failures.json"


def latest_pointer(model: str) -> str:
    return f"latest/{model}.json"
