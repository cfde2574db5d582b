"""The scoring worker against a real Azurite and real R, started exactly as the container starts it."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from conftest import HORIZON, REPO, r_reference

from scoring.exit_codes import EXIT_FATAL, EXIT_OK, EXIT_PARTIAL
from scoring.modelstore import ModelStore
from scoring.registration import register_version

pytestmark = pytest.mark.integration  # Azurite, R, the stand-in or the dev host


def run_worker(azurite, job: dict | None = None, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, SCORING_STORAGE_CONNECTION_STRING=azurite.connection_string)
    if job is not None:
        env["SCORING_JOB"] = json.dumps(job)
    env.update(extra_env or {})
    return subprocess.run([sys.executable, "-m", "scoring", "run"], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=180)


def make_job(version: str, input_blob: str, prefix: str, postcodes=None, model: str = "parcels") -> dict:
    return {"model": model, "version": version, "input": {"container": "input", "blob": input_blob},
            "postcodes": postcodes, "output": {"container": "results", "prefix": prefix}, "horizon": HORIZON}


def read_csv(blobs, name: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(blobs.read_bytes("results", name).decode())))


@pytest.fixture(scope="module")
def registered(blobs, sample_models):
    models, input_csv = sample_models
    version = "v" + uuid.uuid4().hex[:8]
    register_version(ModelStore(blobs), "parcels", version, models, champion=True)
    blobs.write_bytes("input", f"tests/{version}.csv", input_csv.read_bytes())
    return version, f"tests/{version}.csv"


def test_scores_equal_r_for_glm_and_ets(azurite, blobs, sample_models, registered, tmp_path):
    models, input_csv = sample_models
    version, input_blob = registered
    result = run_worker(azurite, make_job("champion", input_blob, "t/exact/"))
    assert result.returncode == EXIT_OK, result.stderr
    got = {(r["postcode"], r["date"]): r for r in read_csv(blobs, "t/exact/results.csv")}

    expected = r_reference(models, input_csv, tmp_path)
    assert len(got) == len(expected) == 10 * HORIZON
    ets_rows = 0
    for row in expected:
        mine = got[(row["postcode"], row["date"])]
        assert mine["model_version"] == version
        assert abs(float(mine["volume"]) - float(row["volume"])) <= 1e-9
        if row["lower_95"] not in ("", "NA"):
            ets_rows += 1
            assert abs(float(mine["lower_95"]) - float(row["lower_95"])) <= 1e-9
            assert abs(float(mine["upper_95"]) - float(row["upper_95"])) <= 1e-9
            assert mine["lower_80"] and mine["upper_80"]
        else:
            assert mine["lower_95"] == ""
    assert ets_rows == HORIZON  # the one ets postcode carries its intervals

    status = blobs.read_json("results", "t/exact/status.json")
    assert status["exit_code"] == 0 and status["rows"] == 10 * HORIZON and len(status["scored"]) == 10
    assert status["version"] == version and status["failed"] == {}


def test_glm_models_are_slimmed_and_keep_source_sha(blobs, registered, sample_models):
    import hashlib

    models, _ = sample_models
    manifest = ModelStore(blobs).read_manifest("parcels", registered[0])
    for pc, entry in manifest.models.items():
        source = (models / f"{pc}.rds").read_bytes()
        assert entry.source_sha256 == hashlib.sha256(source).hexdigest()
        if entry.model_class == "glm":
            assert entry.slimmed and entry.length < len(source) / 5
        else:
            assert entry.model_class == "ets" and not entry.slimmed
    assert manifest.r_version.startswith("4.2") and "forecast" in manifest.r_packages


def test_shard_with_one_corrupt_model_scores_the_others(azurite, blobs, sample_models, registered, tmp_path):
    models, _ = sample_models
    folder = tmp_path / "with-corrupt"
    folder.mkdir()
    pcs = sorted(p.stem for p in models.glob("*.rds"))[:4]
    for pc in pcs[1:]:
        (folder / f"{pc}.rds").write_bytes((models / f"{pc}.rds").read_bytes())
    (folder / f"{pcs[0]}.rds").write_bytes(b"\x1f\x8b this is not an R serialization")
    version = "corrupt-" + uuid.uuid4().hex[:6]
    # Registration would refuse this file; check_models=False plants it, as storage corruption would.
    register_version(ModelStore(blobs), "parcels", version, folder, check_models=False)

    result = run_worker(azurite, make_job(version, registered[1], "t/corrupt/"))
    assert result.returncode == EXIT_PARTIAL
    status = blobs.read_json("results", "t/corrupt/status.json")
    assert list(status["failed"]) == [pcs[0]]
    assert "cannot read model" in status["failed"][pcs[0]]
    assert status["scored"] == pcs[1:]
    rows = read_csv(blobs, "t/corrupt/results.csv")
    assert {r["postcode"] for r in rows} == set(pcs[1:]) and len(rows) == 3 * HORIZON


SCORER = """
score <- function(model, newdata) {
  n <- nrow(newdata)
  switch(model$kind,
         ok = data.frame(volume = rep(model$level, n), lower_80 = rep(1, n), upper_80 = rep(9, n)),
         na = c(NA, rep(1, n - 1)),
         negative = rep(-2, n),
         text = rep("a lot", n),
         short = rep(1, 3),
         error = stop("this model refuses to score"))
}
"""


@pytest.fixture(scope="module")
def scorer_version(blobs, tmp_path_factory):
    folder = tmp_path_factory.mktemp("scorer")
    kinds = {"2001": "ok", "2002": "na", "2003": "negative", "2004": "text", "2005": "short", "2006": "error"}
    script = "; ".join(f'saveRDS(list(kind = "{k}", level = {i + 5}), "{folder}/{pc}.rds")'
                       for i, (pc, k) in enumerate(kinds.items()))
    subprocess.run(["Rscript", "-e", script], check=True)
    (folder / "scorer.R").write_text(SCORER)
    version = "scorer-" + uuid.uuid4().hex[:6]
    register_version(ModelStore(blobs), "parcels", version, folder)
    lines = ["postcode,date,holiday"] + [f"{pc},2026-12-{d:02d},0" for pc in [*kinds, "2007"]
                                         for d in range(1, HORIZON + 1)]
    blobs.write_bytes("input", f"tests/{version}.csv", "\n".join(lines).encode())
    return version, f"tests/{version}.csv"


def test_user_scorer_is_honoured_and_bad_outputs_fail_their_postcode(azurite, blobs, scorer_version):
    version, input_blob = scorer_version
    result = run_worker(azurite, make_job(version, input_blob, "t/scorer/",
                                          postcodes=["2001", "2002", "2003", "2004", "2005", "2006", "2008"]))
    assert result.returncode == EXIT_PARTIAL, result.stderr
    status = blobs.read_json("results", "t/scorer/status.json")
    assert status["scored"] == ["2001"]
    failed = status["failed"]
    assert "NA" in failed["2002"]
    assert "negative volume" in failed["2003"]
    assert "not numeric" in failed["2004"]
    assert f"expected {HORIZON} volume values" in failed["2005"] and "got 3" in failed["2005"]
    assert "this model refuses to score" in failed["2006"]
    assert "no model for this postcode" in failed["2008"]
    rows = read_csv(blobs, "t/scorer/results.csv")
    assert len(rows) == HORIZON
    assert {(r["volume"], r["lower_80"], r["upper_80"], r["lower_95"]) for r in rows} == {("5", "1", "9", "")}


def test_postcode_without_input_rows_and_wrong_horizon(azurite, blobs, scorer_version):
    version, _ = scorer_version
    lines = ["postcode,date,holiday", "2001,2026-12-01,0"]  # one row where the horizon wants HORIZON
    blobs.write_bytes("input", "tests/short.csv", "\n".join(lines).encode())
    result = run_worker(azurite, make_job(version, "tests/short.csv", "t/short/", postcodes=["2001", "2003"]))
    assert result.returncode == EXIT_PARTIAL
    failed = blobs.read_json("results", "t/short/status.json")["failed"]
    assert failed["2003"] == "no input rows for this postcode"
    assert f"expected {HORIZON} (the horizon)" in failed["2001"]


def test_tampered_pack_fails_its_postcodes_by_sha256(azurite, blobs, sample_models, registered, tmp_path):
    models, _ = sample_models
    version = "tamper-" + uuid.uuid4().hex[:6]
    manifest = register_version(ModelStore(blobs), "parcels", version, models)
    pack = f"parcels/{version}/{manifest.packs[0]['blob']}"
    data = bytearray(blobs.read_bytes("models", pack))
    first = min(manifest.models, key=lambda pc: manifest.models[pc].offset)
    data[manifest.models[first].offset + 20] ^= 0xFF
    blobs.write_bytes("models", pack, bytes(data))
    result = run_worker(azurite, make_job(version, registered[1], "t/tamper/"))
    assert result.returncode == EXIT_PARTIAL
    failed = blobs.read_json("results", "t/tamper/status.json")["failed"]
    assert list(failed) == [first] and "sha256" in failed[first]


@pytest.mark.parametrize(
    ("job", "env", "message"),
    [
        (None, {}, "no job given"),
        (None, {"SCORING_JOB": "{not json"}, "not valid JSON"),
        ({"model": "parcels"}, {}, "'version' is required"),
        (make_job("v1", "x.csv", "t/x/") | {"colour": "red"}, {}, "unknown field(s): colour"),
        (make_job("v1", "x.csv", "../../etc/"), {}, "invalid output prefix"),
        (make_job("no-such-version", "x.csv", "t/x/"), {}, "has no version 'no-such-version'"),
        (None, {"SCORING_JOB_BLOB": "input/missing/job.json"}, "does not exist"),
    ],
)
def test_shard_that_cannot_run_exits_fatal_with_one_line_reason(azurite, job, env, message):
    result = run_worker(azurite, job, env)
    assert result.returncode == EXIT_FATAL
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_input_changed_since_planning_is_refused(azurite, blobs, registered):
    planned = blobs.info("input", registered[1]).etag
    blobs.write_bytes("input", "tests/moving.csv", blobs.read_bytes("input", registered[1]))
    job = make_job(registered[0], "tests/moving.csv", "t/moving/")
    job["input"]["etag"] = planned  # the ETag of another version than the one now in the blob
    result = run_worker(azurite, job)
    assert result.returncode == EXIT_FATAL
    assert "input data changed since the run was planned" in result.stderr


def test_missing_input_blob_is_fatal_and_recorded(azurite, blobs, registered):
    result = run_worker(azurite, make_job(registered[0], "tests/absent.csv", "t/noinput/"))
    assert result.returncode == EXIT_FATAL
    assert "input data missing" in result.stderr
    status = blobs.read_json("results", "t/noinput/status.json")
    assert status["exit_code"] == EXIT_FATAL and "absent.csv" in status["error"]


def test_job_spec_blob_is_read(azurite, blobs, registered):
    job = make_job(registered[0], registered[1], "t/jobblob/", postcodes=["1002", "1004"])
    blobs.write_json("input", "jobs/j1.json", job)
    result = run_worker(azurite, None, {"SCORING_JOB_BLOB": "input/jobs/j1.json"})
    assert result.returncode == EXIT_OK, result.stderr
    assert blobs.read_json("results", "t/jobblob/status.json")["scored"] == ["1002", "1004"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"postcode,when\n1002,2026-11-23\n", "lacks column(s) date"),
        (b"postcode,date\n1002,23/11/2026\n", "not YYYY-MM-DD"),
        (b"postcode,date\n1002,2026-11-23\n1002,2026-11-23\n", "duplicate (postcode, date)"),
    ],
)
def test_bad_input_data_is_fatal_with_reason(azurite, blobs, registered, content, message):
    name = f"tests/bad-{uuid.uuid4().hex[:6]}.csv"
    blobs.write_bytes("input", name, content)
    result = run_worker(azurite, make_job(registered[0], name, "t/badinput/"))
    assert result.returncode == EXIT_FATAL
    assert message in result.stderr


def test_unreachable_storage_is_fatal(tmp_path):
    conn = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
            "BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;")
    env = dict(os.environ, SCORING_STORAGE_CONNECTION_STRING=conn,
               SCORING_JOB=json.dumps(make_job("v1", "x.csv", "t/x/")))
    result = subprocess.run([sys.executable, "-m", "scoring", "run"], env=env, cwd=REPO, capture_output=True,
                            text=True, timeout=180)
    assert result.returncode == EXIT_FATAL
    assert "storage" in result.stderr.lower() or "connect" in result.stderr.lower()


def test_register_refuses_bad_folders(azurite, tmp_path, sample_models):
    models, _ = sample_models
    env = dict(os.environ, SCORING_STORAGE_CONNECTION_STRING=azurite.connection_string)

    def register(folder: Path, version: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "scoring", "register", "--model", "parcels", "--version",
                               version, "--from", str(folder)], env=env, cwd=REPO, capture_output=True, text=True)

    empty = tmp_path / "empty"
    empty.mkdir()
    r = register(empty, "e1")
    assert r.returncode == 2 and "holds no models" in r.stderr

    badnames = tmp_path / "badnames"
    badnames.mkdir()
    (badnames / "1002.rds").write_bytes((models / "1002.rds").read_bytes())
    (badnames / "zurich.rds").write_bytes(b"x")
    (badnames / "notes.txt").write_text("x")
    r = register(badnames, "b1")
    assert r.returncode == 2 and "notes.txt" in r.stderr and "zurich.rds" in r.stderr

    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "1002.rds").write_bytes(b"garbage")
    r = register(corrupt, "c1")
    assert r.returncode == 2 and "1002.rds" in r.stderr and "do not load in R" in r.stderr

    version = "dup-" + uuid.uuid4().hex[:6]
    assert register(models, version).returncode == 0
    r = register(models, version)
    assert r.returncode == 2 and "already has version" in r.stderr

    r = register(models, "../escape")
    assert r.returncode == 2 and "invalid version" in r.stderr
    r = register(models, "champion")
    assert r.returncode == 2 and "reserved" in r.stderr


def test_champion_alias_moves(blobs, sample_models):
    models, _ = sample_models
    store = ModelStore(blobs)
    a, b = "alias-a-" + uuid.uuid4().hex[:6], "alias-b-" + uuid.uuid4().hex[:6]
    register_version(store, "aliased", a, models, champion=True)
    register_version(store, "aliased", b, models)
    assert store.resolve_version("aliased", "champion") == a
    store.set_alias("aliased", b)
    assert store.resolve_version("aliased", "champion") == b
    assert store.versions("aliased") == sorted([a, b])
