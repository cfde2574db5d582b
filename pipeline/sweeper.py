"""The orphan sweeper: delete container groups that a run should have deleted but did not.

Every scoring run deletes its groups, but a crash, a lost delete or a bug can leave one behind, billing and
holding quota. A group of this app (tag app=r-scoring) is an orphan when it is older than the TTL and
neither its run nor its shard orchestration is still active. Its logs are kept first (ACI keeps them only
while the group exists), then it is deleted. A delete that fails is reported and retried at the next sweep.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.durable_functions import OrchestrationRuntimeStatus

from scoring.blobstore import BlobStore
from scoring.errors import typed_one_line
from scoring.secrets import scrub
from scoring.timestamps import SECONDS_FORMAT

from . import naming
from .aci.client import ContainerGroups, GroupSummary
from .aci.spec import APP_TAG

CREATED_FORMAT = SECONDS_FORMAT  # as written by activities.create_container_group
# A `created` tag further in the future than this is not a clock difference: it is treated as unreadable,
# so that a wrong tag cannot keep a group alive forever.
MAX_CLOCK_SKEW = timedelta(minutes=10)
# Durable runtime statuses of an orchestration that may still use (and will itself delete) its groups.
# Suspended and ContinuedAsNew are included: deleting the group of a live orchestration would break it.
ACTIVE_STATUSES = frozenset(s.value for s in (OrchestrationRuntimeStatus.Pending, OrchestrationRuntimeStatus.Running,
                                               OrchestrationRuntimeStatus.Suspended,
                                               OrchestrationRuntimeStatus.ContinuedAsNew))



class SweepAction(enum.StrEnum):
    """What the sweep did with one group."""

    KEPT_YOUNG = "kept_young"  # younger than the TTL
    KEPT_ACTIVE = "kept_active"  # its run (or shard) orchestration is still active
    KEPT_UNKNOWN = "kept_unknown"  # the run's status could not be read: not deleted this time
    DELETED = "deleted"
    ALREADY_GONE = "already_gone"  # deleted meanwhile (e.g. by its run, or an overlapping sweep)
    DELETE_FAILED = "delete_failed"  # still there: retried at the next sweep


@dataclass(frozen=True)
class SweepResult:
    group: str
    run: str | None  # the run tag, when it is a valid run id
    action: SweepAction
    age_minutes: float | None = None  # None: no readable `created` tag
    logs: str | None = None  # container/blob the logs were saved to
    logs_error: str | None = None  # the logs could not be saved (the group is deleted anyway)
    error: str | None = None  # why the status check or the delete failed

    @property
    def level(self) -> int:
        """The log level of this result's summary line."""
        if self.action == SweepAction.DELETE_FAILED:
            return logging.ERROR
        return logging.WARNING if self.action == SweepAction.KEPT_UNKNOWN or self.logs_error else logging.INFO

    def summary(self) -> str:
        """One line naming the group and what happened to it."""
        age = "unknown age" if self.age_minutes is None else f"{self.age_minutes:.0f} min old"
        parts = [f"orphan sweep: group {self.group} (run {self.run or '?'}, {age}): {self.action}"]
        if self.logs:
            parts.append(f"logs saved to {self.logs}")
        if self.logs_error:
            parts.append(f"logs NOT saved: {self.logs_error}")
        if self.error:
            parts.append(f"error: {self.error}")
        if self.action == SweepAction.DELETE_FAILED:
            parts.append("the group still exists and is retried at the next sweep")
        return "; ".join(parts)


def created_at(tags: dict[str, str]) -> datetime | None:
    """The group's `created` tag as an aware UTC datetime; None when missing or unreadable."""
    raw = tags.get("created", "")
    try:
        created = datetime.strptime(raw, CREATED_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        try:
            created = datetime.fromisoformat(raw)
        except ValueError:
            return None
        created = created.replace(tzinfo=UTC) if created.tzinfo is None else created.astimezone(UTC)
    return created


def is_old(tags: dict[str, str], ttl: timedelta, now: datetime) -> bool:
    """Older than the TTL. A missing or unreadable `created` tag counts as old: this app always writes it, so
    such a group was not made by a run as we know it (or its tag was edited); keeping it would let it bill
    forever. A group of an active run is still protected by the run check, which comes after this."""
    created = created_at(tags)
    if created is None or created > now + MAX_CLOCK_SKEW:
        return True
    return now - created >= ttl


def run_of(tags: dict[str, str]) -> str | None:
    """The run tag when it is a valid run id (it becomes part of a blob path: nothing may escape runs/<id>/)."""
    run = tags.get("run", "")
    return run if naming.is_run_id(run) else None


def shard_of(tags: dict[str, str]) -> int | None:
    shard = tags.get("shard", "")
    return int(shard) if shard.isdigit() and int(shard) < 1000 else None


def orphan_log_blob(group: str, run: str | None) -> str:
    # Group names come from ARM ([a-z0-9-]); anything else is hashed rather than put into a path.
    safe = group if naming.RUN_ID.fullmatch(group) and len(group) <= 63 else (
        "group-" + hashlib.sha256(group.encode()).hexdigest()[:20])
    return f"{naming.run_prefix(run)}logs/orphan-{safe}.log" if run else f"orphans/{safe}.log"


async def instance_is_active(client: Any, instance_id: str) -> bool:
    """Whether a durable orchestration instance is active; an instance that does not exist is not.

    client: a DurableOrchestrationClient. Errors propagate (the caller keeps the group then).
    """
    status = await client.get_status(instance_id)
    runtime = getattr(status, "runtime_status", None) if status else None
    return runtime is not None and runtime.value in ACTIVE_STATUSES


async def sweep_orphans(
    groups: ContainerGroups,
    blobs: BlobStore,
    results_container: str,
    is_active: Callable[[str], Awaitable[bool]],
    ttl: timedelta,
    now: datetime,
) -> list[SweepResult]:
    """One result per container group of this app. `is_active(instance_id)` tells whether a durable
    orchestration is still active. The ARM and blob calls block, so they run on worker threads."""
    found = await asyncio.to_thread(groups.list, APP_TAG)
    results = []
    for group in sorted(found, key=lambda g: g.name):
        results.append(await _sweep_one(group, groups, blobs, results_container, is_active, ttl, now))
    return results


async def _sweep_one(group: GroupSummary, groups: ContainerGroups, blobs: BlobStore, results_container: str,
                     is_active: Callable[[str], Awaitable[bool]], ttl: timedelta, now: datetime) -> SweepResult:
    tags = group.tags
    run = run_of(tags)
    created = created_at(tags)
    age = None if created is None else round((now - created).total_seconds() / 60, 1)
    if not is_old(tags, ttl, now):
        return SweepResult(group.name, run, SweepAction.KEPT_YOUNG, age)

    if run is not None:
        # The run, and its shard's sub-orchestration: a shard may outlive a terminated run and still
        # delete its own group.
        instances = [run]
        shard = shard_of(tags)
        if shard is not None:
            instances.append(naming.shard_instance_id(run, shard))
        try:
            for instance_id in instances:
                if await is_active(instance_id):
                    return SweepResult(group.name, run, SweepAction.KEPT_ACTIVE, age)
        except Exception as e:  # noqa: BLE001 - unknown is not "not running": keep it, retry next sweep
            return SweepResult(group.name, run, SweepAction.KEPT_UNKNOWN, age, error=typed_one_line(e))
    # else: no valid run tag, so no orchestration of this app can own it.

    blob = orphan_log_blob(group.name, run)
    saved, logs_error = None, None
    try:
        # Model code can print what it reads from its environment (as in activities.save_container_logs).
        text = scrub(await asyncio.to_thread(groups.logs, group.name))
        await asyncio.to_thread(blobs.write_bytes, results_container, blob, text.encode(),
                                content_type="text/plain")
        saved = f"{results_container}/{blob}"
    except Exception as e:  # noqa: BLE001 - an orphan bills: missing logs must not keep it alive
        logs_error = typed_one_line(e)

    try:
        deleted = await asyncio.to_thread(groups.delete, group.name)
    except Exception as e:  # noqa: BLE001 - reported (logged as an error by the caller); retried next sweep
        return SweepResult(group.name, run, SweepAction.DELETE_FAILED, age, saved, logs_error, typed_one_line(e))
    action = SweepAction.DELETED if deleted else SweepAction.ALREADY_GONE
    return SweepResult(group.name, run, action, age, saved, logs_error)

