"""Planning a run against an in-memory model store and input: what fails before any container exists."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from support.unit_data import input_csv, make_settings, put_version

from pipeline import payloads as p
from pipeline.planning import (
    MAX_SHARDS,
    PlanError,
    check_compatibility,
    cut_shards,
    dry_run_view,
    estimate_cost,
    input_postcodes,
    plan_run,
    resolve_input,
)

TODAY = date(2026, 11, 23)
DAYS = [(TODAY + timedelta(days=d)).isoformat() for d in range(1, 4)]


def request(**fields) -> p.RunRequest:
    values = dict(model="parcels", version="champion", input_blob="daily/in.csv", postcodes=None, horizon=3,
                  shard_size=None, trigger=p.Trigger.HTTP)
    return p.RunRequest(**{**values, **fields})


# ------------------------------------------------------------------------------------------- shards


def test_default_shards_spread_over_the_parallel_groups_but_not_below_the_minimum_size():
    settings = make_settings(MIN_SHARD_SIZE="100", MAX_PARALLEL_GROUPS="10", CORE_QUOTA="20")
    postcodes = [f"{8000 + i}" for i in range(3000)]
    shards = cut_shards(postcodes, None, settings)
    assert [len(s) for s in shards] == [300] * 10
    assert [pc for s in shards for pc in s] == postcodes  # contiguous, in order, nothing lost
    assert [len(s) for s in cut_shards(postcodes[:250], None, settings)] == [100, 100, 50]


def test_explicit_shard_size_wins():
    assert [len(s) for s in cut_shards([str(i) for i in range(10)], 4, make_settings())] == [4, 4, 2]


def test_too_many_shards_is_refused_with_the_way_out():
    with pytest.raises(PlanError, match=f"at most {MAX_SHARDS}: use a larger shardSize"):
        cut_shards([f"{10000 + i}" for i in range(MAX_SHARDS + 1)], 1, make_settings())


def test_no_postcodes_no_shards():
    assert cut_shards([], None, make_settings()) == []


# ------------------------------------------------------------------------------------------- input


def test_latest_input_is_the_newest_blob_under_the_prefix(mem, settings):
    mem.write_bytes("input", "daily/a.csv", b"x")
    mem.write_bytes("input", "daily/b.csv", b"x")
    mem.write_bytes("input", "other/c.csv", b"x")  # written last, outside the prefix
    assert resolve_input(mem, settings, "latest") == "daily/b.csv"
    assert resolve_input(mem, settings, "manual/x.csv") == "manual/x.csv"


def test_latest_input_with_nothing_there_names_the_place(mem, settings):
    with pytest.raises(PlanError, match="no input data under input/daily/"):
        resolve_input(mem, settings, "latest")


def test_input_rows_are_counted_per_postcode():
    rows = input_postcodes(input_csv({"8001": DAYS, "8002": DAYS[:2]}), "in", TODAY)
    assert rows == {"8001": 3, "8002": 2}


def test_a_bom_is_accepted():
    assert input_postcodes(b"\xef\xbb\xbf" + input_csv({"8001": DAYS}), "in") == {"8001": 3}


@pytest.mark.parametrize("data, message", [
    (b"\xff\xfe", "in is not UTF-8 text"),
    (b"", "in is empty"),
    (b"postcode,volume\n8001,3\n", "in lacks column(s) date; it has: postcode, volume"),
    (b"postcode,date\n", "in has a header but no rows"),
    (b"postcode,date\n8001,2026-11-24,5\n", "in line 2: 3 fields where the header has 2"),
    (b"postcode,date\n8001,2026-11-24\n8001,2026-11-24\n", "in line 3: duplicate row for postcode 8001 on 2026-11-24"),
    (b"postcode,date\n8001,20261124\n", "in line 2: date '20261124' is not YYYY-MM-DD"),
    (b"postcode,date\n8001,2026-W48-2\n", "in line 2: date '2026-W48-2' is not YYYY-MM-DD"),
    (b"postcode,date\n8001,2026-02-30\n", "in line 2: date '2026-02-30' is not YYYY-MM-DD"),
])
def test_bad_input_is_refused_naming_the_line(data, message):
    with pytest.raises(PlanError) as e:
        input_postcodes(data, "in")
    assert str(e.value) == message


def test_input_with_dates_in_the_past_is_refused():
    with pytest.raises(PlanError, match=r"dates in the past \(earliest 2026-11-22, today 2026-11-23\)"):
        input_postcodes(input_csv({"8001": ["2026-11-22", *DAYS]}), "in", TODAY)


# ------------------------------------------------------------------------------------------- compatibility


def manifest(mem, **kw):
    return put_version(mem, "parcels", "v1", ["8001"], **kw)


def test_models_saved_with_another_r_minor_version_are_refused(mem):
    with pytest.raises(PlanError, match="was saved with R 4.3.1; the scoring image runs R 4.2.2"):
        check_compatibility(manifest(mem, r_version="4.3.1"), make_settings(IMAGE_R_VERSION="4.2.2"))
    check_compatibility(manifest(mem, r_version="4.2.0"), make_settings(IMAGE_R_VERSION="4.2.2"))  # patch: fine


def test_packages_the_image_lacks_or_has_older_are_listed(mem):
    settings = make_settings(IMAGE_R_PACKAGES="forecast=8.20;stats=4.2.2")
    with pytest.raises(PlanError) as e:
        check_compatibility(manifest(mem, packages={"forecast": "8.23.0", "ranger": "0.16", "stats": "4.2.2"}),
                            settings)
    assert "forecast 8.23.0 (image has 8.20)" in str(e.value) and "ranger 0.16 (image has none)" in str(e.value)
    assert "stats" not in str(e.value)
    check_compatibility(manifest(mem, packages={"forecast": "8.20"}), settings)


def test_packages_are_not_checked_when_the_image_list_is_unknown(mem):
    check_compatibility(manifest(mem, packages={"anything": "99"}), make_settings(IMAGE_R_PACKAGES=""))


# ------------------------------------------------------------------------------------------- the plan


def test_plan_resolves_the_champion_and_cuts_the_scorable_postcodes(mem):
    settings = make_settings(MIN_SHARD_SIZE="2", MAX_PARALLEL_GROUPS="2", CORE_QUOTA="20")
    put_version(mem, "parcels", "v7", ["8001", "8002", "8003", "8004", "8005"], champion=True)
    data = input_csv({pc: DAYS for pc in ("8001", "8002", "8003", "8004")})  # 8005 has no input rows
    etag = mem.write_bytes("input", "daily/in.csv", data)

    plan = plan_run(request(), "run-abc", settings, mem, today=TODAY)

    assert plan.version == "v7" and plan.run_id == "run-abc"
    assert plan.input == p.InputRef("input", "daily/in.csv", etag)
    assert [s.postcodes for s in plan.shards] == [["8001", "8002"], ["8003", "8004"]]
    assert plan.postcodes_total == 4 and plan.failed == {} and plan.not_in_input == 1
    assert plan.parallel_groups == 2 and plan.subset is False
    assert plan.timing == p.Timing(poll_seconds=20.0, deadline_minutes=60.0, provisioning_deadline_minutes=15.0,
                                   retry_interval_seconds=15.0, retry_attempts=5, shard_attempts=2, quota_waits=10,
                                   poll_first_seconds=2.0)
    assert plan.container == p.ContainerSize("scoringacr.azurecr.io/r-scoring:1.4.2", 2.0, 4.0)
    assert p.Plan.from_json(plan.to_json()) == plan


def test_a_subset_lists_postcodes_without_a_model_or_rows_as_failed(mem, settings):
    put_version(mem, "parcels", "v1", ["8001", "8002"], champion=True)
    mem.write_bytes("input", "daily/in.csv", input_csv({"8001": DAYS, "9999": DAYS}))
    plan = plan_run(request(postcodes=["8001", "8002", "9999"]), "run-a", settings, mem, today=TODAY)
    assert [s.postcodes for s in plan.shards] == [["8001"]]
    assert plan.failed == {"8002": "no input rows for this postcode",
                           "9999": "no model for this postcode in parcels/v1"}
    assert plan.postcodes_total == 3 and plan.subset is True and plan.not_in_input == 0


def test_nothing_to_score_is_refused(mem, settings):
    put_version(mem, "parcels", "v1", ["8001"], champion=True)
    mem.write_bytes("input", "daily/in.csv", input_csv({"9999": DAYS}))
    with pytest.raises(PlanError, match="nothing to score: none of 1 postcode"):
        plan_run(request(), "run-a", settings, mem, today=TODAY)


def test_missing_model_packs_are_found_before_any_container(mem, settings):
    put_version(mem, "parcels", "v1", ["8001", "8002"], champion=True, missing_packs=True)
    mem.write_bytes("input", "daily/in.csv", input_csv({"8001": DAYS, "8002": DAYS}))
    with pytest.raises(PlanError, match=r"parcels/v1 is incomplete: blob\(s\) packs/00000.bin, packs/00001.bin"):
        plan_run(request(), "run-a", settings, mem, today=TODAY)


@pytest.mark.parametrize("version, message", [
    ("champion", "model 'parcels' has no champion version"),
    ("v9", "model 'parcels' has no version 'v9'"),
])
def test_an_unknown_version_is_a_plan_error(mem, settings, version, message):
    mem.write_bytes("input", "daily/in.csv", input_csv({"8001": DAYS}))
    with pytest.raises(PlanError, match=message):
        plan_run(request(version=version), "run-a", settings, mem, today=TODAY)


def test_a_missing_input_blob_is_named(mem, settings):
    put_version(mem, "parcels", "v1", ["8001"], champion=True)
    with pytest.raises(PlanError, match="input input/daily/in.csv does not exist"):
        plan_run(request(), "run-a", settings, mem, today=TODAY)


def test_cost_estimate_counts_startup_and_scoring_per_shard():
    settings = make_settings(EXPECTED_STARTUP_SECONDS="60", EXPECTED_SECONDS_PER_POSTCODE="0.5",
                             CONTAINER_CPU="2", CONTAINER_MEMORY_GB="4")
    estimate = estimate_cost([100, 20], settings)
    seconds = (60 + 100 * 0.5 / 2) + (60 + 20 * 0.5 / 2)
    assert estimate.groups == 2
    assert estimate.vcpu_seconds == round(seconds * 2, 1) and estimate.gb_seconds == round(seconds * 4, 1)
    assert estimate.price_usd == round(seconds * 2 * 0.0000135 + seconds * 4 * 0.0000015, 6)


def test_dry_run_view_summarises_shards_without_listing_every_postcode(mem, settings):
    put_version(mem, "parcels", "v1", ["8001", "8002", "8003"], champion=True)
    mem.write_bytes("input", "daily/in.csv", input_csv({pc: DAYS for pc in ("8001", "8002", "8003")}))
    view = dry_run_view(plan_run(request(shard_size=2), "dry-run", settings, mem, today=TODAY))
    assert view["dryRun"] is True and view["groups"] == 2 and view["postcodes"] == 3
    assert view["shards"] == [{"index": 0, "postcodes": 2, "first": "8001", "last": "8002"},
                              {"index": 1, "postcodes": 1, "first": "8003", "last": "8003"}]
    assert view["input"]["blob"] == "daily/in.csv" and view["estimate"]["groups"] == 2
