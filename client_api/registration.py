"""Registering an uploaded model version: a short durable job in a container group from the scoring image.

The checks (every model loads in R, postcode names, R packages, versions never overwritten) run in the
image's own R, exactly where the models will be scored, never in the user's R. The group is handled like a
scoring shard: create it, wait with durable timers and deadlines, keep its logs, always delete it. The
outcome (or the refusal with its reason) is the orchestration's output, read by GET /api/registrations/{id}.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import azure.durable_functions as df

from client_api.registration_publish import PublishRefused, delete_staged, publish_staged
from pipeline.aci.errors import AciError, is_quota_error
from pipeline.aci.spec import APP_TAG, scoring_spec
from pipeline.orchestrations.shard import aci_retry, wait_for_container
from pipeline.payloads import (
    CANCEL_EVENT,
    CreateResult,
    LogsRequest,
    Payload,
    PayloadError,
    ShardState,
    Timing,
    decode,
)
from pipeline.services import container_groups, settings, storage
from pipeline.worker_env import worker_environment
from scoring.errors import one_line
from scoring.modelstore import ModelStoreError
from scoring.staged import verified_from_logs
from scoring.timestamps import now_seconds

REGISTRATION_ORCHESTRATOR = "register_version"
REGISTRATION_ID = re.compile(r"reg-[0-9a-f]{20}")
UPLOAD_ID = re.compile(r"upl-[0-9a-f]{20}")
MAX_PARTS = 50_000  # blocks per blob (Put Block List)


class RegistrationState(StrEnum):
    CHECKING = "checking"  # the container is checking and storing the models
    REGISTERED = "registered"
    REFUSED = "refused"  # the models or the request failed a check: `error` says why
    FAILED = "failed"  # the job could not run (container, storage): `error` says why


def new_registration_id() -> str:
    return "reg-" + uuid.uuid4().hex[:20]


def is_registration_id(value: str) -> bool:
    return bool(REGISTRATION_ID.fullmatch(value))


def new_upload_id() -> str:
    return "upl-" + uuid.uuid4().hex[:20]


def upload_blob(upload_id: str) -> str:
    """Where the parts of an upload are kept (blob name in UPLOADS_CONTAINER)."""
    if not UPLOAD_ID.fullmatch(upload_id):
        raise ValueError(f"{upload_id!r} is not an upload id (upl-<20 hex digits>)")
    return f"{upload_id}/upload.bin"


@dataclass(frozen=True)
class RegistrationRequest(Payload):
    """The orchestration's input, also create_registration_group's."""

    id: str  # also the durable instance id and the container group name
    model: str
    version: str
    champion: bool
    staged: str  # <container>/<blob>: the uploaded archive, in UPLOADS_CONTAINER (the worker may only read it)
    result: str  # <container>/<blob>: where the container writes its outcome
    logs: str  # blob in RESULTS_CONTAINER keeping the container's logs
    timing: Timing
    output: str = ""  # <container>/<prefix>/ in staging where the container builds the version


@dataclass(frozen=True)
class ContainerWait(Payload):
    """How waiting for the registration container ended (from wait_for_container)."""

    state: ShardState
    reason: str = ""
    exit_code: int | None = None


@dataclass(frozen=True)
class FinishRequest(Payload):
    """finish_registration's input."""

    request: RegistrationRequest
    waited: ContainerWait


@dataclass(frozen=True)
class RegistrationOutcome(Payload):
    """The orchestration's output (as plain JSON: SDK 1.7 refuses objects there)."""

    state: RegistrationState
    error: str = ""
    details: dict[str, Any] = field(default_factory=dict)  # models, packs, slimmed, r_version, r_packages, created
    cleanup_error: str = ""


def registration_request(model: str, version: str, champion: bool, staged: str = "") -> RegistrationRequest:
    """staged: the committed upload (<container>/<blob>) of a version sent in parts; else the body goes to
    the registration's own blob in UPLOADS_CONTAINER. The container writes its outcome and builds the version
    in STAGING_CONTAINER, the only one it may write."""
    s = settings()
    reg_id = new_registration_id()
    timing = Timing(poll_seconds=s.poll_interval_seconds, deadline_minutes=s.shard_deadline_minutes,
                    provisioning_deadline_minutes=s.provisioning_deadline_minutes,
                    retry_interval_seconds=s.aci_retry_interval_seconds, retry_attempts=s.aci_retry_attempts,
                    shard_attempts=1, quota_waits=0)
    return RegistrationRequest(id=reg_id, model=model, version=version, champion=champion,
                               staged=staged or f"{s.uploads_container}/{reg_id}/upload.bin",
                               result=f"{s.staging_container}/{reg_id}/result.json",
                               logs=f"registrations/{reg_id}/container.log", timing=timing,
                               output=f"{s.staging_container}/{reg_id}/out/")


def registration_command(request: RegistrationRequest) -> list[str]:
    """Overrides the image's entrypoint (ACI `command` semantics): the image's own `python -m scoring`.

    It reads the upload (in `uploads`, which it may not write) and writes only in staging (the worker
    identity may not write `models`); the app publishes the built version and moves the champion afterwards
    (finish_registration)."""
    return ["python", "-m", "scoring", "register", "--model", request.model, "--version", request.version,
            "--from-blob", request.staged, "--result-blob", request.result, "--output", request.output]


# --------------------------------------------------------------------------------------- orchestration


def register_version(context: df.DurableOrchestrationContext):
    request = RegistrationRequest.from_json(context.get_input())
    timing = request.timing
    context.set_custom_status({"stage": RegistrationState.CHECKING.value})
    cancel = context.wait_for_external_event(CANCEL_EVENT)  # never raised by a route; wait_for_container wants one
    try:
        created: CreateResult = yield context.call_activity_with_retry("create_registration_group",
                                                                       aci_retry(timing), request)
        if created.ok:
            end = yield from wait_for_container(context, request.id, timing, cancel)
            waited = ContainerWait(end.state, end.reason, end.exit_code)
        else:
            waited = ContainerWait(ShardState.FAILED, created.reason)
    except Exception as e:  # noqa: BLE001 - the reason becomes the registration's error
        waited = ContainerWait(ShardState.FAILED, f"container group {request.id}: {one_line(e)}")
    # Logs first (they vanish with the group), then delete, whatever happened above.
    try:
        yield context.call_activity("save_container_logs", LogsRequest(group=request.id, blob=request.logs))
    except Exception:  # noqa: BLE001 - the outcome matters more than the logs
        pass
    cleanup_error = ""
    try:
        yield context.call_activity_with_retry("delete_container_group", aci_retry(timing), request.id)
    except Exception as e:  # noqa: BLE001 - reported; the orphan sweeper retries it
        cleanup_error = f"could not delete container group {request.id}: {one_line(e)}"
    outcome: RegistrationOutcome = yield context.call_activity("finish_registration",
                                                               FinishRequest(request=request, waited=waited))
    return dataclasses.replace(outcome, cleanup_error=cleanup_error).to_json()


# ------------------------------------------------------------------------------------------ activities


def create_registration_group(request: RegistrationRequest) -> CreateResult:
    """Create the group. Transient ARM errors (and a full quota) raise: the orchestration retries them."""
    s = settings()
    # The scoring containers' environment (worker identity, storage endpoint; never the app's identity),
    # without a job blob: the command says what to do.
    environment, secure = worker_environment(s, f"{request.id}/job.json")
    environment.pop("SCORING_JOB_BLOB")
    tags = {**APP_TAG, "run": request.id, "shard": "0", "created": now_seconds()}
    try:
        container_groups().create(scoring_spec(s, request.id, environment, secure, tags,
                                               command=registration_command(request)))
    except AciError as e:
        if e.retryable or is_quota_error(e.code):
            raise
        return CreateResult(ok=False, reason=str(e), code=e.code)
    return CreateResult(ok=True)


def finish_registration(job: FinishRequest) -> RegistrationOutcome:
    """If the container's kept log vouches for the version it built, verify it and publish it into `models`
    (the app identity may write there, the container's may not); then remove the upload and everything staged.

    Staging is writable by every container, so its result.json serves only to say why a registration was
    refused; success, and what is published, come from the container's own log (see registration_publish)."""
    reg, waited = job.request, job.waited
    blobs = storage()
    container, _, name = reg.result.partition("/")
    result = blobs.read_json(container, name) if blobs.exists(container, name) else None
    verified = verified_from_logs(kept_logs(blobs, reg), reg.output) if reg.output else None
    try:
        if verified is not None:
            return _publish(blobs, reg, verified)
    finally:
        for staged in (reg.staged, reg.result):
            c, _, n = staged.partition("/")
            blobs.delete(c, n)
        if reg.output:
            delete_staged(blobs, reg.output)
    if result is not None and result.get("ok"):
        return RegistrationOutcome(RegistrationState.FAILED, error=(
            f"the registration container's log ({settings().results_container}/{reg.logs}) does not vouch for its "
            f"output {reg.output or '(none named)'}: nothing is published"))
    if result is not None:
        return RegistrationOutcome(RegistrationState.REFUSED, error=str(result.get("error", "")))
    if waited.state == ShardState.EXITED:
        reason = f"the registration container exited with code {waited.exit_code} and wrote no outcome"
    else:
        reason = waited.reason or "the registration container did not finish"
    return RegistrationOutcome(RegistrationState.FAILED, error=reason)


def kept_logs(blobs, reg: RegistrationRequest) -> str:
    """The container's log as save_container_logs kept it in RESULTS_CONTAINER (no container writes there)."""
    container = settings().results_container
    return blobs.read_bytes(container, reg.logs).decode(errors="replace") if blobs.exists(container, reg.logs) \
        else ""


def _publish(blobs, reg: RegistrationRequest, verified: dict) -> RegistrationOutcome:
    try:
        publish_staged(blobs, reg.output, settings().models_container, reg.id, reg.model, reg.version,
                       reg.champion, manifest_sha256=verified["manifest_sha256"])
    except (PublishRefused, ModelStoreError) as e:
        return RegistrationOutcome(RegistrationState.REFUSED, error=one_line(e))
    details = {k: v for k, v in verified.items() if k not in ("ok", "output", "manifest_sha256")}
    return RegistrationOutcome(RegistrationState.REGISTERED, details={**details, "champion": reg.champion})


def registration_view(status) -> dict:
    """GET /api/registrations/{id}: a stable JSON shape from the durable status."""
    try:
        request = decode(status.input_, RegistrationRequest)
        described = {"model": request.model, "version": request.version, "champion": request.champion}
    except PayloadError:
        described = {"model": None, "version": None, "champion": None}
    runtime = status.runtime_status.value if status.runtime_status else "Unknown"
    view = {"id": status.instance_id, **described, "created": _iso(status.created_time),
            "updated": _iso(status.last_updated_time), "error": ""}
    if runtime == "Completed" and isinstance(status.output, dict):
        outcome = RegistrationOutcome.from_json(status.output)
        view.update(state=outcome.state.value, error=outcome.error, details=outcome.details)
        if outcome.cleanup_error:
            view["cleanup_error"] = outcome.cleanup_error
    elif runtime in ("Failed", "Terminated"):
        view.update(state=RegistrationState.FAILED.value, error=str(status.output or f"the job {runtime.lower()}"))
    else:
        view["state"] = RegistrationState.CHECKING.value
    return view


def _iso(value) -> str | None:
    return value.isoformat() if hasattr(value, "isoformat") else value
