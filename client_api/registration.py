"""Registering an uploaded model version: a short durable job in a container group from the scoring image.

The checks (every model loads in R, postcode names, R packages, versions never overwritten) run in the
image's own R, exactly where the models will be scored, never in the user's R. The group is handled like a
scoring shard: create it, wait with durable timers and deadlines, keep its logs, always delete it. The
outcome (or the refusal with its reason) is the orchestration's output, read by GET /api/registrations/{id}.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

import azure.durable_functions as df

from pipeline.aci.errors import AciError, is_quota_error
from pipeline.aci.spec import APP_TAG, scoring_spec
from pipeline.orchestrations.shard import aci_retry, error_text, wait_for_container
from pipeline.services import container_groups, settings, storage

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
    """Where the parts of an upload are staged (blob name in STAGING_CONTAINER)."""
    if not UPLOAD_ID.fullmatch(upload_id):
        raise ValueError(f"{upload_id!r} is not an upload id (upl-<20 hex digits>)")
    return f"{upload_id}/upload.bin"


@dataclass(frozen=True)
class RegistrationRequest:
    id: str  # also the durable instance id and the container group name
    model: str
    version: str
    champion: bool
    staged: str  # <container>/<blob>: the uploaded archive
    result: str  # <container>/<blob>: where the container writes its outcome
    logs: str  # blob in RESULTS_CONTAINER keeping the container's logs
    timing: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> RegistrationRequest:
        return cls(**d)


@dataclass(frozen=True)
class RegistrationOutcome:
    state: RegistrationState
    error: str = ""
    details: dict = field(default_factory=dict)  # models, packs, slimmed, r_version, r_packages, created
    cleanup_error: str = ""

    def to_json(self) -> dict:
        return {**asdict(self), "state": self.state.value}

    @classmethod
    def from_json(cls, d: dict) -> RegistrationOutcome:
        return cls(RegistrationState(d["state"]), d.get("error", ""), dict(d.get("details") or {}),
                   d.get("cleanup_error", ""))


def registration_request(model: str, version: str, champion: bool, staged: str = "") -> RegistrationRequest:
    """staged: the committed upload (<container>/<blob>) of a version sent in parts; else the body goes to
    the registration's own staging blob."""
    s = settings()
    reg_id = new_registration_id()
    timing = {"poll_seconds": s.poll_interval_seconds, "deadline_minutes": s.shard_deadline_minutes,
              "provisioning_deadline_minutes": s.provisioning_deadline_minutes,
              "retry_interval_seconds": s.aci_retry_interval_seconds, "retry_attempts": s.aci_retry_attempts}
    return RegistrationRequest(id=reg_id, model=model, version=version, champion=champion,
                               staged=staged or f"{s.staging_container}/{reg_id}/upload.bin",
                               result=f"{s.staging_container}/{reg_id}/result.json",
                               logs=f"registrations/{reg_id}/container.log", timing=timing)


def registration_command(request: RegistrationRequest, models_container: str) -> list[str]:
    """Overrides the image's entrypoint (ACI `command` semantics): the image's own `python -m scoring`."""
    command = ["python", "-m", "scoring", "register", "--model", request.model, "--version", request.version,
               "--from-blob", request.staged, "--result-blob", request.result, "--container", models_container]
    return command + (["--champion"] if request.champion else [])


# --------------------------------------------------------------------------------------- orchestration


def register_version(context: df.DurableOrchestrationContext):
    request = RegistrationRequest.from_json(context.get_input())
    timing = request.timing
    context.set_custom_status({"stage": RegistrationState.CHECKING.value})
    cancel = context.wait_for_external_event("cancel")  # never raised by a route; wait_for_container wants one
    try:
        created = yield context.call_activity_with_retry("create_registration_group", aci_retry(timing),
                                                         request.to_json())
        if created["ok"]:
            waited = yield from wait_for_container(context, request.id, timing, cancel)
        else:
            waited = {"state": "failed", "reason": created["reason"]}
    except Exception as e:  # noqa: BLE001 - the reason becomes the registration's error
        waited = {"state": "failed", "reason": f"container group {request.id}: {error_text(e)}"}
    # Logs first (they vanish with the group), then delete, whatever happened above.
    try:
        yield context.call_activity("save_container_logs", {"group": request.id, "blob": request.logs})
    except Exception:  # noqa: BLE001 - the outcome matters more than the logs
        pass
    cleanup_error = ""
    try:
        yield context.call_activity_with_retry("delete_container_group", aci_retry(timing), request.id)
    except Exception as e:  # noqa: BLE001 - reported; the orphan sweeper retries it
        cleanup_error = f"could not delete container group {request.id}: {error_text(e)}"
    outcome = yield context.call_activity("finish_registration", {"request": request.to_json(), "waited": waited})
    return {**outcome, "cleanup_error": cleanup_error}


# ------------------------------------------------------------------------------------------ activities


def create_registration_group(request: dict) -> dict:
    """Create the group. Transient ARM errors (and a full quota) raise: the orchestration retries them."""
    s = settings()
    reg = RegistrationRequest.from_json(request)
    environment = {"SCORING_WORKERS": str(max(1, int(s.container_cpu)))}
    secure = {}
    if s.storage_account_url:
        environment["SCORING_STORAGE_ACCOUNT_URL"] = s.storage_account_url
    if s.storage_connection_string:  # development (Azurite) only; never a plain value
        secure["SCORING_STORAGE_CONNECTION_STRING"] = s.storage_connection_string
    if s.managed_identity_client_id:
        environment["AZURE_CLIENT_ID"] = s.managed_identity_client_id
    tags = {**APP_TAG, "run": reg.id, "shard": "0", "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    try:
        container_groups().create(scoring_spec(s, reg.id, environment, secure, tags,
                                               command=registration_command(reg, s.models_container)))
    except AciError as e:
        if e.retryable or is_quota_error(e.code):
            raise
        return {"ok": False, "reason": str(e)}
    return {"ok": True}


def finish_registration(job: dict) -> dict:
    """Read what the container wrote, then remove the staged upload: the outcome of the registration."""
    reg = RegistrationRequest.from_json(job["request"])
    waited = job["waited"]
    blobs = storage()
    container, _, name = reg.result.partition("/")
    result = blobs.read_json(container, name) if blobs.exists(container, name) else None
    for staged in (reg.staged, reg.result):
        c, _, n = staged.partition("/")
        blobs.delete(c, n)
    if result is not None and result.get("ok"):
        details = {k: v for k, v in result.items() if k != "ok"}
        return RegistrationOutcome(RegistrationState.REGISTERED, details=details).to_json()
    if result is not None:
        return RegistrationOutcome(RegistrationState.REFUSED, error=str(result.get("error", ""))).to_json()
    if waited.get("state") == "exited":
        reason = f"the registration container exited with code {waited.get('exit_code')} and wrote no outcome"
    else:
        reason = waited.get("reason") or "the registration container did not finish"
    return RegistrationOutcome(RegistrationState.FAILED, error=reason).to_json()


def registration_view(status) -> dict:
    """GET /api/registrations/{id}: a stable JSON shape from the durable status."""
    raw = status.input_
    request = raw if isinstance(raw, dict) else json.loads(raw) if isinstance(raw, str) and raw else {}
    runtime = status.runtime_status.value if status.runtime_status else "Unknown"
    view = {"id": status.instance_id, "model": request.get("model"), "version": request.get("version"),
            "champion": request.get("champion"), "created": _iso(status.created_time),
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
