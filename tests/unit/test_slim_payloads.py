"""Slim history: the plan lives in blobs, shards and create requests carry references, outcomes carry counts, and
the failed postcodes (with reasons) are read back from blobs by the status and failures routes."""

from __future__ import annotations

import json

import pytest
from azure.durable_functions.models.DurableOrchestrationStatus import DurableOrchestrationStatus
from support.unit_data import put_version

from pipeline import naming
from pipeline import payloads as p
from pipeline.failures import FailuresError, failures_view, gather, status_failures, write_failures
from pipeline.plan_store import PlanStoreError, read_plan, read_shard_postcodes, stored_plan, write_plan
from pipeline.run_status import FAILED_IN_VIEW, RUN_ORCHESTRATOR, run_view

from .test_publish import failures_of, make_plan, publish_run, staged

REQUEST = p.RunRequest("parcels", "v1", "daily/in.csv", None, 2, None, p.Trigger.HTTP)


def plan_request(run_id: str, started: str = "2026-11-23T06:00:00+00:00") -> p.PlanRequest:
    return p.PlanRequest(REQUEST, run_id, "2026-11-23", started)


def postcodes(n: int) -> list[str]:
    return [f"{10000 + i}" for i in range(n)]


def cut(pcs: list[str], shards: int) -> list[list[str]]:
    size = -(-len(pcs) // shards)
    return [pcs[i:i + size] for i in range(0, len(pcs), size)]


def sizes(mem, n: int) -> dict[str, int]:
    """Bytes of each payload that crosses an orchestration boundary, for a run of n postcodes in 4 shards with
    a tenth of them failed at planning and another tenth in the shards."""
    pcs = postcodes(n)
    failed = {pc: "no input rows for this postcode" for pc in pcs[: n // 10]}
    plan = make_plan(f"run-n{n}", cut(pcs[n // 10:], 4), failed=failed)
    ref = write_plan(mem, "results", plan_request(plan.run_id), plan)
    shard = ref.shard_input(ref.shards[0])
    create = p.GroupRequest(shard=shard, attempt=2, group=naming.group_name(plan.run_id, 0, 2),
                            output_prefix=naming.staging_prefix(plan.run_id, 0, 2))
    report = p.ShardReport(output_prefix=create.output_prefix, scored=shard.postcodes - n // 40, failed=n // 40,
                           rows=2 * shard.postcodes)
    outcomes = [p.ShardOutcome(index=s.index, state=p.ShardState.PARTIAL, status=report, postcodes=s.size)
                for s in ref.shards]
    result = p.RunResult(run_id=plan.run_id, model="parcels", trigger=p.Trigger.HTTP, postcodes_scored=n - n // 5,
                         postcodes_failed_count=n // 5, failures=f"results/{naming.failures_blob(plan.run_id)}")
    return {name: len(json.dumps(value.to_json())) for name, value in {
        "plan": ref, "shard": shard, "create": create, "report": report,
        "publication": p.Publication(plan=ref, shards=outcomes), "result": result}.items()}


def test_payloads_that_cross_the_boundary_do_not_grow_with_postcodes(mem):
    small, large = sizes(mem, 400), sizes(mem, 40_000)
    for name in small:  # 100x the postcodes: only the digits of the counts grow
        assert large[name] < small[name] * 1.1, (name, small[name], large[name])
    assert large["plan"] < 3000 and large["create"] < 1500


# ------------------------------------------------------------------------------------------- plan blobs


def test_the_plan_is_kept_in_blobs_and_the_run_plan_refers_to_them(mem):
    plan = make_plan("run-a", [["8001", "8002"], ["8003"]], failed={"8004": "no input rows for this postcode"})
    ref = write_plan(mem, "results", plan_request("run-a"), plan)
    assert ref.plan_blob == "results/runs/run-a/plan/plan.json" and ref.failed == 1 and ref.postcodes_total == 4
    assert [(s.index, s.size, s.first, s.last, s.blob) for s in ref.shards] == [
        (0, 2, "8001", "8002", "runs/run-a/plan/shard-000.json"),
        (1, 1, "8003", "8003", "runs/run-a/plan/shard-001.json")]
    assert read_plan(mem, ref) == plan  # publish reads the whole plan back
    assert read_shard_postcodes(mem, "results", ref.shard_input(ref.shards[0])) == ["8001", "8002"]
    assert (ref.planned_at, ref.champion, ref.input_time) == (plan.planned_at, plan.champion, plan.input_time)


def test_the_plan_activity_run_again_returns_the_plan_already_written(mem):
    plan = make_plan("run-b", [["8001"]])
    ref = write_plan(mem, "results", plan_request("run-b"), plan)
    assert stored_plan(mem, "results", plan_request("run-b")) == ref
    # The same run id started again (its history purged) plans anew: another request is not this plan.
    assert stored_plan(mem, "results", plan_request("run-b", started="2026-11-24T06:00:00+00:00")) is None
    assert stored_plan(mem, "results", plan_request("run-c")) is None


def test_a_shard_blob_that_does_not_match_its_reference_is_refused_naming_it(mem):
    ref = write_plan(mem, "results", plan_request("run-d"), make_plan("run-d", [["8001", "8002"]]))
    shard = ref.shard_input(ref.shards[0])
    mem.write_json("results", shard.postcodes_blob, {"run_id": "run-d", "index": 0, "postcodes": ["8001"]})
    with pytest.raises(PlanStoreError, match=r"results/runs/run-d/plan/shard-000.json does not hold the 2 postcodes"):
        read_shard_postcodes(mem, "results", shard)
    mem.delete("results", shard.postcodes_blob)
    with pytest.raises(PlanStoreError, match="the postcodes of shard 0 of run run-d are missing"):
        read_shard_postcodes(mem, "results", shard)


def test_a_plan_blob_that_is_another_plan_is_refused(mem):
    ref = write_plan(mem, "results", plan_request("run-e"), make_plan("run-e", [["8001"]]))
    write_plan(mem, "results", plan_request("run-e", started="later"), make_plan("run-e", [["8001"]]))
    with pytest.raises(PlanStoreError, match="is not the plan run run-e was started with"):
        read_plan(mem, ref)


def test_publish_without_its_plan_fails_permanently(mem, settings):
    from pipeline.publish import PublishError
    from pipeline.publish import publish_run as publish_from_ref
    ref = write_plan(mem, "results", plan_request("run-f"), make_plan("run-f", [["8001"]]))
    mem.delete("results", "runs/run-f/plan/plan.json")
    with pytest.raises(PublishError, match="the plan of run run-f is missing"):
        publish_from_ref(ref, [], settings, mem)


# -------------------------------------------------------------------------------------- failures from blobs


def test_gather_reads_reasons_from_the_plan_and_status_blobs_and_only_for_assigned_postcodes(mem):
    mem.ensure_container("staging")
    plan = make_plan("run-g", [["8001", "8002"], ["8003"], ["8004"]], failed={"8009": "no input rows"})
    ok = staged(mem, "run-g", 0, ["8001"], failed={"8002": "R error", "8004": "not mine to report"})
    failed_shard = p.ShardOutcome(index=1, state=p.ShardState.TIMED_OUT, reason="no finish in 60 min", postcodes=1)
    scored = staged(mem, "run-g", 2, ["8004"])
    gathered = gather(mem, "staging", plan, [ok, failed_shard, scored])
    assert gathered.failed == {"8009": "no input rows", "8002": "R error",
                               "8003": "shard 1 timed_out: no finish in 60 min"}
    assert gathered.scored == {0: ["8001"], 2: ["8004"]}


def test_a_published_run_keeps_its_failures_with_its_revision(mem, settings):
    put_version(mem, "parcels", "v1", ["8001", "8002"])
    mem.ensure_container("staging")
    plan = make_plan("run-h", [["8001", "8002"]])
    published = publish_run(plan, [staged(mem, "run-h", 0, ["8001"], failed={"8002": "R error"})], settings, mem)
    assert published.failures == "results/runs/run-h/revisions/run-h/failures.json"
    stored = mem.read_json("results", "runs/run-h/revisions/run-h/failures.json")
    assert stored == {"run_id": "run-h", "revision": "run-h", "count": 1, "failures": {"8002": "R error"}}
    assert failures_of(mem, published) == {"8002": "R error"}


# ------------------------------------------------------------------------------- the status and failures views


def durable_status(run_id: str, runtime: str, output=None, request: p.RunRequest = REQUEST):
    return DurableOrchestrationStatus.from_json({
        "name": RUN_ORCHESTRATOR, "instanceId": run_id, "runtimeStatus": runtime,
        "createdTime": "2026-11-23T06:00:00Z", "lastUpdatedTime": "2026-11-23T06:05:00Z",
        "output": output, "customStatus": None, "input": request.to_json()})


def unpublished(mem, run_id: str, failed: dict[str, str]) -> DurableOrchestrationStatus:
    path = write_failures(mem, "results", naming.failures_blob(run_id), run_id, "", failed)
    result = p.RunResult(run_id=run_id, model="parcels", trigger=p.Trigger.HTTP, state=p.RunState.FAILED,
                         postcodes_failed_count=len(failed), failures=path)
    return durable_status(run_id, "Completed", result.to_json())


def test_a_run_that_published_nothing_still_lists_its_failures(mem):
    failed = {"8001": "shard 0 failed: exit 1", "8002": "shard 0 failed: exit 1"}
    view = failures_view("run-i", unpublished(mem, "run-i", failed), mem, "results")
    assert view == {"run_id": "run-i", "publication": None, "finished": True, "count": 2,
                    "failures": [{"postcode": "8001", "reason": failed["8001"]},
                                 {"postcode": "8002", "reason": failed["8002"]}]}


def test_failures_of_a_published_run_and_of_its_retry_come_from_the_current_revision(mem, settings):
    put_version(mem, "parcels", "v1", ["8001", "8002", "8003"])
    mem.ensure_container("staging")
    publish_run(make_plan("run-j", [["8001", "8002", "8003"]]),
                [staged(mem, "run-j", 0, ["8001"], failed={"8002": "R error", "8003": "R error"})], settings, mem)
    view = failures_view("run-j", durable_status("run-j", "Completed"), mem, "results")
    assert view["publication"] == "run-j" and [f["postcode"] for f in view["failures"]] == ["8002", "8003"]
    publish_run(make_plan("run-j-retry1", [["8002", "8003"]], retry_of="run-j", subset=True),
                [staged(mem, "run-j-retry1", 0, ["8002"], failed={"8003": "still failing"})], settings, mem)
    retry = p.RunRequest("parcels", "v1", "daily/in.csv", ["8002", "8003"], 2, None, p.Trigger.RETRY, retry_of="run-j")
    for run_id, request in (("run-j", REQUEST), ("run-j-retry1", retry)):
        view = failures_view(run_id, durable_status(run_id, "Completed", request=request), mem, "results")
        assert view["publication"] == "run-j" and view["failures"] == [{"postcode": "8003", "reason": "still failing"}]


def test_a_revision_from_before_failures_json_is_read_from_its_manifest(mem, settings):
    put_version(mem, "parcels", "v1", ["8001", "8002"])
    mem.ensure_container("staging")
    publish_run(make_plan("run-k", [["8001", "8002"]]),
                [staged(mem, "run-k", 0, ["8001"], failed={"8002": "R error"})], settings, mem)
    mem.delete("results", "runs/run-k/revisions/run-k/failures.json")
    view = failures_view("run-k", durable_status("run-k", "Completed"), mem, "results")
    assert view["failures"] == [{"postcode": "8002", "reason": "R error"}]


def test_an_old_result_with_failures_inline_still_displays(mem):
    old = {"run_id": "run-l", "model": "parcels", "trigger": "http", "state": "failed",
           "postcodes_failed": {"8001": "shard 0 failed: boom"}}
    status = durable_status("run-l", "Completed", old)
    assert failures_view("run-l", status, mem, "results")["failures"] == [
        {"postcode": "8001", "reason": "shard 0 failed: boom"}]
    view = run_view(status)
    assert view["postcodes_failed"] == {"8001": "shard 0 failed: boom"} and view["postcodes_failed_count"] == 1


def test_a_running_run_has_no_failures_yet_and_unknown_runs_are_refused(mem):
    view = failures_view("run-m", durable_status("run-m", "Running"), mem, "results")
    assert view["finished"] is False and view["failures"] == [] and view["count"] == 0
    with pytest.raises(FailuresError, match="no run 'run-n'") as e:
        failures_view("run-n", None, mem, "results")
    assert e.value.status == 404 and e.value.field == "id"
    with pytest.raises(FailuresError, match="is not a run id") as e:
        failures_view("Run_N", None, mem, "results")
    assert e.value.status == 400


def test_missing_failures_blob_is_a_409_naming_the_run(mem):
    status = unpublished(mem, "run-o", {"8001": "x"})
    mem.delete("results", naming.failures_blob("run-o"))
    with pytest.raises(FailuresError, match="run run-o's failures are missing") as e:
        failures_view("run-o", status, mem, "results")
    assert e.value.status == 409


def test_the_status_view_lists_the_first_failures_with_the_count_and_a_link(mem):
    failed = {f"{8000 + i}": f"R error {i}" for i in range(FAILED_IN_VIEW + 50)}
    status = unpublished(mem, "run-p", failed)
    view = run_view(status, status_failures(mem, status), base_url="https://app.example")
    assert view["postcodes_failed_count"] == FAILED_IN_VIEW + 50
    assert list(view["postcodes_failed"]) == sorted(failed)[:FAILED_IN_VIEW]
    assert view["failures_url"] == "https://app.example/api/runs/run-p/failures"
    assert view["failures"] == "results/runs/run-p/failures.json"
    listed = run_view(status)  # the run list reads no blobs: the count and the link only
    assert "postcodes_failed" not in listed and listed["postcodes_failed_count"] == FAILED_IN_VIEW + 50


# ------------------------------------------------------------------------------------- a retry's postcodes


def test_a_retry_names_its_postcodes_by_reference_and_planning_reads_them(mem, settings):
    from pipeline.failures import with_postcodes
    from pipeline.runs_api import retry_request

    put_version(mem, "parcels", "v1", ["8001", "8002", "8003"])
    mem.ensure_container("staging")
    publish_run(make_plan("run-q", [["8001", "8002", "8003"]]),
                [staged(mem, "run-q", 0, ["8001"], failed={"8003": "R error", "8002": "NA volume"})], settings, mem)
    retry = retry_request(REQUEST, "run-q", settings, mem)
    assert retry.postcodes is None and retry.postcodes_blob == "results/runs/run-q/revisions/run-q/failures.json"
    assert retry.retry_of == "run-q" and retry.trigger is p.Trigger.RETRY
    planned = with_postcodes(mem, retry)  # what the plan activity hands to planning
    assert planned.postcodes == ["8002", "8003"] and planned.postcodes_blob is None
    assert with_postcodes(mem, REQUEST) is REQUEST
    mem.delete("results", "runs/run-q/revisions/run-q/failures.json")
    with pytest.raises(ValueError, match="the failures this retry reruns are missing"):
        with_postcodes(mem, retry)


@pytest.mark.parametrize("status, why", [
    (None, "its status.json is gone"),
    (b"[1, 2]", "its status.json is not a JSON object"),
    (b"{not json", "is not valid JSON"),
    (b'{"scored": "8001", "failed": {}}', "does not list scored and failed postcodes"),
    (b'{"scored": ["8001"], "failed": {"8002": 3}}', "does not list scored and failed postcodes"),
])
def test_a_shard_whose_status_json_is_unusable_is_left_out_with_the_reason(mem, settings, status, why):
    put_version(mem, "parcels", "v1", ["8001", "8002", "8003"])
    mem.ensure_container("staging")
    plan = make_plan("run-r", [["8001", "8002"], ["8003"]])
    tampered = staged(mem, "run-r", 0, ["8001", "8002"])
    if status is None:
        mem.delete("staging", tampered.status.status_blob)
    else:
        mem.write_bytes("staging", tampered.status.status_blob, status)
    published = publish_run(plan, [tampered, staged(mem, "run-r", 1, ["8003"])], settings, mem)
    assert published.postcodes_scored == 1 and published.state is p.RunState.COMPLETED_WITH_FAILURES
    failed = failures_of(mem, published)
    assert set(failed) == {"8001", "8002"} and why in failed["8001"] and "shard 0 output rejected" in failed["8001"]
    manifest = mem.read_json("results", published.manifest.partition("/")[2])
    assert [s["state"] for s in manifest["shards"]] == ["rejected", "succeeded"]
