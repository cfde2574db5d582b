"""Activities: thin adapters from the orchestrations to Blob Storage and ACI. All I/O happens here.

Inputs and results are the typed payloads of pipeline.payloads (the SDK rebuilds them on each side).
"""

from __future__ import annotations

import logging
from datetime import date

import azure.durable_functions as df

from scoring.job import Job
from scoring.secrets import scrub
from scoring.timestamps import now_seconds

from . import admission, naming, plan_store
from .aci.errors import AciError, is_quota_error
from .aci.spec import APP_TAG, scoring_spec
from .failures import gather, with_postcodes, write_failures
from .payloads import (
    CANCEL_EVENT,
    BudgetAnswer,
    BudgetRequest,
    ContainerState,
    CreateResult,
    FailuresWritten,
    GroupRequest,
    LogsRequest,
    PlanRequest,
    Publication,
    Published,
    PublishFailed,
    RunPlan,
    ShardReport,
)
from .planning import PlanError
from .planning import plan_run as make_plan
from .publish import PublishError
from .publish import publish_run as publish
from .scrubbing import scrubbed
from .services import container_groups, settings, storage
from .worker_env import worker_environment

# The fields of the worker's status.json the orchestration keeps (the rest stays in the blob), and those it
# keeps as counts.
REPORT_FIELDS = ("rows", "exit_code", "error", "timings", "started", "finished", "cores")
COUNTED_FIELDS = ("scored", "failed")
log = logging.getLogger(__name__)


@scrubbed
def plan_run(payload: PlanRequest) -> RunPlan:
    """Plan the run, keep the plan in blobs, return it by reference (pipeline/plan_store.py)."""
    s = settings()
    stored = plan_store.stored_plan(storage(), s.results_container, payload)
    if stored is not None:  # this activity ran before for this request: the plan in blobs is the one
        return stored
    try:
        request = with_postcodes(storage(), payload.request)  # a retry's postcodes, by reference
    except ValueError as e:
        raise PlanError(str(e)) from None
    plan = make_plan(request, payload.run_id, s, storage(), today=date.fromisoformat(payload.today))
    return plan_store.write_plan(storage(), s.results_container, payload, plan)


@scrubbed
def create_container_group(shard: GroupRequest) -> CreateResult:
    """Write the shard's job spec, then create its group. Permanent ARM errors come back as a result
    (no blind retries); transient ones raise, and the orchestration retries them with durable timers."""
    s = settings()
    work = shard.shard
    postcodes = plan_store.read_shard_postcodes(storage(), s.results_container, work)
    # The worker reads its job and writes its output in STAGING_CONTAINER only; the app publishes from there.
    job = Job(model=work.model, version=work.version, input_container=work.input.container,
              input_blob=work.input.blob, postcodes=tuple(postcodes),
              output_container=s.staging_container, output_prefix=shard.output_prefix, horizon=work.horizon,
              models_container=s.models_container, run_id=work.run_id, shard=work.index,
              input_etag=work.input.etag, ts_max_gap_days=work.ts_max_gap_days)
    job_blob = naming.job_blob(work.run_id, work.index, shard.attempt)
    storage().write_json(s.staging_container, job_blob, job.to_json())
    environment, secure = worker_environment(s, job_blob)
    tags = {**APP_TAG, "run": work.run_id, "shard": str(work.index), "created": now_seconds()}
    try:
        container_groups().create(scoring_spec(s, shard.group, environment, secure, tags))
    except AciError as e:
        if is_quota_error(e.code):  # waited out by the orchestration, which also lowers the run's parallelism
            return CreateResult(ok=False, quota=True, reason=str(e), code=e.code)
        if e.retryable:
            raise
        return CreateResult(ok=False, reason=str(e), code=e.code)
    return CreateResult(ok=True)


@scrubbed
def get_container_state(name: str) -> ContainerState | None:
    return container_groups().state(name)


@scrubbed
def save_container_logs(request: LogsRequest) -> str:
    """Keep the container's logs before the group is deleted (ACI keeps them only while it exists)."""
    logs = scrub(container_groups().logs(request.group))  # model code can print what it reads from env
    storage().write_bytes(settings().results_container, request.blob, logs.encode(), content_type="text/plain")
    return f"{settings().results_container}/{request.blob}"


def delete_container_group(name: str) -> bool:
    return container_groups().delete(name)


@scrubbed
def read_shard_status(prefix: str) -> ShardReport | None:
    s = settings()
    info = storage().info(s.staging_container, prefix + "status.json")
    if info is None:
        return None
    status = storage().read_json(s.staging_container, prefix + "status.json")
    # Counts only: the postcodes and reasons stay in status.json, where publish reads them (slim history).
    counts = {k: len(status[k]) for k in COUNTED_FIELDS if isinstance(status.get(k), list | dict)}
    return ShardReport.from_json({**{k: status[k] for k in REPORT_FIELDS if k in status}, **counts,
                                  "output_prefix": prefix})


@scrubbed
def acquire_vcpu(request: BudgetRequest) -> BudgetAnswer:
    return admission.acquire(storage(), settings(), request.holder, request.run)


def release_vcpu(group: str) -> bool:
    return admission.release(storage(), settings(), group)


@scrubbed
def publish_run(publication: Publication) -> Published | PublishFailed:
    """A permanent failure comes back as PublishFailed (not retried); transient ones raise."""
    try:
        return publish(publication.plan, publication.shards, settings(), storage())
    except PublishError as e:
        return PublishFailed(error=str(e))


@scrubbed
def record_failures(publication: Publication) -> FailuresWritten:
    """For a run that publishes nothing (every shard failed, cancelled, publish failed): its failed postcodes
    with their reasons in runs/<run>/failures.json, where its status and failures routes read them."""
    s = settings()
    plan = plan_store.read_plan(storage(), publication.plan)
    failed = gather(storage(), s.staging_container, plan, publication.shards).failed
    blob = naming.failures_blob(plan.run_id)
    return FailuresWritten(failures=write_failures(storage(), s.results_container, blob, plan.run_id, "", failed),
                           count=len(failed))


async def request_shard_cancel(instance_ids: list[str], client: df.DurableOrchestrationClient) -> int:
    """Forward a run's cancel to its running shards; each then stops and deletes its group. A shard that
    finished meanwhile answers 410 (or 404 before it exists): nothing to cancel there, go on with the rest."""
    forwarded = 0
    for instance_id in instance_ids:
        try:
            await client.raise_event(instance_id, CANCEL_EVENT, None)
            forwarded += 1
        except Exception as e:  # noqa: BLE001 - the SDK raises plain Exception for 404/410
            log.info("cancel not forwarded to %s: %s", instance_id, e)
    return forwarded
