"""Slim history on the real local stack: the same pipeline with N and 10N postcodes (same number of shards) keeps
about the same durable history per run, read from the dev host's SQLite store, while results, failures and
status stay complete. Real Azurite, ARM stand-in, dev host and R worker; nothing mocked."""

from __future__ import annotations

import csv
import io
import sqlite3
from pathlib import Path

import pytest
from conftest import HORIZON, published_manifest, sample_stack

from scoring.modelstore import ModelStore
from scoring.registration import register_version

pytestmark = pytest.mark.integration  # Azurite, R, the stand-in and the dev host

N = 20
SIZES = (N, 10 * N)
TEMPLATE = "1002"  # a glm of the sample models, copied under every postcode (scoring cost stays small)


def postcodes(n: int) -> list[str]:
    return [str(20000 + i) for i in range(n)]


def without_input(pcs: list[str]) -> set[str]:
    """Every 10th postcode has no input rows: it fails at planning, with its reason."""
    return set(pcs[::10])


@pytest.fixture(scope="module")
def stack(tmp_path_factory, sample_models):
    root = Path(tmp_path_factory.mktemp("slimhist"))
    models, input_csv = sample_models
    with sample_stack(root, sample_models, {"MIN_SHARD_SIZE": "4", "DEFAULT_HORIZON_DAYS": str(HORIZON),
                                            "SHARD_ATTEMPTS": "1"}) as s:
        rows = [r for r in csv.DictReader(io.StringIO(input_csv.read_text())) if r["postcode"] == TEMPLATE]
        assert len(rows) == HORIZON
        store = ModelStore(s.blobs)
        for n in SIZES:  # one version per size, so that the run request (orchestration input) is the same size
            folder = root / f"n{n}"
            folder.mkdir()
            for pc in postcodes(n):
                (folder / f"{pc}.rds").write_bytes((models / f"{TEMPLATE}.rds").read_bytes())
            register_version(store, "parcels", f"n{n}", folder)
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        everything = postcodes(max(SIZES))
        for pc in everything:
            if pc not in without_input(everything):
                writer.writerows({**r, "postcode": pc} for r in rows)
        s.blobs.write_bytes("input", "manual/many.csv", out.getvalue().encode())
        yield s


def history_bytes(stack, run_id: str) -> dict[str, int]:
    """Bytes the dev host keeps for a run and its shard orchestrations: every history event, and each
    instance's input, output and custom status; with the events and the largest one."""
    db = sqlite3.connect(f"file:{stack.root / 'durable' / 'durable.sqlite'}?mode=ro", uri=True)
    try:
        ids = (run_id, f"{run_id}:%")
        events = db.execute("SELECT length(event) FROM history WHERE instance_id = ? OR instance_id LIKE ?",
                            ids).fetchall()
        (instances,) = db.execute(
            "SELECT sum(length(coalesce(input, '')) + length(coalesce(output, '')) + "
            "length(coalesce(custom_status, ''))) FROM instances WHERE instance_id = ? OR instance_id LIKE ?",
            ids).fetchone()
    finally:
        db.close()
    sizes = [e for (e,) in events]
    return {"history": sum(sizes), "events": len(sizes), "largest": max(sizes), "instances": instances,
            "total": sum(sizes) + instances}


def run(stack, n: int) -> tuple[str, dict]:
    r = stack.post("/api/runs", {"version": f"n{n}", "input": "manual/many.csv", "shardSize": n // 2})
    assert r.status_code == 202, r.text
    run_id = r.json()["id"]
    return run_id, stack.wait_for_run(run_id, timeout=600)


def test_history_per_run_does_not_grow_with_postcodes(stack):
    measured = {}
    for n in SIZES:
        run_id, view = run(stack, n)
        pcs = postcodes(n)
        missing = without_input(pcs)
        # Results, failures and status stay complete and correct.
        assert view["state"] == "completed_with_failures", view["errors"]
        assert len(view["shards"]) == 2 and view["postcodes_scored"] == n - len(missing)
        assert view["postcodes_failed_count"] == len(missing)
        assert view["postcodes_failed"] == {pc: "no input rows for this postcode" for pc in sorted(missing)}
        manifest = published_manifest(stack.blobs, run_id)
        assert manifest["rows"] == HORIZON * (n - len(missing)) and set(manifest["postcodes_failed"]) == missing
        results = stack.blobs.read_bytes("results", view["results"].partition("/")[2]).decode().splitlines()
        assert {line.split(",")[0] for line in results[1:]} == set(pcs) - missing
        failures = stack.get(f"/api/runs/{run_id}/failures").json()
        assert failures["count"] == len(missing) and [f["postcode"] for f in failures["failures"]] == sorted(missing)
        dashboard = stack.get(f"/api/dashboard/runs/{run_id}/failures").json()
        assert dashboard == failures  # one implementation for both routes
        measured[n] = history_bytes(stack, run_id)
    small, large = measured[SIZES[0]], measured[SIZES[1]]
    print(f"\nhistory per run, {SIZES[0]} vs {SIZES[1]} postcodes in 2 shards: {small} vs {large} "
          f"(total x{large['total'] / small['total']:.2f})")
    # 10x the postcodes: no payload carries them. Polls (a longer shard polls a few more times) are what varies.
    assert large["largest"] < 1.3 * small["largest"], (small, large)
    assert large["total"] < 1.3 * small["total"], (small, large)
    assert stack.standin.groups() == []


def test_failures_of_a_run_that_published_nothing_are_kept(stack):
    """Every shard fails (the stand-in refuses the image): nothing is published, and the failures route and
    the status still list each postcode with the shard's reason, from runs/<run>/failures.json."""
    stack.standin.inject({"kind": "http", "method": "PUT", "status": 400, "code": "InaccessibleImage",
                          "message": "The image 'localhost/r-scoring:dev' is not accessible."})
    try:
        run_id, view = run(stack, N)
    finally:
        stack.standin.clear_faults()
    assert view["state"] == "failed" and "results" not in view, view
    scored = set(postcodes(N)) - without_input(postcodes(N))
    assert view["postcodes_failed_count"] == N and set(view["postcodes_failed"]) == set(postcodes(N))
    assert all("InaccessibleImage" in view["postcodes_failed"][pc] for pc in scored)
    failures = stack.get(f"/api/runs/{run_id}/failures").json()
    assert failures["publication"] is None and failures["count"] == N
    assert view["failures"] == f"results/runs/{run_id}/failures.json"
    assert stack.standin.groups() == []
