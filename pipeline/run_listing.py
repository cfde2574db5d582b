"""GET /api/runs: every run of the last RUNS_LISTED_DAYS, newest first, in pages (`top`, `continuationToken`).

The Durable extension answers instance queries a page at a time (100 by default, sub-orchestrations
included, in instance-id order, next page via the x-ms-continuation-token header), and
azure-functions-durable 1.7's get_status_by reads only the first page (azure-functions-durable-python issue
#580). So this module follows the continuation token itself, over the same RPC endpoint the SDK client uses,
keeps the score_run instances, orders them newest first and cuts its own pages. Our continuation token is
opaque to callers: base64 of the (created, id) of the last run of the page.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import azure.durable_functions as df
import azure.functions as func
from azure.durable_functions.models.DurableOrchestrationStatus import DurableOrchestrationStatus
from azure.durable_functions.models.RpcManagementOptions import RpcManagementOptions

from .run_status import RUN_ORCHESTRATOR, run_view

RUNS_LISTED_DAYS = 7
DEFAULT_TOP, MAX_TOP = 50, 200
EXTENSION_PAGE = 100  # what we ask the extension for per request (its default page size too)
MAX_EXTENSION_PAGES = 1000  # 100,000 instances: beyond that something is wrong, say so instead of looping
CONTINUATION_HEADER = "x-ms-continuation-token"

class ListingError(ValueError):
    """A bad `top` or `continuationToken`; the message names the parameter."""


def rpc_base_url(client: df.DurableOrchestrationClient) -> str:
    # The SDK keeps the host's rpcBaseUrl on a private attribute; it has no public paged query.
    bindings = getattr(client, "_orchestration_bindings", None)
    url = getattr(bindings, "rpc_base_url", None)
    if not url:
        raise RuntimeError("the durable client carries no rpcBaseUrl: cannot list instances")
    return url


async def all_instances(client: df.DurableOrchestrationClient,
                        created_from: datetime) -> list[DurableOrchestrationStatus]:
    """Every instance created since `created_from`, following the continuation token page after page."""
    url = RpcManagementOptions(created_time_from=created_from).to_url(rpc_base_url(client))
    url += ("&" if "?" in url else "?") + f"top={EXTENSION_PAGE}"
    statuses: list[DurableOrchestrationStatus] = []
    token = ""
    async with aiohttp.ClientSession() as session:
        for _ in range(MAX_EXTENSION_PAGES):
            headers = {CONTINUATION_HEADER: token} if token else {}
            async with session.get(url, headers=headers) as response:
                if response.status != 200:
                    raise RuntimeError(f"listing instances failed: HTTP {response.status}")
                rows = await response.json(content_type=None)
                token = response.headers.get(CONTINUATION_HEADER, "")
            statuses += [DurableOrchestrationStatus.from_json(row) for row in rows or []]
            if not token or token == "null":
                return statuses
    raise RuntimeError(f"more than {MAX_EXTENSION_PAGES} pages of instances; narrow the query")


def parse_top(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_TOP
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_TOP:
        raise ListingError(f"top must be a whole number from 1 to {MAX_TOP}, not {raw!r}")
    return int(raw)


def encode_token(run: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps([run["created"] or "", run["id"]]).encode()).decode()


def decode_token(raw: str | None) -> tuple[str, str] | None:
    if not raw:
        return None
    try:
        created, run_id = json.loads(base64.urlsafe_b64decode(raw.encode()))
    except (ValueError, TypeError, binascii.Error):
        raise ListingError("continuationToken is not one this API handed out") from None
    if not isinstance(created, str) or not isinstance(run_id, str):
        raise ListingError("continuationToken is not one this API handed out")
    return created, run_id


def newest_first(statuses: list[Any]) -> list[dict]:
    runs = [run_view(s) for s in statuses if s.name == RUN_ORCHESTRATOR]
    return sorted(runs, key=lambda r: (r["created"] or "", r["id"]), reverse=True)


def page(runs: list[dict], top: int, after: tuple[str, str] | None) -> tuple[list[dict], str | None]:
    """The `top` runs that come after `after` in newest-first order, and the token for the page after."""
    if after is not None:
        runs = [r for r in runs if (r["created"] or "", r["id"]) < after]
    chosen = runs[:top]
    return chosen, (encode_token(chosen[-1]) if len(runs) > top else None)


async def list_runs(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """The GET /api/runs response (function_app.list_runs is the route)."""
    try:
        top = parse_top(req.params.get("top"))
        after = decode_token(req.params.get("continuationToken"))
    except ListingError as e:
        field = "top" if str(e).startswith("top") else "continuationToken"
        return _json({"error": str(e), "field": field}, 400)
    since = datetime.now(UTC) - timedelta(days=RUNS_LISTED_DAYS)
    runs, token = page(newest_first(await all_instances(client, since)), top, after)
    return _json({"runs": runs, "continuationToken": token})


def _json(body: dict, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body, default=str), status_code=status, mimetype="application/json")
