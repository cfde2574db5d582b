"""What the /api/runs routes decide apart from HTTP: model/version checks and what a retry reruns."""

from __future__ import annotations

import pytest
from support.unit_data import put_version

from pipeline import payloads as p
from pipeline.run_requests import RequestError
from pipeline.runs_api import RetryRefused, check_model_version, retry_request

ORIGINAL = p.RunRequest(model="parcels", version="champion", input_blob="latest", postcodes=None, horizon=14,
                        shard_size=None, trigger=p.Trigger.TIMER)


def test_an_unknown_model_is_refused_as_the_model(mem, settings):
    with pytest.raises(RequestError) as e:
        check_model_version("letters", "champion", settings, mem)
    assert e.value.field == "model" and "no champion version" in str(e.value)


def test_an_unknown_version_of_a_known_model_is_refused_as_the_version(mem, settings):
    put_version(mem, "parcels", "v1", ["8001"])
    with pytest.raises(RequestError) as e:
        check_model_version("parcels", "v2", settings, mem)
    assert e.value.field == "version" and "has no version 'v2'" in str(e.value)
    check_model_version("parcels", "v1", settings, mem)


def published(mem, run_id: str, failed: dict[str, str], version: str = "v3") -> None:
    mem.write_json("results", f"runs/{run_id}/manifest.json",
                   {"postcodes_failed": failed, "model": {"version": version},
                    "input": {"blob": "daily/2026-11-23.csv"}})
    mem.write_bytes("results", f"runs/{run_id}/_SUCCESS", b"2026-11-23T06:10:00Z")


def test_a_retry_reruns_the_failed_postcodes_of_the_published_version_and_input(mem, settings):
    published(mem, "daily-parcels-2026-11-23", {"8003": "R error", "8001": "NA volume"})
    retry = retry_request(ORIGINAL, "daily-parcels-2026-11-23", settings, mem)
    assert retry == p.RunRequest(model="parcels", version="v3", input_blob="daily/2026-11-23.csv",
                                 postcodes=["8001", "8003"], horizon=14, shard_size=None, trigger=p.Trigger.RETRY,
                                 retry_of="daily-parcels-2026-11-23")


def test_a_retry_of_a_retry_completes_the_original_run(mem, settings):
    published(mem, "run-a", {"8002": "still failing"})
    first_retry = p.RunRequest(model="parcels", version="v3", input_blob="x.csv", postcodes=["8002", "8005"],
                               horizon=14, shard_size=None, trigger=p.Trigger.RETRY, retry_of="run-a")
    again = retry_request(first_retry, "run-a-retry1", settings, mem)
    assert again.retry_of == "run-a" and again.postcodes == ["8002"]


def test_a_run_that_published_nothing_cannot_be_retried(mem, settings):
    with pytest.raises(RetryRefused, match="run run-x published no results; start a new run instead"):
        retry_request(ORIGINAL, "run-x", settings, mem)


def test_a_run_without_failures_has_nothing_to_retry(mem, settings):
    published(mem, "run-y", {})
    with pytest.raises(RetryRefused, match="run run-y has no failed postcodes to retry"):
        retry_request(ORIGINAL, "run-y", settings, mem)
