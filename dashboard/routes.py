"""The run dashboard's HTTP routes, on a blueprint of their own (function_app.py registers it).

    GET /api/dashboard                              the page (anonymous: it holds no data)
    GET /api/dashboard/static/{name}                its script, style sheet and vendored uPlot (anonymous)
    GET /api/dashboard/runs                         runs of the last 30 days
    GET /api/dashboard/runs/{id}                    one run: summary and a bar per shard
    GET /api/dashboard/runs/{id}/failures           failed postcodes with their reasons
    GET /api/dashboard/runs/{id}/postcodes          the postcodes of a published run (from its results index)
    GET /api/dashboard/runs/{id}/forecast/{pc}      one postcode's forecast (+ actuals/accuracy when present)
    GET /api/dashboard/runs/{id}/files/{*path}      manifest.json, results.csv, logs/<shard>.log
    GET /api/dashboard/groups                       live container groups of this app, orphans flagged
    GET /api/dashboard/cost                         cost per run and per day over the last 30 days

Who may call the data routes: see auth.py (a function key locally, App Service Authentication with Entra ID
in production). Cancel and retry are the app's own POST /api/runs/{id}/cancel and /retry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from pipeline import naming, run_listing, sweeper
from pipeline.aci.spec import APP_TAG
from pipeline.failures import FailuresError, failures_view
from pipeline.revisions import Revision, UnreadablePointer, current_revision
from pipeline.run_status import FINISHED, RUN_ORCHESTRATOR
from pipeline.services import container_groups, settings, storage
from scoring.blobstore import BlobNotFound
from scoring.names import is_valid_postcode

from . import auth, overlays, page, views
from .results_index import PostcodeNotFound, ResultsChanged, ResultsIndexError, index_blob, read_postcode_rows
from .views import ViewError

bp = df.Blueprint()
WINDOW_DAYS = 30
MAX_RUNS = 200
AUTH_MODE = auth.configured_mode()
DATA = auth.data_auth_level(AUTH_MODE)


@bp.route(route="dashboard", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def dashboard_page(req: func.HttpRequest) -> func.HttpResponse:
    base = req.url.split("?", 1)[0].rstrip("/")
    return page.html_response(base, AUTH_MODE)


@bp.route(route="dashboard/static/{name}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def dashboard_static(req: func.HttpRequest) -> func.HttpResponse:
    return page.static_response(req.route_params["name"])


@bp.route(route="dashboard/runs", methods=["GET"], auth_level=DATA)
@bp.durable_client_input(client_name="client")
async def dashboard_runs(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    return await _answer(req, runs_view(client))


@bp.route(route="dashboard/runs/{id}", methods=["GET"], auth_level=DATA)
@bp.durable_client_input(client_name="client")
async def dashboard_run(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    return await _answer(req, run_detail(client, req.route_params["id"]))


@bp.route(route="dashboard/runs/{id}/failures", methods=["GET"], auth_level=DATA)
@bp.durable_client_input(client_name="client")
async def dashboard_failures(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    return await _answer(req, run_failures(client, req.route_params["id"]))


@bp.route(route="dashboard/runs/{id}/postcodes", methods=["GET"], auth_level=DATA)
@bp.durable_client_input(client_name="client")
async def dashboard_postcodes(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    return await _answer(req, run_postcodes(client, req.route_params["id"]))


@bp.route(route="dashboard/runs/{id}/forecast/{postcode}", methods=["GET"], auth_level=DATA)
@bp.durable_client_input(client_name="client")
async def dashboard_forecast(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    return await _answer(req, run_forecast(client, req.route_params["id"], req.route_params["postcode"]))


@bp.route(route="dashboard/runs/{id}/files/{*path}", methods=["GET"], auth_level=DATA)
@bp.durable_client_input(client_name="client")
async def dashboard_file(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    refused = auth.refusal(req, AUTH_MODE)
    if refused:
        return page.json_response({"error": refused}, 401)
    try:
        run_id = views.check_run_id(req.route_params["id"])
        path = views.check_run_file(req.route_params.get("path", ""))
        if path.startswith("logs/"):  # each run (a retry too) keeps its own containers' logs
            name = naming.run_prefix(run_id) + path
        else:
            found = await publication(client, run_id)
            name = found.manifest if path == "manifest.json" else found.results
        data = await asyncio.to_thread(storage().read_bytes, settings().results_container, name)
    except ViewError as e:
        return page.json_response({"error": str(e)}, e.status)
    except BlobNotFound:
        return page.json_response({"error": f"run {run_id} has no file {path}"}, 404)
    content_type = {"json": "application/json", "csv": "text/csv", "log": "text/plain"}[path.rsplit(".", 1)[1]]
    return page.file_response(data, content_type, path.rsplit("/", 1)[-1])


@bp.route(route="dashboard/groups", methods=["GET"], auth_level=DATA)
@bp.durable_client_input(client_name="client")
async def dashboard_groups(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    return await _answer(req, live_groups(client, datetime.now(UTC)))


@bp.route(route="dashboard/cost", methods=["GET"], auth_level=DATA)
@bp.durable_client_input(client_name="client")
async def dashboard_cost(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    return await _answer(req, cost(client))


# ------------------------------------------------------------------------------------------ the views


async def _answer(req: func.HttpRequest, view: Coroutine[Any, Any, dict]) -> func.HttpResponse:
    refused = auth.refusal(req, AUTH_MODE)
    if refused:
        view.close()
        return page.json_response({"error": refused}, 401)
    try:
        return page.json_response(await view)
    except ViewError as e:
        return page.json_response({"error": str(e)}, e.status)


async def runs_view(client: df.DurableOrchestrationClient) -> dict:
    return {"runs": await recent_runs(client, datetime.now(UTC))}


async def cost(client: df.DurableOrchestrationClient) -> dict:
    now = datetime.now(UTC)
    return views.cost_view(await recent_runs(client, now), now, WINDOW_DAYS)


async def recent_runs(client: df.DurableOrchestrationClient, now: datetime) -> list[dict]:
    # Every page of the durable instance query (the SDK's get_status_by stops after the first 100).
    statuses = await run_listing.all_instances(client, now - timedelta(days=WINDOW_DAYS))
    runs = sorted((s for s in statuses if s.name == RUN_ORCHESTRATOR),
                  key=lambda s: views.iso(s.created_time) or "", reverse=True)[:MAX_RUNS]
    # The list omits inputs; a run still going has no output yet, so its model comes from its input.
    going = [s for s in runs if not views.plain(s.output)]
    inputs = await asyncio.gather(*(client.get_status(s.instance_id, show_input=True) for s in going))
    requests = {s.instance_id: views.plain(full.input_) for s, full in zip(going, inputs, strict=True) if full}
    return [views.run_summary(s, now, requests.get(s.instance_id)) for s in runs]


async def find_run(client: df.DurableOrchestrationClient, run_id: str):
    views.check_run_id(run_id)
    status = await client.get_status(run_id, show_input=True)
    if not status or status.name != RUN_ORCHESTRATOR:
        raise ViewError(404, f"no run {run_id!r}")
    return status


async def run_detail(client: df.DurableOrchestrationClient, run_id: str) -> dict:
    now = datetime.now(UTC)
    status = await find_run(client, run_id)
    output, progress = views.plain(status.output), views.plain(status.custom_status)
    total = int(progress.get("shards_total") or output.get("shards_total") or 0)
    shard_statuses: dict[int, Any] = {}
    if not output.get("shards"):  # still running (or ended before fan-out): ask each shard orchestration
        found = await asyncio.gather(*(client.get_status(naming.shard_instance_id(run_id, i), show_input=True)
                                       for i in range(total)))
        shard_statuses = {i: s for i, s in enumerate(found) if s and s.runtime_status is not None}
    bars = views.shard_bars(total, run_id, shard_statuses, output, now)
    for bar in bars:
        bar["deadlineMinutes"] = bar["deadlineMinutes"] or settings().shard_deadline_minutes
    summary = views.run_summary(status, now, views.plain(status.input_))
    return {**summary, "shardBars": bars, "cleanupErrors": output.get("cleanup_errors") or [],
            "canCancel": summary["runtimeStatus"] not in FINISHED and summary["stage"] != "publishing",
            "canRetry": summary["runtimeStatus"] in FINISHED and summary["postcodes"]["failed"] > 0
            and summary["published"]}


async def run_failures(client: df.DurableOrchestrationClient, run_id: str) -> dict:
    """One implementation with GET /api/runs/{id}/failures: pipeline.failures.failures_view."""
    status = await client.get_status(run_id, show_input=True) if naming.is_run_id(run_id) else None
    try:
        return await asyncio.to_thread(failures_view, run_id, status, storage(), settings().results_container)
    except FailuresError as e:
        raise ViewError(e.status, str(e)) from None


async def publication(client: df.DurableOrchestrationClient, run_id: str) -> Revision:
    """The current revision of the run this run published into (a retry publishes into the run it retries)."""
    status = await client.get_status(run_id)
    output = views.plain(status.output) if status else {}
    target = (output.get("retry_of") if output.get("manifest") else None) or run_id
    try:
        found = await asyncio.to_thread(current_revision, storage(), settings().results_container, target)
    except UnreadablePointer as e:
        raise ViewError(409, f"run {run_id}: {e}") from None
    if found is None:
        if not status or status.name != RUN_ORCHESTRATOR:
            raise ViewError(404, f"no run {run_id!r}")
        runtime = status.runtime_status.value if status.runtime_status else "Unknown"
        raise ViewError(409, f"run {run_id} has published no results (it is {views.run_state(runtime, output)})")
    return found


async def run_postcodes(client: df.DurableOrchestrationClient, run_id: str) -> dict:
    found = await publication(client, views.check_run_id(run_id))
    try:
        index = await asyncio.to_thread(storage().read_json, settings().results_container, index_blob(found.results))
    except BlobNotFound:
        raise ViewError(409, f"run {run_id} was published without a results index") from None
    return {"run": run_id, "postcodes": sorted(index.get("postcodes", {}))}


async def run_forecast(client: df.DurableOrchestrationClient, run_id: str, postcode: str) -> dict:
    views.check_run_id(run_id)
    if not is_valid_postcode(postcode):
        raise ViewError(400, f"{postcode!r} is not a postcode")
    found = await publication(client, run_id)
    container = settings().results_container
    try:
        rows = await asyncio.to_thread(read_postcode_rows, storage(), container, found.results, postcode)
    except PostcodeNotFound:
        raise ViewError(404, f"run {run_id} has no forecast for postcode {postcode} (see its failures)") from None
    except ResultsChanged as e:
        raise ViewError(409, str(e)) from None
    except ResultsIndexError as e:
        raise ViewError(409, f"run {run_id}: {e}") from None
    actuals, accuracy = await asyncio.to_thread(overlays.read_overlays, storage(), container, run_id, postcode)
    return views.forecast_view(run_id, postcode, rows, actuals, accuracy)


async def live_groups(client: df.DurableOrchestrationClient, now: datetime) -> dict:
    found = await asyncio.to_thread(container_groups().list, APP_TAG)

    async def active(group) -> bool | None:
        run = sweeper.run_of(group.tags)
        if run is None:
            return False
        shard = sweeper.shard_of(group.tags)
        ids = [run] + ([naming.shard_instance_id(run, shard)] if shard is not None else [])
        try:
            return any([await sweeper.instance_is_active(client, i) for i in ids])
        except Exception:  # noqa: BLE001 - unknown, shown as such rather than as an orphan
            return None

    flags = await asyncio.gather(*(active(g) for g in found))
    groups = [views.group_view(g, flag, now).to_json(settings().orphan_ttl_minutes)
              for g, flag in zip(found, flags, strict=True)]
    return {"groups": sorted(groups, key=lambda g: g["name"]), "orphans": sum(g["orphan"] for g in groups)}

