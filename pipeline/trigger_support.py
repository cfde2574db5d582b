"""What the timer and blob triggers need beyond their bindings: the occurrence, the ETag, one start per id.

- The daily run is named after the schedule's occurrence, not the clock: the timer binding hands the
  function the schedule status as it stood before this invocation (WebJobs' TimerListener updates it after
  invoking), so ScheduleStatus.Next is the occurrence now firing, also when it fires late (IsPastDue) or
  after a restart. Only without a status (no schedule monitor, or a manual run) does "now" decide.
- The blob trigger's Properties are the host's serialization of the storage SDK's BlobProperties (read by
  azure.functions.blob.InputStream as blob_properties); their ETag is not a plain string there (see
  devenv/durable_host/triggers.py), so the ETag is read from storage with get_blob_properties.
- start_once: a trigger that fires twice starts one run; any other start failure raises, so that the host
  retries the event (a swallowed failure would silently lose the day's run).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, date, datetime, timedelta
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from scoring.blobstore import BlobStore

from .revisions import current_revision
from .run_status import RUN_ORCHESTRATOR

log = logging.getLogger(__name__)
# A status "Next" this far in the future is not the occurrence now firing (a manual or startup run).
CLOCK_SKEW = timedelta(minutes=5)


def scheduled_day(timer: func.TimerRequest, now: datetime) -> date:
    """The UTC day of the schedule occurrence this invocation is for."""
    status = timer.schedule_status or {}
    occurrence = _parse_time(status.get("Next"))
    if occurrence is not None and occurrence <= now + CLOCK_SKEW:
        return occurrence.astimezone(UTC).date()
    return now.astimezone(UTC).date()


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    # The host writes ScheduleStatus times in UTC, sometimes without an offset.
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def blob_etag(blobs: BlobStore, blob_path: str) -> str | None:
    """The ETag of `container/name` as storage has it now (unquoted); None when the blob is gone."""
    container, _, name = blob_path.partition("/")
    if not container or not name:
        raise ValueError(f"blob trigger path {blob_path!r} is not container/name")
    info = blobs.info(container, name)
    return info.etag if info is not None else None


async def start_once(client: df.DurableOrchestrationClient, run_id: str, request: Any,
                     orchestrator: str = RUN_ORCHESTRATOR, blobs: BlobStore | None = None,
                     results_container: str = "") -> bool:
    """Start `orchestrator` as run_id unless it exists or (given blobs) has published already, which also covers
    an event redelivered after the run's history was purged. True: started here. Raises when the start failed for
    any reason other than the same instance having been started meanwhile (so the host retries the event)."""
    if await _exists(client, run_id):
        log.info("run %s exists; not started again", run_id)
        return False
    if blobs is not None and await asyncio.to_thread(current_revision, blobs, results_container, run_id):
        log.info("run %s has published already; not started again", run_id)
        return False
    try:
        await client.start_new(orchestrator, run_id, request)
    except Exception:
        if await _exists(client, run_id):  # a concurrent start of the same id won the race: still one run
            log.info("run %s was started concurrently; not started again", run_id)
            return False
        raise
    return True


async def _exists(client: df.DurableOrchestrationClient, run_id: str) -> bool:
    status = await client.get_status(run_id)
    return bool(status) and status.runtime_status is not None
