"""Model routes: list versions, move the champion, register an uploaded version, follow a registration,
read a model's latest published results.

    GET  /api/models/{model}/versions             versions with created, models, R version, champion flag
    PUT  /api/models/{model}/champion             {"version": V}: promote V (or roll back to it)
    POST /api/models/{model}/versions/{version}   body: tar/tar.gz/zip of <postcode>.rds [+ scorer.R], or
                                                  ?upload=<id> of one sent in parts (uploads_routes);
                                                  ?champion=true; 202 + a registration to follow
    GET  /api/registrations/{id}                  checking / registered / refused (with why) / failed
    GET  /api/models/{model}/latest               the latest complete run's results (CSV; X-Run-Id header)
"""

from __future__ import annotations

import asyncio

import azure.durable_functions as df
import azure.functions as func

from pipeline import naming
from pipeline.services import settings, storage
from scoring.blobstore import BlobNotFound
from scoring.modelstore import MANIFEST, ModelStore, ModelStoreError, VersionNotFound, version_prefix
from scoring.names import InvalidName, check_model_name, check_version
from scoring.staged import ArchiveError, archive_members, check_members

from .http import ApiError, body_limit, csv_response, error_response, flag, json_body, json_response
from .registration import (
    REGISTRATION_ORCHESTRATOR,
    RegistrationRequest,
    is_registration_id,
    registration_request,
    registration_view,
)
from .uploads_routes import commit_upload


def model_param(req: func.HttpRequest) -> str:
    try:
        return check_model_name(req.route_params.get("model"))
    except InvalidName as e:
        raise ApiError("model", str(e)) from None


def version_value(value: object, field: str = "version") -> str:
    try:
        return check_version(value)
    except InvalidName as e:
        raise ApiError(field, str(e)) from None


def model_store() -> ModelStore:
    return ModelStore(storage(), settings().models_container)


def champion_of(store: ModelStore, model: str) -> str | None:
    try:
        return store.resolve_version(model, "champion")
    except ModelStoreError:
        return None


def version_rows(store: ModelStore, model: str) -> list[dict]:
    champion = champion_of(store, model)
    rows = []
    for version in store.versions(model):
        manifest = store.read_manifest(model, version)
        rows.append({"version": version, "created": manifest.created, "models": len(manifest.models),
                     "r_version": manifest.r_version, "champion": version == champion,
                     "scorer": bool(manifest.scorer)})
    return sorted(rows, key=lambda r: (r["created"], r["version"]))


def list_versions(req: func.HttpRequest) -> func.HttpResponse:
    try:
        model = model_param(req)
        rows = version_rows(model_store(), model)
        if not rows:
            raise ApiError("model", f"model {model!r} has no versions", 404)
    except ApiError as e:
        return error_response(e)
    return json_response({"model": model, "versions": rows})


def set_champion(req: func.HttpRequest) -> func.HttpResponse:
    try:
        model = model_param(req)
        body = json_body(req.get_body())
        unknown = sorted(set(body) - {"version"})
        if unknown:
            raise ApiError(unknown[0], "unknown field; allowed: version")
        if "version" not in body:
            raise ApiError("version", "required: the registered version to make the champion")
        version = version_value(body["version"])
        store = model_store()
        previous = champion_of(store, model)
        try:
            store.set_alias(model, version)
        except VersionNotFound as e:
            raise ApiError("version" if store.versions(model) else "model", str(e), 404) from None
    except ApiError as e:
        return error_response(e)
    return json_response({"model": model, "champion": version, "previous": previous})


async def register_upload(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Refuse what can be refused at once (names, size, archive contents, an existing version); stage the
    upload; start the registration job, whose R checks run in the scoring image."""
    try:
        request = await asyncio.to_thread(stage_registration, req)  # blob I/O off the event loop
    except ApiError as e:
        return error_response(e)
    await client.start_new(REGISTRATION_ORCHESTRATOR, request.id, request)
    base = req.url.split("/api/")[0]
    status_url = f"{base}/api/registrations/{request.id}"
    return json_response({"id": request.id, "model": request.model, "version": request.version,
                          "statusUrl": status_url}, 202, headers={"Location": status_url})


def stage_registration(req: func.HttpRequest) -> RegistrationRequest:
    """The checks at the door, then the staged upload: the body, or the committed parts of an upload."""
    s = settings()
    model = model_param(req)
    version = version_value(req.route_params.get("version"))
    champion = flag(req.params, "champion")
    unknown = sorted(set(req.params) - {"champion", "upload", "code"})
    if unknown:
        raise ApiError(unknown[0], "unknown query parameter; allowed: champion, upload")
    upload = req.params.get("upload")
    data = b""
    if upload is None:
        data = body_limit(req.get_body(), s.max_registration_mb,
                          "a model version archive (larger ones: upload in parts, see /api/uploads)")
        try:
            check_members(archive_members(data))
        except ArchiveError as e:
            raise ApiError("body", str(e), 422) from None
    elif req.get_body():
        raise ApiError("body", "must be empty when the version comes from an upload in parts")
    blobs = storage()
    if blobs.exists(s.models_container, version_prefix(model, version) + MANIFEST):
        raise ApiError("version", f"model {model!r} already has version {version!r}; versions are immutable, "
                                  "register a new one", 409)
    # A version uploaded in parts is checked only in the container (reading it all here costs memory).
    staged = commit_upload(upload) if upload is not None else ""
    request = registration_request(model, version, champion, staged)
    if not staged:
        container, _, name = request.staged.partition("/")
        blobs.ensure_container(container)
        blobs.write_bytes(container, name, data, overwrite=False)
    return request


async def get_registration(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    reg_id = req.route_params.get("id", "")
    if not is_registration_id(reg_id):
        return error_response(ApiError("id", f"{reg_id!r} is not a registration id (reg-<20 hex digits>)"))
    status = await client.get_status(reg_id)
    if not status or status.name != REGISTRATION_ORCHESTRATOR:
        return error_response(ApiError("id", f"no registration {reg_id!r}", 404))
    return json_response(registration_view(status))


def latest_results(req: func.HttpRequest) -> func.HttpResponse:
    s = settings()
    try:
        model = model_param(req)
        try:
            pointer = storage().read_json(s.results_container, naming.latest_pointer(model))
        except BlobNotFound:
            raise ApiError("model", f"model {model!r} has no published complete run", 404) from None
        data = storage().read_bytes(s.results_container, pointer["results"])
    except ApiError as e:
        return error_response(e)
    return csv_response(data, headers={"X-Run-Id": pointer["run_id"], "X-Published": pointer.get("published", "")})
