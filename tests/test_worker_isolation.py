"""The worker against a hostile model: a postcode whose R process dies fails alone, and secrets the model
can read from its environment never reach status.json or the container's output (real R, real Azurite)."""

from __future__ import annotations

import subprocess
import uuid

import pytest
from conftest import HORIZON
from test_scoring_worker import make_job, run_worker

from scoring.modelstore import ModelStore
from scoring.registration import register_version
from scoring.secrets import scrub, secrets_of
from scoring.worker import EXIT_PARTIAL

HOSTILE_SCORER = r"""
score <- function(model, newdata) {
  if (model$kind == "quit") quit(save = "no", status = 1)
  if (model$kind == "segv") tools::pskill(Sys.getpid(), 11L)  # SIGSEGV
  if (model$kind == "leak") stop("cannot connect with ", Sys.getenv("SCORING_STORAGE_CONNECTION_STRING"))
  # A warning raised with stop(): R sends it past every handler to the top level, which would end the node.
  if (model$kind == "stopwarn") stop(simpleWarning("a warning raised with stop()"))
  if (model$kind == "shout") {  # past R's sinks: straight to the file descriptors the node inherited
    secret <- Sys.getenv("SCORING_STORAGE_CONNECTION_STRING")
    cat("to /dev/stdout:", secret, "\n", file = "/dev/stdout")
    cat("to /dev/stderr:", secret, "\n", file = "/dev/stderr")
    system(paste("echo from a child process:", shQuote(secret)))
  }
  rep(model$level, nrow(newdata))
}
"""
KINDS = {"3001": "ok", "3002": "quit", "3003": "ok", "3004": "segv", "3005": "leak", "3006": "ok", "3007": "shout",
         "3008": "stopwarn"}


@pytest.fixture(scope="module")
def hostile_version(blobs, tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    script = "; ".join(f'saveRDS(list(kind = "{k}", level = {i + 5}), "{folder}/{pc}.rds")'
                       for i, (pc, k) in enumerate(KINDS.items()))
    subprocess.run(["Rscript", "-e", script], check=True)
    (folder / "scorer.R").write_text(HOSTILE_SCORER)
    version = "hostile-" + uuid.uuid4().hex[:6]
    register_version(ModelStore(blobs), "parcels", version, folder)
    lines = ["postcode,date"] + [f"{pc},2099-12-{d:02d}" for pc in KINDS for d in range(1, HORIZON + 1)]
    blobs.write_bytes("input", f"tests/{version}.csv", "\n".join(lines).encode())
    return version, f"tests/{version}.csv"


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_postcode_whose_r_process_dies_fails_alone(azurite, blobs, hostile_version, workers):
    version, input_blob = hostile_version
    prefix = f"t/hostile-{workers}/"
    result = run_worker(azurite, make_job(version, input_blob, prefix), {"SCORING_WORKERS": workers})
    assert result.returncode == EXIT_PARTIAL, result.stderr
    status = blobs.read_json("results", prefix + "status.json")
    assert status["scored"] == ["3001", "3003", "3006", "3007"]
    assert set(status["failed"]) == {"3002", "3004", "3005", "3008"}
    for pc in ("3002", "3004"):
        assert "the R process scoring this postcode died" in status["failed"][pc], status["failed"][pc]
    assert status["failed"]["3008"] == "a warning raised with stop()"  # an error of its own: the node lives
    rows = blobs.read_bytes("results", prefix + "results.csv").decode().splitlines()
    assert len(rows) == 1 + 4 * HORIZON


def test_secrets_a_model_reads_are_scrubbed_from_status_and_output(azurite, blobs, hostile_version):
    version, input_blob = hostile_version
    key = dict(p.split("=", 1) for p in azurite.connection_string.split(";") if "=" in p)["AccountKey"]
    result = run_worker(azurite, make_job(version, input_blob, "t/leak/", postcodes=["3001", "3005", "3007"]))
    assert result.returncode == EXIT_PARTIAL, result.stderr
    status_text = blobs.read_bytes("results", "t/leak/status.json").decode()
    assert "cannot connect with" in status_text and "***" in status_text
    # What the model wrote past R's sinks reached the container's output, masked (scoring/output_scrub.py).
    assert "to /dev/stdout: ***" in result.stdout and "from a child process: ***" in result.stdout
    assert "to /dev/stderr: ***" in result.stderr
    for where, text in {"status.json": status_text, "stdout": result.stdout, "stderr": result.stderr}.items():
        assert key not in text and azurite.connection_string not in text, where


def test_scrub_masks_connection_strings_sas_and_client_secrets():
    env = {"STORAGE": "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=c2VjcmV0a2V5MTIz;EndpointSuffix=x",
           "AZURE_CLIENT_SECRET": "s3cr3t-value-123", "OTHER": "https://a.blob/c?sv=1&sig=abcDEF123456%3D",
           "HARMLESS": "westeurope"}
    secrets = secrets_of(env)
    text = ("failed: " + env["STORAGE"] + " and s3cr3t-value-123 via " + env["OTHER"]
            + " AccountKey=unknownKEYvalue99 in westeurope")
    clean = scrub(text, secrets)
    assert "c2VjcmV0a2V5MTIz" not in clean and "s3cr3t-value-123" not in clean and "abcDEF123456" not in clean
    assert "unknownKEYvalue99" not in clean and "westeurope" in clean
