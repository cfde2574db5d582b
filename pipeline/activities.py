"""Activities: thin adapters from the orchestrations to Blob Storage and ACI. All I/O happens here."""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, date, datetime

import azure.durable_functions as df

from scoring.job import Job

from . import naming
from .aci.errors import AciError, is_quota_error
from .aci.spec import APP_TAG, scoring_spec
from .planning import plan_run as make_plan
from .publish import publish_run as publish
from .run_requests import RunRequest
from .services import container_groups, settings, storage

log = logging.getLogger(__name__)


def plan_run(payload: dict) -> dict:
    s = settings()
    plan = make_plan(RunRequest.from_json(payload["request"]), payload["run_id"], s, storage(),
                     today=date.fromisoformat(payload["today"]))
    plan["timing"] = {
        "poll_first_seconds": min(s.poll_first_seconds, s.poll_interval_seconds),
        "poll_seconds": s.poll_interval_seconds,
        "deadline_minutes": s.shard_deadline_minutes,
        "provisioning_deadline_minutes": s.provisioning_deadline_minutes,
        "retry_interval_seconds": s.aci_retry_interval_seconds,
        "retry_attempts": s.aci_retry_attempts,
        "shard_attempts": s.shard_attempts,
        "quota_waits": 2 * s.aci_retry_attempts,
    }
    return plan


def create_container_group(shard: dict) -> dict:
    """Write the shard's job spec, then create its group. Permanent ARM errors come back as a result
    (no blind retries); transient ones raise, and the orchestration retries them with durable timers."""
    s = settings()
    job = Job(model=shard["model"], version=shard["version"], input_container=shard["input"]["container"],
              input_blob=shard["input"]["blob"], postcodes=tuple(shard["postcodes"]),
              output_container=s.results_container, output_prefix=shard["output_prefix"], horizon=shard["horizon"],
              models_container=s.models_container, run_id=shard["run_id"], shard=shard["index"],
              input_etag=shard["input"]["etag"])
    job_blob = naming.job_blob(shard["run_id"], shard["index"], shard["attempt"])
    storage().write_json(s.results_container, job_blob, job.to_json())
    environment = {"SCORING_JOB_BLOB": f"{s.results_container}/{job_blob}",
                   "SCORING_WORKERS": str(max(1, int(s.container_cpu)))}
    secure = {}
    if s.storage_account_url:
        environment["SCORING_STORAGE_ACCOUNT_URL"] = s.storage_account_url
    if s.storage_connection_string:  # development (Azurite) only; never a plain value
        secure["SCORING_STORAGE_CONNECTION_STRING"] = s.storage_connection_string
    if s.managed_identity_client_id:
        environment["AZURE_CLIENT_ID"] = s.managed_identity_client_id
    tags = {**APP_TAG, "run": shard["run_id"], "shard": str(shard["index"]),
            "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    try:
        container_groups().create(scoring_spec(s, shard["group"], environment, secure, tags))
    except AciError as e:
        if is_quota_error(e.code):  # waited out by the orchestration, which also lowers the run's parallelism
            return {"ok": False, "quota": True, "reason": str(e), "code": e.code}
        if e.retryable:
            raise
        return {"ok": False, "reason": str(e), "code": e.code}
    return {"ok": True}


def get_container_state(name: str) -> dict | None:
    state = container_groups().state(name)
    return None if state is None else {**dataclasses.asdict(state), "terminated": state.terminated}


def save_container_logs(request: dict) -> str:
    """Keep the container's logs before the group is deleted (ACI keeps them only while it exists)."""
    logs = container_groups().logs(request["group"])
    storage().write_bytes(settings().results_container, request["blob"], logs.encode(), content_type="text/plain")
    return f"{settings().results_container}/{request['blob']}"


def delete_container_group(name: str) -> bool:
    return container_groups().delete(name)


def read_shard_status(prefix: str) -> dict | None:
    s = settings()
    info = storage().info(s.results_container, prefix + "status.json")
    if info is None:
        return None
    status = storage().read_json(s.results_container, prefix + "status.json")
    keep = ("scored", "failed", "rows", "exit_code", "error", "timings", "started", "finished", "cores")
    return {**{k: status.get(k) for k in keep}, "output_prefix": prefix}


def publish_run(publication: dict) -> dict:
    return publish(publication["plan"], publication["shards"], publication["failed"], settings(), storage())


async def request_shard_cancel(instance_ids: list[str], client: df.DurableOrchestrationClient) -> int:
    """Forward a run's cancel to its running shards; each then stops and deletes its group. A shard that
    finished meanwhile answers 410 (or 404 before it exists): nothing to cancel there, go on with the rest."""
    forwarded = 0
    for instance_id in instance_ids:
        try:
            await client.raise_event(instance_id, "cancel", None)
            forwarded += 1
        except Exception as e:  # noqa: BLE001 - the SDK raises plain Exception for 404/410
            log.info("cancel not forwarded to %s: %s", instance_id, e)
    return forwarded
