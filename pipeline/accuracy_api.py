"""Accuracy routes and triggers, on a blueprint of their own (build_accuracy_blueprint, registered in
function_app.py):

    POST /api/runs/{id}/evaluate   actuals CSV (postcode,date,volume) in the body -> stored under the run's
                                   actuals folder, evaluation started -> 202
    GET  /api/runs/{id}/accuracy   the latest evaluation: overall and per-version metrics, CSV locations
    blob INPUT_CONTAINER/ACTUALS_PREFIX<run id>/<name>   a new actuals blob -> one evaluation per blob and ETag

Both starts go through `evaluate_run` (one activity, `evaluate_accuracy`), named after the actuals blob and
its ETag, so an event delivered twice, or a POST and the blob event it causes, evaluate once.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import azure.durable_functions as df
import azure.functions as func

from scoring.errors import one_line

from . import accuracy, naming
from .accuracy import AccuracyError, actuals_prefix, evaluation_id, parse_actuals, read_accuracy
from .payloads import Payload
from .revisions import current_revision
from .services import settings, storage
from .trigger_support import blob_etag, start_once

log = logging.getLogger(__name__)
EVALUATE_ORCHESTRATOR = "evaluate_run"


class EvaluationState(enum.StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"


@dataclass(frozen=True)
class EvaluationRequest(Payload):
    """evaluate_run's input: the run, and the evaluation's name (from the actuals blob and its ETag)."""

    run_id: str
    evaluation: str


@dataclass(frozen=True)
class EvaluationResult(Payload):
    """evaluate_accuracy's answer and evaluate_run's output."""

    run_id: str
    state: EvaluationState
    rows: int = 0
    metrics: str | None = None  # container/blob of metrics.csv
    error: str = ""


def _json(body: dict, status: int = 200, headers: dict | None = None) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body, default=str), status_code=status, mimetype="application/json",
                             headers=headers)


def _published(run_id: str) -> bool:
    return naming.is_run_id(run_id) and current_revision(storage(), settings().results_container, run_id) is not None


async def evaluate(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    run_id = req.route_params["id"]
    # Storage calls block: off the event loop, which the host shares between requests.
    if not await asyncio.to_thread(_published, run_id):
        return _json({"error": f"no published run {run_id!r}"}, 404)
    body = req.get_body()
    try:
        parse_actuals(body, "request body")  # every problem is a 400 naming it, before anything is stored
    except AccuracyError as e:
        return _json({"error": str(e)}, 413 if "the limit is" in str(e) else 400)
    s = settings()
    name = actuals_prefix(s.actuals_prefix, run_id) + datetime.now(UTC).strftime("posted-%Y%m%dT%H%M%S%fZ.csv")
    etag = await asyncio.to_thread(storage().write_bytes, s.input_container, name, body, content_type="text/csv")
    instance_id = evaluation_id(name, str(etag).strip('"'))
    try:
        await start_once(client, instance_id, EvaluationRequest(run_id=run_id, evaluation=instance_id),
                         EVALUATE_ORCHESTRATOR)
    except Exception as e:  # noqa: BLE001 - the stored blob's event starts the same evaluation id later
        log.warning("evaluation %s not started now: %s", instance_id, one_line(e))
        return _json({"error": f"actuals stored as {s.input_container}/{name}, but the evaluation could not start "
                               "now; their blob event will start it"}, 503, headers={"Retry-After": "30"})
    base = req.url.split("/api/")[0]
    return _json({"id": instance_id, "run_id": run_id, "actuals": f"{s.input_container}/{name}",
                  "accuracyUrl": f"{base}/api/runs/{run_id}/accuracy"}, 202,
                 headers={"Location": f"{base}/api/runs/{run_id}/accuracy"})


def get_accuracy(req: func.HttpRequest) -> func.HttpResponse:
    run_id = req.route_params["id"]
    if not naming.is_run_id(run_id):
        return _json({"error": f"no run {run_id!r}"}, 404)
    found = read_accuracy(storage(), settings().results_container, run_id)
    if found is None:
        return _json({"error": f"no accuracy for run {run_id!r} yet: POST actuals to /api/runs/{run_id}/evaluate "
                               f"or drop them under {settings().input_container}/{settings().actuals_prefix}{run_id}/"},
                     404)
    return _json(found)


async def new_actuals_blob(blob: func.InputStream, client: df.DurableOrchestrationClient) -> None:
    _, _, name = blob.name.partition("/")
    run_id = name.removeprefix(settings().actuals_prefix).split("/", 1)[0]
    # The host's ETag property is not a usable string (see pipeline/trigger_support.py): read it from storage,
    # so this names the same evaluation as the POST that wrote the blob.
    etag = await asyncio.to_thread(blob_etag, storage(), blob.name) or ""
    if not etag or not await asyncio.to_thread(_published, run_id):
        log.error("actuals blob %s: not evaluated (expected %s<published run id>/<name>.csv with an ETag)",
                  blob.name, settings().actuals_prefix)
        return
    instance_id = evaluation_id(name, etag)
    await start_once(client, instance_id, EvaluationRequest(run_id=run_id, evaluation=instance_id),
                     EVALUATE_ORCHESTRATOR)


def evaluate_run(context: df.DurableOrchestrationContext):
    request = EvaluationRequest.from_json(context.get_input())
    try:
        result: EvaluationResult = yield context.call_activity("evaluate_accuracy", request)
    except Exception as e:  # noqa: BLE001 - the reason is the evaluation's output
        result = EvaluationResult(run_id=request.run_id, state=EvaluationState.FAILED, error=one_line(e))
    return result.to_json()


def evaluate_accuracy(request: EvaluationRequest) -> EvaluationResult:
    s = settings()
    pointer = accuracy.evaluate_run(request.run_id, request.evaluation, storage(), s.results_container,
                                    s.input_container, s.actuals_prefix)
    return EvaluationResult(run_id=request.run_id, state=EvaluationState.COMPLETED, rows=pointer["rows"],
                            metrics=pointer["metrics"])


def build_accuracy_blueprint() -> df.Blueprint:
    """A new blueprint with the accuracy routes, the actuals blob trigger and the evaluation orchestration."""
    bp = df.Blueprint()
    bp.route(route="runs/{id}/evaluate", methods=["POST"])(bp.durable_client_input(client_name="client")(evaluate))
    bp.route(route="runs/{id}/accuracy", methods=["GET"])(get_accuracy)
    bp.blob_trigger(arg_name="blob", path="%INPUT_CONTAINER%/%ACTUALS_PREFIX%{name}", connection="STORAGE",
                    source=func.BlobSource.EVENT_GRID)(bp.durable_client_input(client_name="client")(new_actuals_blob))
    bp.orchestration_trigger(context_name="context")(evaluate_run)
    bp.activity_trigger(input_name="request")(evaluate_accuracy)
    return bp
