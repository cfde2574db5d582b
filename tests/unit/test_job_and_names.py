"""The worker's job spec and every name that becomes part of a blob path or an ARM name."""

from __future__ import annotations

import json
from datetime import date

import pytest

from pipeline import naming
from scoring.job import Job, JobError, job_from_environment, parse_job
from scoring.names import InvalidName, check_blob_path, check_prefix, check_version

JOB = {"model": "parcels", "version": "champion", "input": {"container": "input", "blob": "daily/x.csv"},
       "postcodes": ["8001", "8002"], "output": {"container": "results", "prefix": "runs/run-a/staging/s0"},
       "horizon": 14}


def test_a_job_round_trips_through_its_json():
    job = parse_job(json.dumps(JOB))
    assert job.output_prefix == "runs/run-a/staging/s0/"  # a prefix always ends with '/'
    assert job.results_blob == "runs/run-a/staging/s0/results.csv"
    assert job.status_blob == "runs/run-a/staging/s0/status.json"
    assert parse_job(job.to_json()) == job


@pytest.mark.parametrize("change, message", [
    ({"colour": "red"}, "unknown field(s): colour"),
    ({"model": ""}, "job field 'model' is required"),
    ({"input": "x.csv"}, "job field 'input' must be an object"),
    ({"input": {"container": "input"}}, "job field 'input.blob' is required"),
    ({"postcodes": []}, "job field 'postcodes': must be a non-empty list of postcodes"),
    ({"postcodes": ["8001", "8001"]}, "job field 'postcodes': lists a postcode twice"),
    ({"postcodes": ["8001", "../x"]}, "job field 'postcodes': invalid postcode '../x'"),
    ({"horizon": 0}, "'horizon' must be a positive integer, got 0"),
    ({"horizon": True}, "'horizon' must be a positive integer, got True"),
    ({"output": {"container": "Results", "prefix": "x"}}, "invalid container name 'Results'"),
    ({"output": {"container": "results", "prefix": "../../etc/"}}, "invalid output prefix"),
    ({"models_container": "a--b"}, "invalid container name 'a--b'"),
])
def test_a_bad_job_names_the_field(change, message):
    with pytest.raises(JobError) as e:
        parse_job({**JOB, **change})
    assert message in str(e.value)


@pytest.mark.parametrize("raw, message", [("{", "not valid JSON"), ("[1]", "must be a JSON object")])
def test_a_job_that_is_not_an_object_is_refused(raw, message):
    with pytest.raises(JobError, match=message):
        parse_job(raw)


def test_the_job_comes_from_the_environment_or_a_blob_it_names():
    read: list[tuple[str, str]] = []

    def read_blob(container: str, path: str) -> bytes:
        read.append((container, path))
        return json.dumps(JOB).encode()

    assert job_from_environment({"SCORING_JOB": json.dumps(JOB)}, read_blob).model == "parcels" and not read
    job = job_from_environment({"SCORING_JOB_BLOB": "results/runs/run-a/jobs/shard-000-a1.json"}, read_blob)
    assert read == [("results", "runs/run-a/jobs/shard-000-a1.json")] and isinstance(job, Job)
    with pytest.raises(JobError, match="no job given"):
        job_from_environment({}, read_blob)
    with pytest.raises(JobError, match="SCORING_JOB_BLOB"):
        job_from_environment({"SCORING_JOB_BLOB": "results/../secrets"}, read_blob)


# ------------------------------------------------------------------------------------------- names


def test_run_ids_by_trigger():
    assert naming.daily_run_id("parcels", date(2026, 11, 23)) == "daily-parcels-2026-11-23"
    assert naming.adhoc_run_id("0F3A9C2B-7D4E-4A1B-9C8D-000000000000") == "run-0f3a9c2b7d4e4a1b9c8d"
    assert naming.retry_run_id("run-abc", 2) == "run-abc-retry2"


def test_a_blob_run_id_is_stable_per_blob_version():
    a = naming.blob_run_id("daily/x.csv", "0x1")
    assert a == naming.blob_run_id("daily/x.csv", "0x1") and a.startswith("blob-") and len(a) == 25
    assert a != naming.blob_run_id("daily/x.csv", "0x2") and a != naming.blob_run_id("daily/y.csv", "0x1")
    assert naming.is_run_id(a)


@pytest.mark.parametrize("value, ok", [
    ("run-abc", True), ("daily-parcels-2026-11-23", True), ("Run-abc", False), ("run--abc", False),
    ("-run", False), ("run-", False), ("run/../x", False), ("r" * 55, True), ("r" * 56, False), ("", False),
])
def test_is_run_id(value, ok):
    assert naming.is_run_id(value) is ok


def test_group_names_fit_aci_even_for_the_longest_run_id():
    longest = "r" * naming.MAX_RUN_ID
    assert naming.group_name(longest, 999, 9) == longest + "-s999-a9" and len(longest + "-s999-a9") <= 63
    assert naming.group_name("run-a", 3) == "run-a-s003"  # first attempt: no suffix
    assert naming.group_name("run-a", 3, 2) == "run-a-s003-a2"


def test_blob_paths_of_a_run():
    # In STAGING_CONTAINER, the only container a worker may write to.
    assert naming.staging_prefix("run-a", 2, 3) == "run-a/shard-002-a3/"
    assert naming.job_blob("run-a", 2) == "run-a/shard-002-a1/job.json"
    assert naming.logs_blob("run-a", 2) == "runs/run-a/logs/shard-002-a1.log"
    assert naming.shard_instance_id("run-a", 7) == "run-a:shard-007"
    assert naming.latest_pointer("parcels") == "latest/parcels.json"


@pytest.mark.parametrize("value", ["", "/a", "a//b", "a/../b", "..", "a/.", "a\\b", "a b", "a/\n", "x" * 513])
def test_blob_paths_cannot_escape(value):
    with pytest.raises(InvalidName):
        check_blob_path(value)


def test_prefixes_end_with_a_slash_and_may_be_the_root():
    assert check_prefix("runs/x") == "runs/x/" and check_prefix("runs/x/") == "runs/x/" and check_prefix("") == ""


def test_alias_names_are_reserved_for_aliases():
    with pytest.raises(InvalidName, match="reserved"):
        check_version("champion")
    assert check_version("champion", allow_alias=True) == "champion"
