"""Admission control: a vCPU budget shared by every shard of every run, so CORE_QUOTA really bounds what
runs at once, whatever the number of runs.

Why a blob and not a durable entity: the entity API is what Azure would offer, but the local Durable host
does not implement entities (its durable API answers 501), and everything here must run the same code
locally and in Azure. A single JSON blob updated by read-modify-write with If-Match (optimistic
concurrency, Blob service "conditional headers") is correct under concurrency: of two writers that read
the same version, one write fails with 412 and that writer reads again, so the holders never add up to
more than the quota. No lease is needed: a lease would only serialise writers that ETags already order.

    results/admission/vcpu.json   {"holders": {"<group>": {"cpu": 2.0, "run": "<run>", "since": "<iso>"}}}

A shard acquires its group's vCPU before creating the group and releases it after deleting it. A holder
that never released (its orchestration lost) is dropped once older than any shard can hold it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import azure.durable_functions as df

from scoring.blobstore import BlobChanged, BlobStore

from .payloads import BudgetAnswer
from .run_status import RUN_ORCHESTRATOR
from .settings import Settings

BUDGET_BLOB = "admission/vcpu.json"
WRITE_ATTEMPTS = 20


class BudgetContention(RuntimeError):
    """Too many concurrent writers in a row: transient, the activity is retried."""


def stale_after(settings: Settings) -> timedelta:
    """Longer than a shard can hold its vCPU: provisioning plus running to its deadline, twice over."""
    return timedelta(minutes=2 * (settings.provisioning_deadline_minutes + settings.shard_deadline_minutes) + 10)


def _update(blobs: BlobStore, settings: Settings, change):
    """Apply change(holders) -> result under If-Match until it sticks; returns change's result."""
    container = settings.results_container
    for _ in range(WRITE_ATTEMPTS):
        found = blobs.read_json_versioned(container, BUDGET_BLOB)
        value, etag = found if found else ({"holders": {}}, None)
        holders = dict(value.get("holders") or {})
        cutoff = (datetime.now(UTC) - stale_after(settings)).isoformat()
        holders = {k: v for k, v in holders.items() if v.get("since", "") >= cutoff}
        result, changed = change(holders)
        if not changed:
            return result
        try:
            blobs.write_json_if(container, BUDGET_BLOB, {"holders": holders}, etag)
            return result
        except BlobChanged:
            continue
    raise BudgetContention(f"{container}/{BUDGET_BLOB} changed {WRITE_ATTEMPTS} times in a row")


def acquire(blobs: BlobStore, settings: Settings, holder: str, run_id: str) -> BudgetAnswer:
    """Reserve CONTAINER_CPU vCPU for `holder` (a container group) if it fits in CORE_QUOTA."""
    cpu = settings.container_cpu

    def change(holders: dict) -> tuple[BudgetAnswer, bool]:
        in_use = sum(float(h.get("cpu", 0)) for h in holders.values())
        if holder in holders:  # the activity is being retried after it wrote
            return BudgetAnswer(granted=True, in_use=in_use, quota=settings.core_quota), False
        if in_use + cpu > settings.core_quota:
            return BudgetAnswer(granted=False, in_use=in_use, quota=settings.core_quota), False
        holders[holder] = {"cpu": cpu, "run": run_id, "since": datetime.now(UTC).isoformat()}
        return BudgetAnswer(granted=True, in_use=in_use + cpu, quota=settings.core_quota), True

    return _update(blobs, settings, change)


def release(blobs: BlobStore, settings: Settings, holder: str) -> bool:
    def change(holders: dict) -> tuple[bool, bool]:
        if holder not in holders:
            return False, False
        del holders[holder]
        return True, True

    return _update(blobs, settings, change)


async def active_runs(client: df.DurableOrchestrationClient) -> int:
    """Runs pending or running now (retries included), for the MAX_ACTIVE_RUNS cap at the door. The cap
    bounds the queue of waiting runs; what runs at once is bounded by the vCPU budget above."""
    statuses = await client.get_status_by(runtime_status=[df.OrchestrationRuntimeStatus.Pending,
                                                          df.OrchestrationRuntimeStatus.Running])
    return sum(1 for s in statuses if s.name == RUN_ORCHESTRATOR)


def retry_after_seconds(settings: Settings) -> int:
    """A hint for a refused client: about one poll of a running shard, at least a few seconds."""
    return max(5, int(settings.poll_interval_seconds * 3))
