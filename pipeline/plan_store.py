"""A run's plan in Blob Storage, so that durable history carries references and counts, not postcodes.

    runs/<run>/plan/shard-NNN.json   {"run_id", "index", "postcodes"}: read by the create activity
    runs/<run>/plan/plan.json        {"request", "plan"}: the full Plan, written last; read by publish

History (every episode replays it, the Durable store keeps it) then grows with shards, not postcodes: the
plan_run activity returns a RunPlan (counts, each shard's size, first and last postcode and blob), shard
inputs and create requests carry the blob's name, outcomes carry counts.

The plan is written once per execution of a run: plan.json is the commit mark (the shard blobs are written
first). An activity run again for the same PlanRequest (at-least-once delivery) returns the plan already
written instead of planning again, so the blobs and the RunPlan in history always agree; a different
PlanRequest under the same run id (a run restarted after its history was purged) plans anew.
"""

from __future__ import annotations

from scoring.blobstore import BlobNotFound, BlobStore

from . import naming
from .payloads import Plan, PlanRequest, RunPlan, ShardInput, ShardRef


class PlanStoreError(ValueError):
    """A plan blob that is missing or does not match the run's RunPlan; the message names the blob."""


def write_plan(blobs: BlobStore, container: str, request: PlanRequest, plan: Plan) -> RunPlan:
    """Store the plan's shards and then the plan; the RunPlan that refers to them."""
    refs = []
    for shard in plan.shards:
        blob = naming.plan_shard_blob(plan.run_id, shard.index)
        blobs.write_json(container, blob, {"run_id": plan.run_id, "index": shard.index,
                                           "postcodes": shard.postcodes})
        refs.append(ShardRef(index=shard.index, size=len(shard.postcodes), first=shard.postcodes[0],
                             last=shard.postcodes[-1], blob=blob))
    blobs.write_json(container, naming.plan_blob(plan.run_id), {"request": request.to_json(),
                                                                "plan": plan.to_json()})
    return run_plan(plan, refs, f"{container}/{naming.plan_blob(plan.run_id)}")


def stored_plan(blobs: BlobStore, container: str, request: PlanRequest) -> RunPlan | None:
    """The RunPlan of the plan already written for this very request (the activity ran before), else None."""
    try:
        stored = blobs.read_json(container, naming.plan_blob(request.run_id))
    except BlobNotFound:
        return None
    if stored.get("request") != request.to_json():
        return None
    plan = Plan.from_json(stored["plan"])
    refs = [ShardRef(index=s.index, size=len(s.postcodes), first=s.postcodes[0], last=s.postcodes[-1],
                     blob=naming.plan_shard_blob(plan.run_id, s.index)) for s in plan.shards]
    return run_plan(plan, refs, f"{container}/{naming.plan_blob(plan.run_id)}")


def run_plan(plan: Plan, refs: list[ShardRef], plan_blob: str) -> RunPlan:
    return RunPlan(run_id=plan.run_id, model=plan.model, version=plan.version, input=plan.input,
                   horizon=plan.horizon, trigger=plan.trigger, retry_of=plan.retry_of, subset=plan.subset,
                   postcodes_total=plan.postcodes_total, failed=len(plan.failed),
                   parallel_groups=plan.parallel_groups, container=plan.container, estimate=plan.estimate,
                   shards=refs, timing=plan.timing, plan_blob=plan_blob, input_time=plan.input_time,
                   planned_at=plan.planned_at, champion=plan.champion, ts_max_gap_days=plan.ts_max_gap_days,
                   warnings=plan.warnings)


def read_plan(blobs: BlobStore, ref: RunPlan) -> Plan:
    """The full Plan a RunPlan stands for; PlanStoreError if it is gone or is another plan."""
    container, _, name = ref.plan_blob.partition("/")
    try:
        stored = blobs.read_json(container, name)
    except BlobNotFound:
        raise PlanStoreError(f"the plan of run {ref.run_id} is missing ({ref.plan_blob})") from None
    plan = Plan.from_json(stored.get("plan"))
    if (plan.run_id, plan.planned_at, len(plan.shards)) != (ref.run_id, ref.planned_at, len(ref.shards)):
        raise PlanStoreError(f"{ref.plan_blob} is not the plan run {ref.run_id} was started with")
    return plan


def read_shard_postcodes(blobs: BlobStore, container: str, shard: ShardInput) -> list[str]:
    """The shard's postcodes, checked against what the shard input says of them."""
    where = f"{container}/{shard.postcodes_blob}"
    try:
        stored = blobs.read_json(container, shard.postcodes_blob)
    except BlobNotFound:
        raise PlanStoreError(f"the postcodes of shard {shard.index} of run {shard.run_id} are missing ({where})") \
            from None
    postcodes = stored.get("postcodes")
    if (stored.get("run_id"), stored.get("index")) != (shard.run_id, shard.index) or not isinstance(postcodes, list) \
            or len(postcodes) != shard.postcodes or not all(isinstance(pc, str) for pc in postcodes):
        raise PlanStoreError(f"{where} does not hold the {shard.postcodes} postcodes of shard {shard.index} of run "
                             f"{shard.run_id}")
    return postcodes
