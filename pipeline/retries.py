"""POST /api/runs/{id}/retry: which retry instance to start (what it reruns: runs_api.retry_request).

One retry per run at a time. Retry instance ids are deterministic (`<run>-retry<n>`, n = 1 + the retries
that exist), so two requests that race compute the same id and the durable start of the loser fails with
"already exists" (the extension refuses to replace an instance that is pending or running). A request that
finds the newest retry still active is refused before it starts anything.
"""

from __future__ import annotations

import azure.durable_functions as df

from . import naming
from .run_status import FINISHED

MAX_RETRIES = 99


async def next_retry_id(client: df.DurableOrchestrationClient, root: str) -> tuple[str, str]:
    """(id for the next retry of root, or "" after MAX_RETRIES; id of a retry still active, or "")."""
    previous = ""
    for n in range(1, MAX_RETRIES + 1):
        run_id = naming.retry_run_id(root, n)
        status = await client.get_status(run_id)
        if not status or status.runtime_status is None:
            if previous:
                prev = await client.get_status(previous)
                if prev.runtime_status is not None and prev.runtime_status.value not in FINISHED:
                    return run_id, previous
            return run_id, ""
        previous = run_id
    return "", ""  # retried MAX_RETRIES times already


def lost_start_race(error: Exception) -> bool:
    """The durable start failed because another request started the same retry id first."""
    return "already exists" in str(error)
