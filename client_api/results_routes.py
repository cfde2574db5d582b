"""Results routes: what a run published, and input data uploaded as a CSV body.

    GET /api/runs/{id}/results    the published results.csv (404 unknown run, 409 not published yet)
    GET /api/runs/{id}/manifest   the run manifest (lineage, shards, cost, failed postcodes)
    GET /api/runs/{id}/failures   {"run_id", "publication", "finished", "count", "failures": [{"postcode", "reason"}]}
                                  (pipeline/failures.py; also for a finished run that published nothing)
    GET /api/runs/{id}/accuracy/{table}   metrics.csv or pairs.csv of the run's latest evaluation (the
                                  pointer GET /api/runs/{id}/accuracy names them; 404 says what is missing)
    PUT /api/inputs/{name}        a CSV body (postcode, date, features), checked as a run would check it,
                                  stored once at INPUT_CONTAINER/UPLOAD_PREFIX<name> (never overwritten)

A retry publishes into the run it retries; asked for by its own id, it answers with that run's publication.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import azure.durable_functions as df
import azure.functions as func

from pipeline import naming
from pipeline.accuracy import read_accuracy
from pipeline.failures import FailuresError, failures_view
from pipeline.payloads import PayloadError, RunRequest, decode
from pipeline.planning import PlanError, input_postcodes
from pipeline.revisions import UnreadablePointer, current_revision
from pipeline.run_status import FINISHED, RUN_ORCHESTRATOR
from pipeline.services import settings, storage
from scoring.blobstore import BlobExists
from scoring.names import SAFE_TOKEN, is_valid_postcode, postcode_pattern

from .http import ApiError, body_limit, csv_response, error_response, json_response


async def current_files(run_id: str) -> str:
    """The folder of the run's current revision's files, or "" if it published nothing; 409 naming the
    pointer if it cannot be followed."""
    try:
        current = await asyncio.to_thread(current_revision, storage(), settings().results_container, run_id)
    except UnreadablePointer as e:
        raise ApiError("id", f"run {run_id!r}: {e}", 409) from None
    return current.prefix if current else ""


async def published_prefix(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> str:
    """The folder of the files of a run that has published; 400 for a malformed id, 404 unknown, 409 not
    yet. A retry publishes into the run it retries: its id leads there once it has finished."""
    run_id = req.route_params.get("id", "")
    if not naming.is_run_id(run_id):
        raise ApiError("id", f"{run_id!r} is not a run id (lowercase letters, digits and '-')")
    prefix = await current_files(run_id)
    if prefix:
        return prefix
    status = await client.get_status(run_id)
    if not status or status.name != RUN_ORCHESTRATOR:
        raise ApiError("id", f"no run {run_id!r}", 404)
    state = status.runtime_status.value if status.runtime_status else "unknown"
    try:
        root = decode(status.input_, RunRequest).retry_of
    except PayloadError:
        root = None
    if state in FINISHED and root and naming.is_run_id(root):
        prefix = await current_files(root)
        if prefix:
            return prefix
    raise ApiError("id", f"run {run_id!r} has published no results (it is {state.lower()})", 409)


async def run_results(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    try:
        prefix = await published_prefix(req, client)
    except ApiError as e:
        return error_response(e)
    data = await asyncio.to_thread(storage().read_bytes, settings().results_container, prefix + "results.csv")
    return csv_response(data)


async def run_manifest(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    try:
        prefix = await published_prefix(req, client)
    except ApiError as e:
        return error_response(e)
    return json_response(await asyncio.to_thread(storage().read_json, settings().results_container,
                                                 prefix + "manifest.json"))


async def run_failures(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """One implementation with the dashboard's route: pipeline.failures.failures_view."""
    run_id = req.route_params.get("id", "")
    status = await client.get_status(run_id, show_input=True) if naming.is_run_id(run_id) else None
    try:
        view = await asyncio.to_thread(failures_view, run_id, status, storage(), settings().results_container)
    except FailuresError as e:
        return error_response(ApiError(e.field, str(e), e.status))
    return json_response(view)


ACCURACY_TABLES = ("metrics", "pairs")


def accuracy_table(req: func.HttpRequest) -> func.HttpResponse:
    """One CSV of the evaluation the run's accuracy pointer names (the pointer is written last, so both
    CSVs exist once it names them; a missing one is reported, not papered over)."""
    try:
        run_id = req.route_params.get("id", "")
        table = req.route_params.get("table", "").removesuffix(".csv")
        if not naming.is_run_id(run_id):
            raise ApiError("id", f"{run_id!r} is not a run id (lowercase letters, digits and '-')")
        if table not in ACCURACY_TABLES:
            raise ApiError("table", f"{table!r}: use one of {', '.join(ACCURACY_TABLES)}", 404)
        pointer = read_accuracy(storage(), settings().results_container, run_id)
        if pointer is None:
            raise ApiError("id", f"no accuracy for run {run_id!r} yet: POST actuals to /api/runs/{run_id}/evaluate",
                           404)
        container, _, blob = str(pointer.get(table, "")).partition("/")
        if not blob or not storage().exists(container, blob):
            raise ApiError("table", f"{table}.csv of evaluation {pointer.get('evaluation')!r} of run {run_id!r} "
                                    f"is missing ({pointer.get(table)!r})", 404)
    except ApiError as e:
        return error_response(e)
    return csv_response(storage().read_bytes(container, blob),
                        headers={"X-Evaluation": str(pointer.get("evaluation", ""))})


def check_input_name(name: str) -> str:
    if not SAFE_TOKEN.fullmatch(name) or ".." in name or not name.endswith(".csv"):
        raise ApiError("name", f"{name!r}: use 1-64 letters, digits, '.', '_' or '-', ending in .csv")
    return name


def upload_input(req: func.HttpRequest) -> func.HttpResponse:
    s = settings()
    try:
        name = check_input_name(req.route_params.get("name", ""))
        data = body_limit(req.get_body(), s.max_input_upload_mb, "an input CSV")
        try:
            rows = input_postcodes(data, "the CSV body", today=datetime.now(UTC).date())
        except PlanError as e:
            raise ApiError("body", str(e), 422) from None
        pattern = postcode_pattern()
        bad = sorted(pc for pc in rows if not is_valid_postcode(pc, pattern))
        if bad:
            raise ApiError("body", f"{len(bad)} postcode(s) do not match {pattern.pattern}, e.g. {bad[0]!r}", 422)
        blob = s.upload_prefix + name
        try:
            etag = storage().write_bytes(s.input_container, blob, data, overwrite=False, content_type="text/csv")
        except BlobExists:
            raise ApiError("name", f"input {blob!r} exists; uploads are never overwritten, choose another name",
                           409) from None
    except ApiError as e:
        return error_response(e)
    return json_response({"input": blob, "etag": etag, "rows": sum(rows.values()), "postcodes": len(rows)}, 201)
