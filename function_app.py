"""Scoring service for R models: the Functions app's table of contents.

Three kinds of run start the `score_run` orchestration (pipeline/):
  - timer   `daily_scoring`   schedule SCORING_SCHEDULE; one run per model and day (instance id from the date)
  - HTTP    POST /api/runs                start an ad-hoc run -> 202 with status URLs
            GET  /api/runs, /api/runs/{id} list recent runs, read one run's status
            POST /api/runs/{id}/cancel    stop a run; its container groups are deleted
            POST /api/runs/{id}/retry     rerun the failed postcodes, merged into that run's results
  - blob    `new_input_blob`  a new blob under INPUT_CONTAINER/INPUT_PREFIX; one run per blob and ETag
Client routes for the R package (client_api/): model versions, champion, registration of uploaded versions,
run results/manifest/failures, a model's latest results, input uploads.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from datetime import UTC, datetime, timedelta

import azure.durable_functions as df
import azure.functions as func

from client_api.blueprint import build_blueprint as build_client_api_blueprint
from dashboard.routes import bp as dashboard_bp
from pipeline import admission, naming, retries, run_listing, sweeper
from pipeline.accuracy_api import build_accuracy_blueprint
from pipeline.failures import status_failures
from pipeline.payloads import CANCEL_EVENT, RunRequest, Stage, Trigger, decode
from pipeline.planning import PlanError, dry_run_view, plan_run
from pipeline.registration import build_blueprint
from pipeline.run_requests import RequestError, parse_run_body, scheduled_request
from pipeline.run_status import FINISHED, RUN_ORCHESTRATOR, run_progress, run_view
from pipeline.runs_api import RetryRefused, check_input, check_model_version, retry_request
from pipeline.services import container_groups, settings, storage
from pipeline.trigger_support import blob_etag, scheduled_day, start_once

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(build_blueprint())
app.register_functions(build_accuracy_blueprint())  # /api/runs/{id}/evaluate, /api/runs/{id}/accuracy, actuals
app.register_functions(build_client_api_blueprint())  # models, registration, results, uploads (client_api/)
app.register_functions(dashboard_bp)  # GET /api/dashboard: the run dashboard (dashboard/routes.py)
log = logging.getLogger("function_app")


@app.timer_trigger(schedule="%SCORING_SCHEDULE%", arg_name="timer", run_on_startup=False)
@app.durable_client_input(client_name="client")
async def daily_scoring(timer: func.TimerRequest, client: df.DurableOrchestrationClient) -> None:
    s = settings()
    run_id = naming.daily_run_id(s.default_model, scheduled_day(timer, datetime.now(UTC)))
    await start_once(client, run_id, scheduled_request(s, Trigger.TIMER), blobs=storage(),
                     results_container=s.results_container)


@app.blob_trigger(arg_name="blob", path="%INPUT_CONTAINER%/%INPUT_PREFIX%{name}", connection="STORAGE",
                  source=func.BlobSource.EVENT_GRID)
@app.durable_client_input(client_name="client")
async def new_input_blob(blob: func.InputStream, client: df.DurableOrchestrationClient) -> None:
    _, _, name = blob.name.partition("/")
    # The host's Properties.ETag is no plain string: ask storage (off the event loop, it blocks).
    etag = await asyncio.to_thread(lambda: blob_etag(storage(), blob.name))
    if etag is None:
        log.warning("blob %s is gone since its event; not started", blob.name)
        return
    try:
        request = scheduled_request(settings(), Trigger.BLOB, input_blob=name)
    except RequestError as e:
        log.error("blob %s cannot be scored: %s", blob.name, e)
        return
    await start_once(client, naming.blob_run_id(name, etag), request, blobs=storage(),
                     results_container=settings().results_container)


@app.route(route="runs", methods=["POST"])
@app.durable_client_input(client_name="client")
async def start_run(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    try:
        request = parse_run_body(req.get_body(), settings())
        await asyncio.to_thread(check_model_version, request.model, request.version, settings(), storage())
        await asyncio.to_thread(check_input, request.input_blob, settings(), storage())
    except RequestError as e:
        return json_response({"error": str(e), "field": e.field}, e.status)
    if request.dry_run:
        try:
            plan = await asyncio.to_thread(plan_run, request, "dry-run", settings(), storage(),
                                           today=datetime.now(UTC).date())
        except PlanError as e:
            return json_response({"error": str(e), "field": ""}, 422)
        return json_response(dry_run_view(plan))
    if await admission.active_runs(client) >= settings().max_active_runs:
        wait = admission.retry_after_seconds(settings())
        return json_response({"error": f"{settings().max_active_runs} runs are active, the most allowed at once; "
                                       f"retry in {wait} s"}, 429, headers={"Retry-After": str(wait)})
    run_id = naming.adhoc_run_id(uuid.uuid4().hex)
    await client.start_new(RUN_ORCHESTRATOR, run_id, request)
    # Only this app's own routes: the durable management URLs carry the task hub's system key.
    base = req.url.split("/api/")[0]
    return json_response({"id": run_id, "statusUrl": f"{base}/api/runs/{run_id}",
                          "cancelUrl": f"{base}/api/runs/{run_id}/cancel"}, 202,
                         headers={"Location": f"{base}/api/runs/{run_id}"})


@app.route(route="runs", methods=["GET"])
@app.durable_client_input(client_name="client")
async def list_runs(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """?top=&continuationToken=: every run of the last week, newest first, a page at a time."""
    return await run_listing.list_runs(req, client)


@app.route(route="runs/{id}", methods=["GET"])
@app.durable_client_input(client_name="client")
async def get_run(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    status = await find_run(client, req.route_params["id"])
    if status is None:
        return json_response({"error": f"no run {req.route_params['id']!r}"}, 404)
    failures = await asyncio.to_thread(status_failures, storage(), status)  # from the run's failures blob
    return json_response(run_view(status, failures, base_url=req.url.split("/api/")[0]))


@app.route(route="runs/{id}/cancel", methods=["POST"])
@app.durable_client_input(client_name="client")
async def cancel_run(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    status = await find_run(client, req.route_params["id"])
    if status is None:
        return json_response({"error": f"no run {req.route_params['id']!r}"}, 404)
    if status.runtime_status and status.runtime_status.value in FINISHED:
        return json_response({"error": f"run {status.instance_id} has already finished"}, 409)
    progress = run_progress(status)
    if progress is not None and progress.stage is Stage.PUBLISHING:
        return json_response({"error": f"run {status.instance_id} is publishing its results"}, 409)
    await client.raise_event(status.instance_id, CANCEL_EVENT, None)
    return json_response({"id": status.instance_id, "state": "cancelling"}, 202)


@app.route(route="runs/{id}/retry", methods=["POST"])
@app.durable_client_input(client_name="client")
async def retry_run(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Rerun only the postcodes a finished run failed; the rerun publishes into that run's results."""
    status = await find_run(client, req.route_params["id"])
    if status is None:
        return json_response({"error": f"no run {req.route_params['id']!r}"}, 404)
    view = run_view(status)
    if view["runtimeStatus"] not in FINISHED:
        return json_response({"error": f"run {status.instance_id} is still {view['state']}"}, 409)
    original = decode(status.input_, RunRequest)
    root = original.retry_of or status.instance_id
    run_id, active = await retries.next_retry_id(client, root)
    if active or not run_id:
        return json_response({"error": f"run {root} already has a retry in progress: {active}" if active
                              else f"run {root} has been retried too often; start a new run"}, 409)
    try:
        retry = await asyncio.to_thread(retry_request, original, status.instance_id, settings(), storage())
    except RetryRefused as e:
        return json_response({"error": str(e), "object": e.blob}, e.status)
    try:
        await client.start_new(RUN_ORCHESTRATOR, run_id, retry)
    except Exception as e:  # noqa: BLE001 - the SDK raises plain Exception; only "already exists" is expected
        if not retries.lost_start_race(e):
            raise
        return json_response({"error": f"run {root} already has a retry in progress: {run_id}"}, 409)
    base = req.url.split("/api/")[0]
    return json_response({"id": run_id, "retry_of": root, "postcodes": len(retry.postcodes or []),
                          "statusUrl": f"{base}/api/runs/{run_id}"}, 202)


# ------------------------------------------------------------------------------------------ helpers


async def find_run(client: df.DurableOrchestrationClient, run_id: str):
    if not naming.is_run_id(run_id):
        return None
    status = await client.get_status(run_id)
    if not status or status.name != RUN_ORCHESTRATOR:
        return None
    return status


def json_response(body: dict, status: int = 200, headers: dict | None = None) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body, default=str), status_code=status, mimetype="application/json",
                             headers=headers)


# ------------------------------------------------------------------------------------ orphan sweeper


@app.timer_trigger(schedule="%ORPHAN_SWEEP_SCHEDULE%", arg_name="timer", run_on_startup=False)
@app.durable_client_input(client_name="client")
async def sweep_orphan_groups(timer: func.TimerRequest, client: df.DurableOrchestrationClient) -> None:
    """Delete this app's container groups older than ORPHAN_TTL_MINUTES whose run is not active (logs kept)."""
    s = settings()

    async def is_active(instance_id: str) -> bool:
        return await sweeper.instance_is_active(client, instance_id)

    results = await sweeper.sweep_orphans(container_groups(), storage(), s.results_container, is_active,
                                          timedelta(minutes=s.orphan_ttl_minutes), datetime.now(UTC))
    for result in results:
        log.log(result.level, result.summary())
