"""Publishing a run into an in-memory store: validation of staged rows, the order of writes, retry merges."""

from __future__ import annotations

import pytest
from support.unit_data import put_version

from pipeline import naming
from pipeline import payloads as p
from pipeline.failures import read_failures
from pipeline.plan_store import write_plan
from pipeline.publish import RESULT_COLUMNS, PublishError, run_cost
from pipeline.publish import publish_run as publish_from_ref
from pipeline.revisions import current_revision
from pipeline.shard_output import ShardRejected, validate_shard

HEADER = ",".join(RESULT_COLUMNS)
TIMING = p.Timing(20, 60, 15, 15, 5, 2, 10)


def rows_csv(postcodes: list[str], days: int = 2, volume: str = "12.5") -> str:
    lines = [HEADER] + [f"{pc},2026-11-{24 + d},{volume},,,,,parcels,v1" for pc in postcodes for d in range(days)]
    return "\n".join(lines) + "\n"


PLANNED = iter(range(10_000))


def make_plan(run_id: str, shards: list[list[str]], *, failed: dict | None = None, retry_of: str | None = None,
              subset: bool = False) -> p.Plan:
    return p.Plan(champion=True, input_time="2026-11-23T00:00:00+00:00", planned_at=f"{next(PLANNED):05d}",
                  run_id=run_id, model="parcels", version="v1", model_packages={},
                  input=p.InputRef("input", "daily/in.csv", "0x1"), horizon=2, trigger=p.Trigger.HTTP,
                  retry_of=retry_of, subset=subset, postcodes_total=sum(map(len, shards)) + len(failed or {}),
                  failed=failed or {}, not_in_input=0, parallel_groups=2, container=p.ContainerSize("img", 2.0, 4.0),
                  estimate=p.Estimate(len(shards), 1.0, 2.0, 0.1),
                  shards=[p.ShardPlan(i, pcs) for i, pcs in enumerate(shards)], timing=TIMING)


def publish_run(plan: p.Plan, shards: list[p.ShardOutcome], settings, mem) -> p.Published:
    """As the run does it: plan_run kept the plan in blobs, publish_run gets its RunPlan (references, counts)."""
    request = p.PlanRequest(p.RunRequest("parcels", "v1", "daily/in.csv", None, 2, None, p.Trigger.HTTP), plan.run_id,
                            "2026-11-23")
    return publish_from_ref(write_plan(mem, "results", request, plan), shards, settings, mem)


def failures_of(mem, published: p.Published) -> dict[str, str]:
    return read_failures(mem, published.failures)


def staged(mem, run_id: str, index: int, scored: list[str], failed: dict | None = None, text: str | None = None,
           state: p.ShardState = p.ShardState.SUCCEEDED) -> p.ShardOutcome:
    """A shard whose worker staged its results and status.json, and its outcome (counts only)."""
    prefix = naming.staging_prefix(run_id, index)
    mem.write_bytes("staging", prefix + "results.csv",
                    (text if text is not None else rows_csv(sorted(scored))).encode())  # sorted, as the worker writes
    mem.write_json("staging", prefix + "status.json", {"scored": scored, "failed": failed or {},
                                                       "exit_code": 3 if failed else 0})
    report = p.ShardReport(output_prefix=prefix, scored=len(scored), failed=len(failed or {}), rows=2 * len(scored),
                           exit_code=3 if failed else 0)
    attempt = p.Attempt(attempt=1, group=naming.group_name(run_id, index), state=state, exit_code=report.exit_code,
                        started="2026-11-23T06:00:00Z", finished="2026-11-23T06:01:40Z", deleted=True)
    return p.ShardOutcome(index=index, state=state, status=report, postcodes=len(scored) + len(failed or {}),
                          attempts=[attempt])


@pytest.fixture
def model(mem):
    return put_version(mem, "parcels", "v1", ["8001", "8002", "8003", "8004"])


# ------------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize("text, message", [
    ("postcode,date,volume\n", "unexpected columns ['postcode', 'date', 'volume']"),
    (rows_csv(["8009"]), "line 2: rows for postcode '8009', which it did not report as scored"),
    (rows_csv(["8001"], volume="NA"), "line 2: volume 'NA' is not a number"),
    (rows_csv(["8001"], volume="-1"), "line 2: negative volume -1"),
    (rows_csv(["8001"], volume="inf"), "line 2: volume is inf"),
    (rows_csv(["8001"], volume="nan"), "line 2: volume is nan"),
    (rows_csv(["8001"], days=1), "1 postcode(s) do not have 2 rows, e.g. 8001 has 1"),
])
def test_staged_rows_that_break_the_contract_are_refused_naming_why(mem, text, message):
    mem.write_bytes("results", "s/results.csv", text.encode())
    with pytest.raises(ShardRejected) as e:
        validate_shard(mem, "results", "s/results.csv", ["8001"], {"8001"}, 2, "parcels", "v1")
    assert str(e.value) == message


# ------------------------------------------------------------------------------------------- publishing


def test_publish_writes_results_manifest_success_then_latest(mem, settings, model):
    plan = make_plan("run-a", [["8001", "8002"], ["8003"]], failed={"8004": "no input rows for this postcode"})
    shards = [staged(mem, "run-a", 1, ["8003"]), staged(mem, "run-a", 0, ["8002", "8001"])]
    published = publish_run(plan, sorted(shards, key=lambda s: s.index), settings, mem)

    assert published.state is p.RunState.COMPLETED_WITH_FAILURES
    assert published.rows == 6 and published.postcodes_scored == 3 and published.postcodes_failed_count == 1
    assert failures_of(mem, published) == {"8004": "no input rows for this postcode"}
    assert published.failures == "results/runs/run-a/revisions/run-a/failures.json"
    current = current_revision(mem, "results", "run-a")
    assert current.revision == "run-a" and published.revision == "run-a"
    text = mem.text("results", current.results).splitlines()
    assert text[0] == HEADER and [r.split(",")[0] for r in text[1:]] == ["8001"] * 2 + ["8002"] * 2 + ["8003"] * 2
    manifest = mem.read_json("results", current.manifest)
    assert manifest["state"] == "completed_with_failures" and manifest["trigger"] == "http"
    assert manifest["input"] == {"container": "input", "blob": "daily/in.csv", "etag": "0x1"}
    assert sorted(manifest["model"]["sha256"]) == ["8001", "8002", "8003"]
    assert [s["state"] for s in manifest["shards"]] == ["succeeded", "succeeded"]
    assert manifest["shards"][0]["postcodes"] == ["8001", "8002", 2]
    assert manifest["revisions"] == [{"run_id": "run-a", "published": manifest["published"], "postcodes": 4}]
    assert mem.read_json("results", "runs/run-a/current.json")["published"] == manifest["published"]
    assert mem.read_json("results", "latest/parcels.json")["run_id"] == "run-a"
    # The order readers rely on: the revision's results and manifest, the run's pointer, the latest pointer.
    order = [name for name in (current.results, current.prefix + "failures.json", current.manifest,
                               "runs/run-a/current.json", "latest/parcels.json")]
    etags = [mem.info("results", name).etag for name in order]
    assert etags == sorted(etags)


def test_a_shard_with_invalid_rows_is_left_out_and_its_postcodes_failed(mem, settings, model):
    plan = make_plan("run-b", [["8001"], ["8002"]])
    bad = rows_csv(["8002"], volume="-3")
    shards = [staged(mem, "run-b", 0, ["8001"]), staged(mem, "run-b", 1, ["8002"], text=bad)]
    published = publish_run(plan, shards, settings, mem)
    assert published.postcodes_scored == 1
    assert failures_of(mem, published)["8002"] == "not published: shard 1 output rejected: line 2: negative volume -3"


def test_a_postcode_neither_scored_nor_failed_stops_the_publication(mem, settings, model):
    plan = make_plan("run-c", [["8001", "8002"]])
    shards = [staged(mem, "run-c", 0, ["8001"])]  # 8002 vanished: not scored, not reported failed
    with pytest.raises(PublishError, match=r"1 postcode\(s\) neither scored nor failed, e.g. 8002"):
        publish_run(plan, shards, settings, mem)
    assert current_revision(mem, "results", "run-c") is None


def test_nothing_valid_publishes_nothing(mem, settings, model):
    plan = make_plan("run-d", [["8001"]])
    shards = [staged(mem, "run-d", 0, ["8001"], text=rows_csv(["8001"], volume="NA"))]
    with pytest.raises(PublishError, match="no shard produced valid results"):
        publish_run(plan, shards, settings, mem)
    assert mem.names("results", "runs/run-d/revisions/") == []  # nothing published; staged output stays in staging
    assert current_revision(mem, "results", "run-d") is None
    assert mem.names("staging", "run-d/") == ["run-d/shard-000-a1/results.csv", "run-d/shard-000-a1/status.json"]


def test_failed_shards_are_skipped(mem, settings, model):
    plan = make_plan("run-e", [["8001"], ["8002"]])
    failed_shard = p.ShardOutcome(index=1, state=p.ShardState.FAILED, reason="boom", postcodes=1)
    published = publish_run(plan, [staged(mem, "run-e", 0, ["8001"]), failed_shard], settings, mem)
    assert published.postcodes_scored == 1 and failures_of(mem, published) == {"8002": "shard 1 failed: boom"}


def test_a_subset_run_does_not_move_latest(mem, settings, model):
    plan = make_plan("run-f", [["8001"]], subset=True)
    publish_run(plan, [staged(mem, "run-f", 0, ["8001"])], settings, mem)
    assert current_revision(mem, "results", "run-f") and not mem.exists("results", "latest/parcels.json")


def test_a_retry_merges_into_the_run_it_retries(mem, settings, model):
    first = make_plan("run-g", [["8001", "8002"]])
    publish_run(first, [staged(mem, "run-g", 0, ["8001"], failed={"8002": "R error"})], settings, mem)
    assert mem.read_json("results", "latest/parcels.json")["run_id"] == "run-g"

    retry = make_plan("run-g-retry1", [["8002"]], retry_of="run-g", subset=True)
    published = publish_run(retry, [staged(mem, "run-g-retry1", 0, ["8002"])], settings, mem)

    assert published.state is p.RunState.COMPLETED and published.postcodes_failed_count == 0
    assert failures_of(mem, published) == {}
    assert published.results == "results/runs/run-g/revisions/run-g-retry1/results.csv"
    current = current_revision(mem, "results", "run-g")
    rows = mem.text("results", current.results).splitlines()[1:]
    assert [r.split(",")[0] for r in rows] == ["8001", "8001", "8002", "8002"]
    manifest = mem.read_json("results", current.manifest)
    assert [r["run_id"] for r in manifest["revisions"]] == ["run-g", "run-g-retry1"]
    assert not mem.exists("results", "runs/run-g-retry1/results.csv")
    latest = mem.read_json("results", "latest/parcels.json")  # it named run-g: it names run-g's new revision
    assert (latest["run_id"], latest["revision"], latest["results"]) == ("run-g", "run-g-retry1", current.results)


def test_a_retry_of_an_older_run_does_not_turn_latest_back(mem, settings, model):
    publish_run(make_plan("run-h", [["8001", "8002"]]),
                [staged(mem, "run-h", 0, ["8001"], failed={"8002": "x"})], settings, mem)
    publish_run(make_plan("run-i", [["8001"]]), [staged(mem, "run-i", 0, ["8001"])], settings, mem)
    before = mem.info("results", "latest/parcels.json").etag
    retry = make_plan("run-h-retry1", [["8002"]], retry_of="run-h", subset=True)
    publish_run(retry, [staged(mem, "run-h-retry1", 0, ["8002"])], settings, mem)
    assert mem.read_json("results", "latest/parcels.json")["run_id"] == "run-i"
    assert mem.info("results", "latest/parcels.json").etag == before


def test_cost_uses_container_times_else_the_orchestration_times(settings):
    timed = p.Attempt(attempt=1, group="g", started="2026-11-23T06:00:00Z", finished="2026-11-23T06:01:40Z")
    billed = p.Attempt(attempt=2, group="g2", billed_from="2026-11-23T06:00:00+00:00",
                       billed_to="2026-11-23T06:00:50+00:00")
    never = p.Attempt(attempt=3, group="g3")  # never created: no time
    shards = [p.ShardOutcome(0, p.ShardState.SUCCEEDED, attempts=[timed, billed, never])]
    cost = run_cost(shards, p.ContainerSize("img", 2.0, 4.0), settings)
    assert cost["container_seconds"] == 150.0 and cost["vcpu_seconds"] == 300.0 and cost["gb_seconds"] == 600.0
    assert cost["price_usd"] == round(300 * settings.aci_price_per_vcpu_second + 600 * settings.aci_price_per_gb_second,
                                      6)
