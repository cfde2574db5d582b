"""Fault injection: each ACI fault through the real SDK against the ARM stand-in, then the same invariants.

After every fault: no container group is left; nothing of the run is visible before it publishes; every
postcode that was not scored is reported with a reason; the storage secret appears in no output.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import requests
from conftest import HORIZON, published_manifest, sample_stack

from scoring.modelstore import ModelStore
from scoring.registration import register_version

pytestmark = pytest.mark.integration  # Azurite, R, the stand-in or the dev host

POSTCODES = 10


@pytest.fixture(scope="module")
def stack(tmp_path_factory, sample_models):
    root = Path(tmp_path_factory.mktemp("faults"))
    with sample_stack(root, sample_models, {
        "MIN_SHARD_SIZE": "4", "DEFAULT_HORIZON_DAYS": str(HORIZON), "SHARD_ATTEMPTS": "2",
        "ACI_RETRY_INTERVAL_SECONDS": "0.3", "ACI_RETRY_ATTEMPTS": "5",
        # Deadlines count from the create (image pull included) and this machine is shared: generous here;
        # the deadline tests shorten them for themselves.
        "SHARD_DEADLINE_MINUTES": "1.5", "PROVISIONING_DEADLINE_MINUTES": "0.25",
    }, host_args=["--blob-poll-interval", "3600"]) as s:
        yield s


def secret_of(stack) -> str:
    """The storage account key inside the connection string: the secret the containers receive."""
    return dict(part.split("=", 1) for part in stack.settings["STORAGE"].split(";") if "=" in part)["AccountKey"]


PRE_PUBLISH = ("planning", "scoring", "cancelling")
FINISHED = ("Completed", "Failed", "Terminated")


class PublishWatch:
    """Samples what runs have made visible while they have not yet reached their publish stage.

    For each watched run: the revision behind the pointer it flips (its own, or for a retry the retried
    run's) naming it, and its model's `latest` pointer naming it. Any number of runs at once (added while
    the watch runs); a run stops being watched once it has finished."""

    def __init__(self, stack, run_id: str | None = None, model: str = "parcels"):
        self.stack, self.seen_early = stack, []
        self._runs: dict[str, tuple[str, str]] = {}  # run id -> (run whose pointer it flips, model)
        self._lock = threading.Lock()
        if run_id:
            self.add(run_id, model=model)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def add(self, run_id: str, model: str = "parcels", retry_of: str | None = None) -> None:
        with self._lock:
            self._runs[run_id] = (retry_of or run_id, model)

    def _visible(self, run_id: str, target: str, model: str) -> list[str]:
        blobs, seen = self.stack.blobs, []
        current = blobs.read_json_versioned("results", f"runs/{target}/current.json")
        if current and current[0].get("revision") == run_id:
            seen.append(f"{run_id}: current revision")
        latest = blobs.read_json_versioned("results", f"latest/{model}.json")
        if latest and latest[0].get("revision") == run_id:
            seen.append(f"{run_id}: latest pointer")
        return seen

    def _watch(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                runs = dict(self._runs)
            for run_id, (target, model) in runs.items():
                # Blobs first, then the stage: what was visible *before* a stage that is still pre-publish was
                # visible before publishing (the other order lets a fast publish slip in between the two reads).
                seen = self._visible(run_id, target, model)
                try:
                    view = self.stack.get(f"/api/runs/{run_id}").json()
                except (requests.ConnectionError, ValueError):  # the host is being restarted by the test
                    continue
                if view.get("progress", {}).get("stage") in PRE_PUBLISH:
                    self.seen_early += seen
                if view.get("runtimeStatus") in FINISHED:
                    with self._lock:
                        self._runs.pop(run_id, None)
            time.sleep(0.05)

    def stop(self) -> list[str]:
        self._stop.set()
        self._thread.join(timeout=10)
        return self.seen_early


def run_with_fault(stack, *faults: dict, during=None, body: dict | None = None) -> dict:
    for fault in faults:
        stack.standin.inject(fault)
    try:
        r = stack.post("/api/runs", body or {"input": "manual/input.csv"})
        assert r.status_code == 202, r.text
        run_id = r.json()["id"]
        watch = PublishWatch(stack, run_id)
        if during:
            during(stack, run_id)
        view = stack.wait_for_run(run_id, timeout=240)
        early = watch.stop()
    finally:
        stack.standin.clear_faults()
    assert_invariants(stack, view, early)
    return view


def assert_invariants(stack, view: dict, early: list[str]) -> None:
    run_id = view["id"]
    deadline = time.monotonic() + 10
    while stack.standin.groups() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert stack.standin.groups() == [], f"container groups left after {run_id}"
    assert early == [], f"visible before publish: {early}"
    failed = view.get("postcodes_failed") or {}
    assert all(isinstance(reason, str) and reason.strip() for reason in failed.values())
    if view["state"] in ("completed", "completed_with_failures"):
        assert view["postcodes_scored"] + len(failed) == view["progress"]["postcodes_total"]
        manifest = published_manifest(stack.blobs, run_id)
        assert manifest["postcodes_failed"] == failed
    elif view["state"] == "failed":
        assert view["errors"] and published_manifest(stack.blobs, run_id) is None
        if view.get("shards"):  # the plan was made: every planned postcode is accounted for
            assert len(failed) == view["progress"]["postcodes_total"]
    assert_no_secret(stack, run_id)


def assert_no_secret(stack, run_id: str) -> None:
    secret = secret_of(stack)
    outputs = {"run status": stack.get(f"/api/runs/{run_id}").text,
               "run list": stack.get("/api/runs").text,
               "durable status with history": requests.get(
                   f"{stack.base_url}/runtime/webhooks/durabletask/instances/{run_id}",
                   params={"showHistory": "true", "showHistoryOutput": "true", "showInput": "true"}, timeout=30).text,
               "host log": (stack.root / "host.log").read_text(errors="replace")}
    for blob in stack.blobs.list("results", f"runs/{run_id}/"):
        outputs[f"blob {blob.name}"] = stack.blobs.read_bytes("results", blob.name).decode(errors="replace")
    for path in (stack.root / "aci").rglob("*"):
        if path.is_file() and path.suffix != ".pem":
            outputs[f"stand-in file {path.name}"] = path.read_text(errors="replace")
    leaked = [where for where, text in outputs.items() if secret in text]
    assert leaked == [], f"the storage secret appears in: {leaked}"


def attempts(view: dict) -> list[dict]:
    return [a for shard in view["shards"] for a in shard["attempts"]]


@pytest.mark.parametrize("fault", [
    {"kind": "http", "method": "PUT", "status": 429, "code": "TooManyRequests", "retry_after": 1, "times": 3},
    {"kind": "http", "method": "PUT", "status": 429, "code": "TooManyRequests", "times": 3},
    {"kind": "http", "method": "PUT", "status": 503, "code": "ServiceUnavailable", "retry_after": 1, "times": 3},
    {"kind": "http", "method": "PUT", "status": 500, "code": "InternalServerError", "times": 4},
    {"kind": "http", "method": "GET", "status": 502, "code": "BadGateway", "times": 6},
    {"kind": "http", "method": "PUT", "status": 409, "code": "ServiceUnavailable",
     "message": "The requested resource is not available in the location", "times": 4},
], ids=["429-retry-after", "429", "503-retry-after", "500", "502-on-poll", "409-capacity"])
def test_transient_arm_errors_are_retried_and_the_run_completes(stack, fault):
    view = run_with_fault(stack, fault)
    assert view["state"] == "completed", view["errors"]
    # Retried in place: no container attempt was lost.
    assert all(a["attempt"] == 1 for a in attempts(view)), [(a["group"], a["reason"]) for a in attempts(view)]


def test_quota_reached_waits_retries_and_lowers_parallelism(stack):
    view = run_with_fault(stack, {"kind": "http", "method": "PUT", "status": 400, "code": "ContainerGroupQuotaReached",
                                  "message": "Resource type 'Microsoft.ContainerInstance/containerGroups' container "
                                             "group quota 'StandardCores' exceeded", "times": 6})
    assert view["state"] == "completed", view["errors"]
    assert sum(a["quota_waits"] for a in attempts(view)) >= 1
    assert view["progress"].get("parallel_groups") == 1


def test_inaccessible_image_fails_fast_without_blind_retries(stack):
    # ACI refuses an image it cannot pull in the PUT itself (400 InaccessibleImage).
    view = run_with_fault(stack, {"kind": "http", "method": "PUT", "status": 400, "code": "InaccessibleImage",
                                  "message": "The image 'localhost/r-scoring:dev' is not accessible."})
    assert view["state"] == "failed"
    assert all(len(shard["attempts"]) == 1 for shard in view["shards"])
    assert all("InaccessibleImage" in shard["reason"] for shard in view["shards"])
    assert all("InaccessibleImage" in reason for reason in view["postcodes_failed"].values())


def test_failed_deployment_is_retried_in_a_new_group(stack):
    view = run_with_fault(stack, {"kind": "lro_failed", "code": "ContainerGroupDeploymentFailed",
                                  "message": "The deployment failed.", "match": "-s000", "times": 1,
                                  "no_instance_view": True})
    assert view["state"] == "completed", view["errors"]
    first = view["shards"][0]["attempts"]
    assert [a["state"] for a in first] == ["failed", "succeeded"]
    assert "provisioning Failed" in first[0]["reason"]


def test_create_whose_answer_was_lost_is_retried_through_409s(stack):
    """The first PUT creates the group but its answer is lost; the retried PUT meets the group still pulling
    its image (409 ContainerGroupTransitioning), which is transient: one group, one container run."""
    view = run_with_fault(stack, {"kind": "slow_pull", "seconds": 1.5, "match": "-s000", "times": 1},
                          {"kind": "http", "method": "PUT", "status": 504, "code": "GatewayTimeout", "after": True,
                           "match": "-s000", "times": 1})
    assert view["state"] == "completed", view["errors"]
    assert [a["attempt"] for a in view["shards"][0]["attempts"]] == [1]


def test_provisioning_stuck_in_waiting_hits_the_provisioning_deadline(stack):
    view = run_with_fault(stack, {"kind": "stuck_pending", "match": "-s000"})
    assert view["state"] == "completed_with_failures"
    stuck = view["shards"][0]
    assert stuck["state"] == "timed_out" and "did not start within" in stuck["reason"]
    assert len(stuck["attempts"]) == 2 and all(a["deleted"] for a in stuck["attempts"])


def test_container_exiting_non_zero_is_retried_in_a_new_group(stack):
    view = run_with_fault(stack, {"kind": "exit", "exit_code": 137, "output": "Killed", "match": "-s001", "times": 1})
    assert view["state"] == "completed"
    retried = view["shards"][1]["attempts"]
    assert [a["state"] for a in retried] == ["failed", "succeeded"]
    assert retried[0]["group"] != retried[1]["group"] and "code 137" in retried[0]["reason"]


def test_container_that_hangs_hits_the_deadline(stack, sample_models):
    # One shard (two postcodes) under a short deadline: no other shard has to beat it on a loaded machine.
    two = sorted(p.stem for p in sample_models[0].glob("*.rds"))[:2]
    stack.settings["SHARD_DEADLINE_MINUTES"] = "0.1"
    stack.restart_host(hard=False)
    try:
        view = run_with_fault(stack, {"kind": "hang", "match": "-s000"},
                              body={"input": "manual/input.csv", "postcodes": two})
    finally:
        stack.settings["SHARD_DEADLINE_MINUTES"] = "1.5"
        stack.restart_host(hard=False)
    assert view["state"] == "failed" and len(view["shards"]) == 1
    assert view["shards"][0]["state"] == "timed_out"
    assert set(view["postcodes_failed"]) == set(two)
    assert all("timed_out" in reason for reason in view["postcodes_failed"].values())


def test_arm_stand_in_restarting_mid_run_is_recovered(stack):
    def restart_when_running(stack, run_id):
        deadline = time.monotonic() + 60
        while not stack.standin.groups():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        stack.standin.restart()

    view = run_with_fault(stack, during=restart_when_running)
    assert view["state"] == "completed", view["errors"]


def test_dev_host_restarting_mid_run_is_recovered(stack):
    def kill_host_when_running(stack, run_id):
        deadline = time.monotonic() + 60
        while not stack.standin.groups():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        stack.restart_host(hard=True)

    view = run_with_fault(stack, during=kill_host_when_running)
    assert view["state"] == "completed", view["errors"]


def test_failing_delete_is_retried_never_dropped(stack):
    view = run_with_fault(stack, {"kind": "http", "method": "DELETE", "status": 500, "code": "InternalServerError",
                                  "times": 5})
    assert view["state"] == "completed"
    assert all(a["deleted"] for a in attempts(view)) and view["cleanup_errors"] == []


def test_delete_failing_for_good_is_reported(stack):
    stack.standin.inject({"kind": "http", "method": "DELETE", "status": 500, "code": "InternalServerError",
                          "match": "-s000"})
    try:
        r = stack.post("/api/runs", {"input": "manual/input.csv"})
        view = stack.wait_for_run(r.json()["id"], timeout=240)
    finally:
        stack.standin.clear_faults()
    assert any("could not delete container group" in e and "-s000" in e for e in view["cleanup_errors"])
    left = stack.standin.groups()
    assert len(left) == 1 and left[0].endswith("-s000")  # reported, and still there for the sweeper
    stack.standin.delete_all_groups()


def test_bad_input_data_ends_the_run_before_any_group(stack):
    for content, message in [
        (b"postcode,when\n1002,2030-01-01\n", "lacks column(s) date"),
        (b"postcode,date\n1002,2030-01-01\n1002,2030-01-01\n", "duplicate row for postcode 1002"),
        (b"postcode,date\n1002,2020-01-01\n", "dates in the past"),
        (b"postcode,date\n1002,01/01/2030\n", "is not YYYY-MM-DD"),
        (b"postcode,date\n1002,20300101\n", "is not YYYY-MM-DD"),
        (b"postcode,date\n1002\n", "1 fields where the header has 2"),
    ]:
        stack.blobs.write_bytes("input", "manual/bad.csv", content)
        r = stack.post("/api/runs", {"input": "manual/bad.csv"})
        view = stack.wait_for_run(r.json()["id"])
        assert view["state"] == "failed" and message in view["errors"][0], (message, view["errors"])
        assert "shards" not in view or view["shards"] == []
        assert stack.standin.groups() == []
        assert_no_secret(stack, view["id"])


def test_model_package_the_image_lacks_fails_before_fan_out(stack):
    image_packages = stack.settings["IMAGE_R_PACKAGES"]
    assert "forecast=" in image_packages  # the local stack checks for real: the 'image' is this machine's R
    stack.settings["IMAGE_R_PACKAGES"] = "forecast=8.0"
    stack.restart_host(hard=False)
    try:
        r = stack.post("/api/runs", {"input": "manual/input.csv"})
        view = stack.wait_for_run(r.json()["id"])
    finally:
        stack.settings["IMAGE_R_PACKAGES"] = image_packages
        stack.restart_host(hard=False)
    assert view["state"] == "failed"
    assert "needs R package(s) the scoring image lacks: forecast" in view["errors"][0]
    assert stack.standin.groups() == []


def test_dry_run_plans_and_estimates_without_creating_anything(stack):
    runs_before = len(stack.get("/api/runs").json()["runs"])
    r = stack.post("/api/runs", {"input": "manual/input.csv", "dryRun": True})
    assert r.status_code == 200, r.text
    plan = r.json()
    assert plan["dryRun"] is True and plan["groups"] == 2 and sum(s["postcodes"] for s in plan["shards"]) == POSTCODES
    assert plan["estimate"]["vcpu_seconds"] > 0 and plan["estimate"]["price_usd"] > 0
    assert stack.standin.groups() == [] and len(stack.get("/api/runs").json()["runs"]) == runs_before


def test_run_manifest_reports_cost_and_lineage(stack):
    view = run_with_fault(stack)
    manifest = published_manifest(stack.blobs, view["id"])
    assert manifest["cost"]["vcpu_seconds"] > 0 and manifest["cost"]["gb_seconds"] > 0
    assert manifest["cost"]["price_usd"] > 0
    assert manifest["input"]["etag"] and manifest["image"] == "localhost/r-scoring:dev"
    assert len(manifest["model"]["sha256"]) == POSTCODES
    assert [s["attempts"][0]["exit_code"] for s in manifest["shards"]] == [0, 0]
    assert json.dumps(manifest).count(secret_of(stack)) == 0


def test_missing_model_blob_fails_before_fan_out(stack, sample_models):
    models, _ = sample_models
    store = ModelStore(stack.blobs)
    register_version(store, "parcels", "incomplete", models)
    assert stack.blobs.delete("models", "parcels/incomplete/packs/00000.bin")
    r = stack.post("/api/runs", {"input": "manual/input.csv", "version": "incomplete"})
    view = stack.wait_for_run(r.json()["id"])
    assert view["state"] == "failed"
    assert "parcels/incomplete is incomplete: blob(s) packs/00000.bin are missing" in view["errors"][0]
    assert stack.standin.groups() == []


def test_unknown_model_or_version_is_refused_at_the_door(stack):
    r = stack.post("/api/runs", {"input": "manual/input.csv", "version": "v404"})
    assert r.status_code == 400 and r.json()["field"] == "version" and "no version 'v404'" in r.json()["error"]
    r = stack.post("/api/runs", {"input": "manual/input.csv", "model": "nosuchmodel"})
    assert r.status_code == 400 and r.json()["field"] == "model"


def test_http_routes_require_a_function_key():
    import function_app

    # The dashboard's page and static files hold no data and are fetched by a browser navigation: anonymous.
    page = {"dashboard_page", "dashboard_static"}
    http = [f for f in function_app.app.get_functions() if f.get_trigger().type == "httpTrigger"
            and f.get_function_name() not in page]
    assert {f.get_function_name() for f in http} >= {"start_run", "get_run", "list_runs", "cancel_run", "retry_run",
                                                     "dashboard_runs", "dashboard_run", "dashboard_forecast"}
    assert all(str(f.get_trigger().auth_level) in ("AuthLevel.FUNCTION", "FUNCTION", "function") for f in http), \
        [(f.get_function_name(), f.get_trigger().auth_level) for f in http]
