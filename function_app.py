"""Scoring service for R models: the Functions app's table of contents.

Three kinds of run start the `score_run` orchestration (orchestrators/):
  - timer   `daily_scoring`   schedule SCORING_SCHEDULE; one run per model and day (instance id from the date)
  - HTTP    POST /api/runs                start an ad-hoc run -> 202 with status URLs
            GET  /api/runs, /api/runs/{id} list recent runs, read one run's status
            POST /api/runs/{id}/cancel    stop a run; its container groups are deleted
            POST /api/runs/{id}/retry     rerun the failed postcodes, merged into that run's results
  - blob    `new_input_blob`  a new blob under INPUT_CONTAINER/INPUT_PREFIX; one run per blob and ETag
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime, timedelta

import azure.durable_functions as df
import azure.functions as func

from orchestrators import bp, naming
from orchestrators.naming import run_prefix
from orchestrators.planning import PlanError, dry_run_view, plan_run
from orchestrators.run_listing import runs_bp
from orchestrators.run_requests import RequestError, RunRequest, parse_run_body, scheduled_request
from orchestrators.run_status import FINISHED, RUN_ORCHESTRATOR, run_view
from orchestrators.services import settings, storage
from orchestrators.trigger_support import blob_etag, scheduled_day, start_once
from scoring.modelstore import ModelStore, VersionNotFound

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(bp)
app.register_functions(runs_bp)  # GET /api/runs: paged, newest first
log = logging.getLogger("function_app")


@app.timer_trigger(schedule="%SCORING_SCHEDULE%", arg_name="timer", run_on_startup=False)
@app.durable_client_input(client_name="client")
async def daily_scoring(timer: func.TimerRequest, client: df.DurableOrchestrationClient) -> None:
    s = settings()
    run_id = naming.daily_run_id(s.default_model, scheduled_day(timer, datetime.now(UTC)))
    await start_once(client, run_id, scheduled_request(s, "timer").to_json())


@app.blob_trigger(arg_name="blob", path="%INPUT_CONTAINER%/%INPUT_PREFIX%{name}", connection="STORAGE",
                  source=func.BlobSource.EVENT_GRID)
@app.durable_client_input(client_name="client")
async def new_input_blob(blob: func.InputStream, client: df.DurableOrchestrationClient) -> None:
    _, _, name = blob.name.partition("/")
    etag = blob_etag(storage(), blob.name)  # the host's Properties.ETag is no plain string: ask storage
    if etag is None:
        log.warning("blob %s is gone since its event; not started", blob.name)
        return
    try:
        request = scheduled_request(settings(), "blob", input_blob=name)
    except RequestError as e:
        log.error("blob %s cannot be scored: %s", blob.name, e)
        return
    await start_once(client, naming.blob_run_id(name, etag), request.to_json())


@app.route(route="runs", methods=["POST"])
@app.durable_client_input(client_name="client")
async def start_run(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    try:
        request = parse_run_body(req.get_body(), settings())
        check_model_version(request.model, request.version)
    except RequestError as e:
        return json_response({"error": str(e), "field": e.field}, e.status)
    if request.dry_run:
        try:
            plan = plan_run(request, "dry-run", settings(), storage(), today=datetime.now(UTC).date())
        except PlanError as e:
            return json_response({"error": str(e), "field": ""}, 422)
        return json_response(dry_run_view(plan))
    run_id = naming.adhoc_run_id(uuid.uuid4().hex)
    await client.start_new(RUN_ORCHESTRATOR, run_id, request.to_json())
    # Only this app's own routes: the durable management URLs carry the task hub's system key.
    base = req.url.split("/api/")[0]
    return json_response({"id": run_id, "statusUrl": f"{base}/api/runs/{run_id}",
                          "cancelUrl": f"{base}/api/runs/{run_id}/cancel"}, 202,
                         headers={"Location": f"{base}/api/runs/{run_id}"})


@app.route(route="runs/{id}", methods=["GET"])
@app.durable_client_input(client_name="client")
async def get_run(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    status = await find_run(client, req.route_params["id"])
    if status is None:
        return json_response({"error": f"no run {req.route_params['id']!r}"}, 404)
    return json_response(run_view(status))


@app.route(route="runs/{id}/cancel", methods=["POST"])
@app.durable_client_input(client_name="client")
async def cancel_run(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    status = await find_run(client, req.route_params["id"])
    if status is None:
        return json_response({"error": f"no run {req.route_params['id']!r}"}, 404)
    if status.runtime_status and status.runtime_status.value in FINISHED:
        return json_response({"error": f"run {status.instance_id} has already finished"}, 409)
    if (status.custom_status or {}).get("stage") == "publishing":
        return json_response({"error": f"run {status.instance_id} is publishing its results"}, 409)
    await client.raise_event(status.instance_id, "cancel", None)
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
    original = status.input_ if isinstance(status.input_, dict) else json.loads(status.input_)
    root = original.get("retry_of") or status.instance_id
    # A retry completes a *published* run; the run's current manifest (after earlier retries) says what failed.
    published = run_prefix(root) + "manifest.json"
    if not storage().exists(settings().results_container, run_prefix(root) + "_SUCCESS"):
        return json_response({"error": f"run {root} published no results; start a new run instead"}, 409)
    manifest = storage().read_json(settings().results_container, published)
    failed = sorted(manifest["postcodes_failed"])
    if not failed:
        return json_response({"error": f"run {root} has no failed postcodes to retry"}, 409)
    retry = RunRequest.from_json({**original, "version": manifest["model"]["version"],
                                  "input_blob": manifest["input"]["blob"],
                                  "postcodes": failed, "trigger": "retry", "retry_of": root, "dry_run": False})
    for n in range(1, 100):
        run_id = naming.retry_run_id(root, n)
        if not await client.get_status(run_id):
            break
    await client.start_new(RUN_ORCHESTRATOR, run_id, retry.to_json())
    base = req.url.split("/api/")[0]
    return json_response({"id": run_id, "retry_of": root, "postcodes": len(failed),
                          "statusUrl": f"{base}/api/runs/{run_id}"}, 202)


# ------------------------------------------------------------------------------------------ helpers


def check_model_version(model: str, version: str) -> None:
    """Refuse at the door a model or version that does not exist (a 400 naming it), before any run."""
    try:
        store = ModelStore(storage(), settings().models_container)
        store.read_manifest(model, store.resolve_version(model, version))
    except VersionNotFound as e:
        raise RequestError("version" if store.versions(model) else "model", str(e)) from None


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
    from orchestrators import sweeper
    from orchestrators.services import container_groups, storage

    s = settings()

    async def is_active(instance_id: str) -> bool:
        return await sweeper.instance_is_active(client, instance_id)

    results = await sweeper.sweep_orphans(container_groups(), storage(), s.results_container, is_active,
                                          timedelta(minutes=s.orphan_ttl_minutes), datetime.now(UTC))
    for result in results:
        log.log(result.level, result.summary())
