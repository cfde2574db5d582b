"""Adopting runs the first release published flat (runs/<run>/results.csv + _SUCCESS) into the revision layout."""

from __future__ import annotations

import json

from dashboard.results_index import index_blob, lookup
from pipeline.flat_layout import adopt_flat_run, flat_runs
from pipeline.revisions import current_revision

RESULTS = (b"postcode,date,volume,lower_80,upper_80,lower_95,upper_95,model,model_version\n"
           b"8001,2026-12-01,10.5,,,,,parcels,v1\n8001,2026-12-02,11,,,,,parcels,v1\n"
           b"8002,2026-12-01,3,,,,,parcels,v1\n")


def flat_run(mem, run_id: str, success: bool = True, retried: bool = False) -> dict:
    revisions = [{"run_id": run_id, "published": "2026-11-20T06:00:00Z", "postcodes": 3}]
    if retried:
        revisions.append({"run_id": f"{run_id}-retry1", "published": "2026-11-20T07:00:00Z", "postcodes": 1})
    manifest = {"run_id": run_id, "state": "completed_with_failures", "published": revisions[-1]["published"],
                "rows": 3, "postcodes_scored": 2, "postcodes_failed": {"8003": "no input rows for this postcode"},
                "results": f"results/runs/{run_id}/results.csv", "revisions": revisions}
    mem.write_bytes("results", f"runs/{run_id}/results.csv", RESULTS)
    mem.write_json("results", f"runs/{run_id}/manifest.json", manifest)
    if success:
        mem.write_bytes("results", f"runs/{run_id}/_SUCCESS", revisions[-1]["published"].encode())
    return manifest


def test_a_complete_flat_run_becomes_readable_through_its_pointer(mem):
    old = flat_run(mem, "daily-parcels-20261120", retried=True)
    assert current_revision(mem, "results", "daily-parcels-20261120") is None  # invisible before adoption

    assert adopt_flat_run(mem, "results", "daily-parcels-20261120").outcome == "adopted"

    current = current_revision(mem, "results", "daily-parcels-20261120")
    assert current.revision == "daily-parcels-20261120-retry1" and current.published == "2026-11-20T07:00:00Z"
    assert mem.read_bytes("results", current.results) == RESULTS
    manifest = mem.read_json("results", current.manifest)
    assert manifest["postcodes_failed"] == old["postcodes_failed"] and manifest["rows"] == 3
    assert manifest["results"] == f"results/{current.results}"
    # The dashboard's per-postcode index, as publish writes it.
    index = json.loads(mem.read_bytes("results", index_blob(current.results)))
    entry = lookup(index, "8002")
    row = mem.read_bytes("results", current.results, entry.offset, entry.length)
    assert row == b"8002,2026-12-01,3,,,,,parcels,v1\n"


def test_adoption_never_replaces_a_pointer_and_skips_unfinished_runs(mem):
    flat_run(mem, "run-aaaa", retried=False)
    flat_run(mem, "run-bbbb", success=False)
    assert flat_runs(mem, "results") == ["run-aaaa"]
    assert adopt_flat_run(mem, "results", "run-aaaa").outcome == "adopted"
    etag = current_revision(mem, "results", "run-aaaa").etag
    assert adopt_flat_run(mem, "results", "run-aaaa").outcome == "already current"
    assert current_revision(mem, "results", "run-aaaa").etag == etag
    assert adopt_flat_run(mem, "results", "run-bbbb").outcome.startswith("skipped: no _SUCCESS")
    assert current_revision(mem, "results", "run-bbbb") is None


def test_a_corrupt_flat_manifest_is_skipped_with_the_blob_named(mem):
    flat_run(mem, "run-cccc")
    mem.write_bytes("results", "runs/run-cccc/manifest.json", b"{not json")
    outcome = adopt_flat_run(mem, "results", "run-cccc").outcome
    assert outcome.startswith("skipped:") and "runs/run-cccc/manifest.json" in outcome
    assert current_revision(mem, "results", "run-cccc") is None
