"""The client routes (client_api/) and the R package (clients/r) against the real local stack: Durable dev host
enforcing a function key, the ARM stand-in running the registration and scoring containers, Azurite, R.

- Python: every refused request is a 4xx whose body names the field at fault.
- R: tests/r/test-live.R registers models from R, runs, waits, fetches and compares with R's own predict().
Nothing is mocked.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import tarfile
import time
from datetime import date, timedelta
from pathlib import Path

import pytest
import requests
from support.unit_data import stage_built_version, vouched

from client_api.registration_publish import PublishRefused, delete_staged, publish_staged
from devenv.stack import start_stack
from scoring.modelstore import ModelStore

pytestmark = pytest.mark.integration  # Azurite, R, the stand-in or the dev host

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "clients" / "r"
KEY = "local-test-key-" + os.urandom(8).hex()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = Path(tmp_path_factory.mktemp("client-api"))
    overrides = {"MIN_SHARD_SIZE": "2", "DEFAULT_HORIZON_DAYS": "14", "SHARD_ATTEMPTS": "1",
                 "SHARD_DEADLINE_MINUTES": "3", "MAX_INPUT_UPLOAD_MB": "0.05", "MAX_REGISTRATION_MB": "1",
                 "DEV_FUNCTION_KEY": KEY}
    s = start_stack(root / "local", overrides, host_args=["--function-key-env", "DEV_FUNCTION_KEY",
                                                         "--blob-poll-interval", "0.5"])
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(autouse=True)
def no_group_outlives_its_test(request):
    yield
    if "stack" in request.fixturenames:
        assert request.getfixturevalue("stack").standin.groups() == [], "a container group outlived its job"


def call(stack, method: str, path: str, body: bytes | None = None, key: str | None = KEY, **kw):
    headers = {"x-functions-key": key} if key else {}
    return requests.request(method, f"{stack.base_url}/api/{path}", data=body, headers=headers, timeout=30, **kw)


def refused(response: requests.Response, status: int, field: str, words: str = "") -> dict:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert body["field"] == field, body
    assert words.lower() in body["error"].lower(), body
    return body


def tar_of(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return out.getvalue()


def tomorrow_csv(postcodes: list[str], days: int = 3) -> bytes:
    start = date.today() + timedelta(days=1)
    lines = ["postcode,date,trend"] + [f"{pc},{start + timedelta(days=d)},{d}" for pc in postcodes
                                        for d in range(days)]
    return ("\n".join(lines) + "\n").encode()


# ------------------------------------------------------------------------------------------ function keys


def test_routes_need_the_function_key_in_a_header_or_code(stack):
    assert call(stack, "GET", "runs", key=None).status_code == 401
    assert call(stack, "GET", "runs", key="wrong").status_code == 401
    assert call(stack, "GET", "runs").status_code == 200
    assert requests.get(f"{stack.base_url}/api/runs", params={"code": KEY}, timeout=30).status_code == 200


# --------------------------------------------------------------------------------------------- inputs


def test_input_upload_refusals_name_the_field(stack):
    refused(call(stack, "PUT", "inputs/bad%20name.csv", tomorrow_csv(["1000"])), 400, "name")
    refused(call(stack, "PUT", "inputs/no-suffix", tomorrow_csv(["1000"])), 400, "name", ".csv")
    refused(call(stack, "PUT", "inputs/..csv", tomorrow_csv(["1000"])), 400, "name")
    refused(call(stack, "PUT", "inputs/empty.csv", b""), 400, "body", "empty")
    refused(call(stack, "PUT", "inputs/big.csv", tomorrow_csv(["1000"], 3000)), 413, "body", "limit")
    refused(call(stack, "PUT", "inputs/cols.csv", b"postcode,day\n1000,2030-01-01\n"), 422, "body", "date")
    refused(call(stack, "PUT", "inputs/past.csv", b"postcode,date\n1000,2001-01-01\n"), 422, "body", "past")
    refused(call(stack, "PUT", "inputs/dates.csv", b"postcode,date\n1000,01/02/2030\n"), 422, "body",
            "YYYY-MM-DD")
    refused(call(stack, "PUT", "inputs/pc.csv", tomorrow_csv(["../x"])), 422, "body", "postcode")
    ok = call(stack, "PUT", "inputs/good.csv", tomorrow_csv(["1000", "2000"]))
    assert ok.status_code == 201, ok.text
    assert ok.json() == {**ok.json(), "input": "uploads/good.csv", "rows": 6, "postcodes": 2}
    assert stack.blobs.read_bytes("input", "uploads/good.csv") == tomorrow_csv(["1000", "2000"])
    refused(call(stack, "PUT", "inputs/good.csv", tomorrow_csv(["3000"])), 409, "name", "never overwritten")


# --------------------------------------------------------------------------------------- registration


def test_registration_refusals_at_the_door_name_the_field(stack):
    archive = tar_of({"1000.rds": b"x"})
    refused(call(stack, "POST", "models/Bad_Model/versions/v1", archive), 400, "model")
    refused(call(stack, "POST", "models/parcels/versions/champion", archive), 400, "version", "reserved")
    refused(call(stack, "POST", "models/parcels/versions/v1", archive, params={"champion": "maybe"}), 400,
            "champion")
    refused(call(stack, "POST", "models/parcels/versions/v1", archive, params={"force": "1"}), 400, "force")
    refused(call(stack, "POST", "models/parcels/versions/v1", b""), 400, "body", "empty")
    refused(call(stack, "POST", "models/parcels/versions/v1", os.urandom(1_200_000)), 413, "body")
    refused(call(stack, "POST", "models/parcels/versions/v1", b"not an archive"), 422, "body", "not a tar")
    refused(call(stack, "POST", "models/parcels/versions/v1", tar_of({"abc.rds": b"x", "1000.rds": b"x"})), 422,
            "body", "abc.rds")
    refused(call(stack, "POST", "models/parcels/versions/v1", tar_of({"sub/1000.rds": b"x"})), 422, "body",
            "top level")
    refused(call(stack, "POST", "models/parcels/versions/v1", tar_of({"scorer.R": b"score <- 1"})), 422, "body",
            "no models")
    linked = io.BytesIO()
    with tarfile.open(fileobj=linked, mode="w") as t:
        info = tarfile.TarInfo("1000.rds")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        t.addfile(info)
    refused(call(stack, "POST", "models/parcels/versions/v1", linked.getvalue()), 422, "body", "regular file")
    refused(call(stack, "GET", "registrations/nope"), 400, "id")
    refused(call(stack, "GET", "registrations/reg-0123456789abcdef0123"), 404, "id")
    assert list(stack.blobs.list("staging")) == list(stack.blobs.list("uploads")) == []  # nothing refused was kept


def test_upload_in_parts_refusals_name_the_field(stack):
    upload = call(stack, "POST", "uploads")
    assert upload.status_code == 201 and upload.json()["partBytes"] == 1024 * 1024, upload.text
    uid = upload.json()["id"]
    refused(call(stack, "PUT", "uploads/upl-nope/parts/0", b"x"), 400, "id")
    refused(call(stack, "PUT", f"uploads/{uid}/parts/x", b"x"), 400, "n")
    refused(call(stack, "PUT", f"uploads/{uid}/parts/50000", b"x"), 400, "n")
    refused(call(stack, "PUT", f"uploads/{uid}/parts/0", b""), 400, "body", "empty")
    refused(call(stack, "PUT", f"uploads/{uid}/parts/0", os.urandom(1024 * 1024 + 1)), 413, "body")
    refused(call(stack, "POST", "models/parcels/versions/v9", params={"upload": "upl-x"}), 400, "upload")
    refused(call(stack, "POST", "models/parcels/versions/v9", params={"upload": uid}), 404, "upload", "no parts")
    for n in (0, 2):
        assert call(stack, "PUT", f"uploads/{uid}/parts/{n}", b"x").status_code == 201
    refused(call(stack, "POST", "models/parcels/versions/v9", params={"upload": uid}), 409, "upload", "part(s) 1")
    refused(call(stack, "POST", "models/parcels/versions/v9", b"x", params={"upload": uid}), 400, "body")
    assert not any(b.name.endswith("upload.bin") for b in stack.blobs.list("uploads"))  # nothing committed


def test_a_version_sent_in_parts_is_checked_in_the_container_and_cleaned_up(stack):
    """The container unpacks the committed parts and refuses the model R cannot load, saying which."""
    archive = tar_of({"1000.rds": b"not an rds file " * 100, "2000.rds": os.urandom(3000)})
    uid = call(stack, "POST", "uploads").json()["id"]
    half = len(archive) // 2
    assert call(stack, "PUT", f"uploads/{uid}/parts/1", archive[half:]).status_code == 201  # any order
    assert call(stack, "PUT", f"uploads/{uid}/parts/0", archive[:half]).status_code == 201
    r = call(stack, "POST", "models/broken/versions/v1", params={"upload": uid})
    assert r.status_code == 202, r.text
    view = wait_registration(stack, r.json()["id"])
    assert view["state"] == "refused", view
    assert "2 model(s) do not load in r" in view["error"].lower() and "1000.rds" in view["error"], view
    assert list(stack.blobs.list("staging")) == list(stack.blobs.list("uploads")) == []  # upload, outcome gone
    assert stack.blobs.exists("results", f"registrations/{r.json()['id']}/container.log")
    refused(call(stack, "GET", "models/broken/versions"), 404, "model", "no versions")
    refused(call(stack, "POST", "models/broken/versions/v1", params={"upload": uid}), 404, "upload")


def wait_registration(stack, reg_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = call(stack, "GET", f"registrations/{reg_id}").json()
        if view["state"] != "checking":
            return view
        time.sleep(0.3)
    raise TimeoutError(reg_id)


def rds_files(tmp: Path, postcodes: list[str]) -> dict[str, bytes]:
    script = "; ".join(f'saveRDS(lm(y ~ x, data.frame(x = 1:10, y = (1:10) * {i + 2})), "{tmp}/{pc}.rds")'
                       for i, pc in enumerate(postcodes))
    subprocess.run(["Rscript", "-e", script], check=True, capture_output=True)
    return {f"{pc}.rds": (tmp / f"{pc}.rds").read_bytes() for pc in postcodes}


def spec_while_running(stack, reg_id: str, timeout: float = 60) -> dict:
    """The create body the stand-in received; only readable while the group exists (it is always deleted)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return stack.standin.received(reg_id)
        except Exception:  # noqa: BLE001 - not created yet
            time.sleep(0.05)
    raise TimeoutError(reg_id)


def test_the_container_builds_in_staging_and_the_app_publishes_once(stack, tmp_path):
    """Two registrations of one version at once: both containers read their upload from `uploads` (which the
    worker may not write), check and build in staging only (nor may it write `models`), and vouch for what they
    built in their log; the app publishes the first, refuses the second."""
    archive = tar_of(rds_files(tmp_path, ["1000", "2000"]))
    first = call(stack, "POST", "models/published/versions/v1", archive, params={"champion": "true"})
    second = call(stack, "POST", "models/published/versions/v1", archive)
    assert first.status_code == 202 and second.status_code == 202, (first.text, second.text)
    ids = [first.json()["id"], second.json()["id"]]
    for reg_id in ids:
        container = spec_while_running(stack, reg_id)["properties"]["containers"][0]["properties"]
        command = container["command"]
        assert "models" not in command and "--container" not in command, command
        flags = {command[i]: command[i + 1] for i in range(len(command) - 1) if command[i].startswith("--")}
        assert flags["--from-blob"] == f"uploads/{reg_id}/upload.bin"
        assert all(flags[f].startswith(f"staging/{reg_id}/") for f in ("--result-blob", "--output"))
        assert not any(v.get("value") == "models" for v in container.get("environmentVariables", []))
    views = [wait_registration(stack, reg_id) for reg_id in ids]
    states = sorted(v["state"] for v in views)
    assert states == ["refused", "registered"], views
    loser = next(v for v in views if v["state"] == "refused")
    assert "version exists" in loser["error"], loser
    store = ModelStore(stack.blobs, "models")
    manifest = store.read_manifest("published", "v1")
    assert manifest.postcodes == ["1000", "2000"]
    for entry in manifest.models.values():
        data = store.read_pack_range(manifest, entry.blob, entry.offset, entry.offset + entry.length)
        assert hashlib.sha256(data).hexdigest() == entry.sha256
    winner = next(v for v in views if v["state"] == "registered")
    listed = {b.name for b in stack.blobs.list("models", "published/")}
    assert all(winner["id"] in n for n in listed if not n.endswith(("manifest.json", "champion.json"))), listed
    promoted = stack.blobs.exists("models", "published/champion.json")
    assert promoted == (winner["id"] == ids[0])  # only the first asked for promotion
    if promoted:
        assert store.resolve_version("published", "champion") == "v1"
    assert list(stack.blobs.list("staging")) == list(stack.blobs.list("uploads")) == []  # all gone
    for reg_id in ids:  # the witness the app published on: the container's own log, kept in results
        log = stack.blobs.read_bytes("results", f"registrations/{reg_id}/container.log").decode()
        assert f'"output": "staging/{reg_id}/out/"' in log and "scoring register: verified " in log, log[-500:]


@pytest.mark.parametrize("tamper", ["sha", "extra", "escape"])
def test_a_tampered_staged_output_is_refused_on_azurite(stack, tamper):
    reg_id = "reg-" + os.urandom(10).hex()
    out = f"staging/{reg_id}/out/"
    stage_built_version(stack.blobs, out, model="tampered", version="v1")
    verified = vouched(stack.blobs, out)
    if tamper == "sha":
        stack.blobs.write_bytes("staging", f"{reg_id}/out/packs/00000.bin", b"AAAABBX")
    elif tamper == "extra":
        stack.blobs.write_bytes("staging", f"{reg_id}/out/run.sh", b"curl evil")
    else:
        manifest = stack.blobs.read_json("staging", f"{reg_id}/out/manifest.json")
        manifest["packs"][0]["blob"] = "../../published/v1/packs/00000.bin"
        stack.blobs.write_json("staging", f"{reg_id}/out/manifest.json", manifest)
    if tamper == "escape":  # as if the container had vouched for it: the structural checks still refuse it
        verified = vouched(stack.blobs, out)
    with pytest.raises(PublishRefused, match={"sha": "sha256", "extra": "run.sh", "escape": "names pack"}[tamper]):
        publish_staged(stack.blobs, out, "models", reg_id, "tampered", "v1", champion=True, manifest_sha256=verified)
    delete_staged(stack.blobs, out)
    assert list(stack.blobs.list("models", "tampered/")) == []


# ---------------------------------------------------------------------------------- models and results


def test_model_and_result_refusals_name_the_field(stack):
    refused(call(stack, "GET", "models/UPPER/versions"), 400, "model")
    refused(call(stack, "GET", "models/nobody/versions"), 404, "model")
    refused(call(stack, "PUT", "models/nobody/champion", b"{"), 400, "body", "malformed")
    refused(call(stack, "PUT", "models/nobody/champion", b"[]"), 400, "body")
    refused(call(stack, "PUT", "models/nobody/champion", b"{}"), 400, "version", "required")
    refused(call(stack, "PUT", "models/nobody/champion", b'{"version": "v1", "x": 1}'), 400, "x")
    refused(call(stack, "PUT", "models/nobody/champion", b'{"version": "../v1"}'), 400, "version")
    refused(call(stack, "PUT", "models/nobody/champion", b'{"version": "v1"}'), 404, "model")
    refused(call(stack, "GET", "models/nobody/latest"), 404, "model")
    for what in ("results", "manifest", "failures"):
        refused(call(stack, "GET", f"runs/run-0123456789abcdef0123/{what}"), 404, "id", "no run")
        refused(call(stack, "GET", f"runs/Not_A_Run/{what}"), 400, "id")
    for table in ("metrics", "pairs"):
        refused(call(stack, "GET", f"runs/run-0123456789abcdef0123/accuracy/{table}"), 404, "id", "no accuracy")
    refused(call(stack, "GET", "runs/run-0123456789abcdef0123/accuracy/scores"), 404, "table", "metrics, pairs")
    refused(call(stack, "GET", "runs/Not_A_Run/accuracy/metrics"), 400, "id")


# ------------------------------------------------------------------------------------------------- R


def r_library(tmp: Path) -> Path:
    library = tmp / "rlib"
    library.mkdir()
    subprocess.run(["R", "CMD", "INSTALL", "--no-docs", "--no-multiarch", f"--library={library}", str(PACKAGE)],
                   check=True, capture_output=True)
    return library


def test_r_package_against_the_local_stack(stack, tmp_path):
    """Register from R, run, wait, fetch, compare with R's predict() to 1e-9; refusals as R errors."""
    env = {**os.environ, "R_LIBS": str(r_library(tmp_path)), "RSCORING_URL": stack.base_url,
           "RSCORING_KEY": KEY}
    script = ("res <- testthat::test_dir('tests/r', reporter = 'summary', stop_on_failure = TRUE); "
              "df <- as.data.frame(res); cat('\\nR-TESTS', sum(df$nb), sum(df$failed), sum(df$skipped), "
              "sum(df$error), '\\n')")
    done = subprocess.run(["Rscript", "-e", script], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    expectations, failed, skipped, errors = map(int, re.search(r"R-TESTS (\d+) (\d+) (\d+) (\d+)",
                                                               done.stdout).groups())
    assert expectations >= 30 and failed == 0 and skipped == 0 and errors == 0, done.stdout[-4000:]
    assert KEY not in done.stdout + done.stderr  # the key never shows in R's output
    log = (stack.root / "host.log").read_text()
    assert "Executed 'Functions.upload_part' (Succeeded" in log  # r2 went in parts, r1 in one body
    assert KEY not in log
