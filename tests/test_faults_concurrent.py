"""The fault suite's invariants under concurrent runs, and a model that leaks secrets, end to end.

Real local stack (Azurite, the ARM stand-in driven by the real SDK, the Durable dev host). Several runs of two
models on two inputs start at once, each with its own fault (a container that exits non-zero, a provisioning
that never ends, a hang cancelled by the user, ARM errors on create and on poll, an image ACI refuses); one
run is retried while another starts and publishes, and champion runs race for `latest`. Then, for every run:
no container group is left; nothing was visible before its publish stage; every postcode is either in the
published results or listed as failed with a reason; `latest/<model>.json` names the newest champion run (by
input time, then plan time); and no secret appears anywhere a user or an operator can read.

Faults are keyed by run id, which is known only once a run has started. So that every fault is in place
before any group exists, a test holds the whole vCPU budget (pipeline/admission.py) while it starts the runs:
their shards wait for admission as they would behind other runs' groups, then all go at once.
"""

from __future__ import annotations

import csv
import io
import secrets
import subprocess
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import requests
from conftest import HORIZON, REPO, SAMPLE_START, sample_stack
from test_faults import FINISHED, PublishWatch

from pipeline.revisions import current_revision
from scoring.blobstore import BlobChanged
from scoring.modelstore import ModelStore
from scoring.registration import register_version

pytestmark = pytest.mark.integration  # Azurite, R, the stand-in and the dev host

BUDGET_BLOB = "admission/vcpu.json"  # pipeline.admission.BUDGET_BLOB
# A SAS the containers find in their environment although the app never gave it to them (as an image's ENV
# could): the stand-in hands its own environment to the processes it runs. Not named like a secret, so only
# its `sig=` part marks it as one.
SAS_SIGNATURE = "Zm9yZ2VkU2lnbmF0dXJl" + secrets.token_hex(8)
SAS_URL = f"https://acct.blob.core.windows.net/reports?sv=2024-05-04&sr=c&sp=r&sig={SAS_SIGNATURE}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory, sample_models):
    root = Path(tmp_path_factory.mktemp("faults-concurrent"))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("REPORTS_URL", SAS_URL)
        with sample_stack(root, sample_models, {
            "MIN_SHARD_SIZE": "2", "DEFAULT_HORIZON_DAYS": str(HORIZON), "SHARD_ATTEMPTS": "1",
            # One vCPU a group: more groups fit the budget at once, and each runs one R node (2 shared cores).
            "CONTAINER_CPU": "1", "CORE_QUOTA": "6", "MAX_PARALLEL_GROUPS": "2",
            "ACI_RETRY_INTERVAL_SECONDS": "0.3", "ACI_RETRY_ATTEMPTS": "5",
            # Generous for a loaded machine: several R workers start at once. No test waits for the shard
            # deadline (the hang is cancelled); the stuck provisioning waits for its own.
            "SHARD_DEADLINE_MINUTES": "3", "PROVISIONING_DEADLINE_MINUTES": "0.25",
        }, host_args=["--blob-poll-interval", "3600"]) as s:
            yield s


def secrets_of_stack(stack) -> dict[str, str]:
    connection = stack.settings["STORAGE"]
    key = dict(part.split("=", 1) for part in connection.split(";") if "=" in part)["AccountKey"]
    return {"storage connection string": connection, "storage account key": key, "SAS signature": SAS_SIGNATURE}


def start(stack, body: dict) -> str:
    r = stack.post("/api/runs", body)
    assert r.status_code == 202, r.text
    return r.json()["id"]


def view_of(stack, run_id: str) -> dict:
    return stack.get(f"/api/runs/{run_id}").json()


def wait_all(stack, run_ids, timeout: float = 240) -> dict[str, dict]:
    deadline, views = time.monotonic() + timeout, {}
    while len(views) < len(run_ids):
        assert time.monotonic() < deadline, f"runs not finished: {sorted(set(run_ids) - set(views))}"
        for run_id in run_ids:
            if run_id not in views:
                view = view_of(stack, run_id)
                if view["runtimeStatus"] in FINISHED:
                    views[run_id] = view
        time.sleep(0.3)
    return views


def wait_until(condition, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


class BudgetGate:
    """Holds the whole vCPU budget (a holder as pipeline.admission writes one), so no shard creates a group
    until `open()`; conditional writes, as the shards' own."""

    HOLDER = "test-gate"

    def __init__(self, stack):
        self.blobs = stack.blobs

    def _change(self, change) -> None:
        for _ in range(50):
            found = self.blobs.read_json_versioned("results", BUDGET_BLOB)
            value, etag = found if found else ({"holders": {}}, None)
            holders = dict(value.get("holders") or {})
            change(holders)
            try:
                self.blobs.write_json_if("results", BUDGET_BLOB, {"holders": holders}, etag)
                return
            except BlobChanged:  # a shard wrote meanwhile: read again
                time.sleep(0.05)
        raise AssertionError("could not update the budget blob")

    def close(self) -> None:
        self._change(lambda h: h.__setitem__(self.HOLDER, {"cpu": 10_000, "run": self.HOLDER,
                                                            "since": datetime.now(UTC).isoformat()}))

    def open(self) -> None:
        self._change(lambda h: h.pop(self.HOLDER, None))


def published_postcodes(stack, run_id: str) -> tuple[dict, set[str]]:
    """The run's current manifest and the postcodes in its current results.csv (read through the pointer)."""
    current = current_revision(stack.blobs, "results", run_id)
    assert current is not None, f"{run_id} published nothing"
    manifest = stack.blobs.read_json("results", current.manifest)
    rows = list(csv.DictReader(io.StringIO(stack.blobs.read_bytes("results", current.results).decode())))
    by_postcode: dict[str, int] = {}
    for row in rows:
        by_postcode[row["postcode"]] = by_postcode.get(row["postcode"], 0) + 1
    assert set(by_postcode.values()) <= {HORIZON}, f"{run_id}: a postcode without {HORIZON} rows: {by_postcode}"
    return manifest, set(by_postcode)


def assert_every_postcode_accounted_for(stack, view: dict, requested: set[str], target: str | None = None) -> None:
    """Scored in the published results (of `target`, the run a retry publishes into), or failed with a reason:
    never both, never neither."""
    run_id = view["id"]
    failed = view.get("postcodes_failed") or {}
    assert all(isinstance(why, str) and why.strip() for why in failed.values()), (run_id, failed)
    if view["state"] in ("completed", "completed_with_failures"):
        manifest, scored = published_postcodes(stack, target or run_id)
        assert scored.isdisjoint(manifest["postcodes_failed"]), run_id
        assert scored | set(manifest["postcodes_failed"]) == requested, (run_id, scored, manifest["postcodes_failed"])
        assert all(why.strip() for why in manifest["postcodes_failed"].values()), run_id
    else:  # failed or cancelled: nothing published; every planned postcode listed with why
        published = current_revision(stack.blobs, "results", target or run_id)
        assert published is None, f"{run_id} {view['state']} but published"
        if view.get("progress", {}).get("postcodes_total"):
            assert set(failed) == requested, (run_id, failed)


def assert_no_secret_anywhere(stack, run_ids: list[str], more: dict[str, str] | None = None) -> None:
    """Every place a user or an operator can read: the run routes (the R client's too), the dashboard's data,
    the durable history, every blob of results and staging, the host's log, the stand-in's files (what ACI
    holds: the containers' output)."""
    texts = dict(more or {})
    texts["run list"] = stack.get("/api/runs?top=200").text
    texts["dashboard runs"] = stack.get("/api/dashboard/runs").text
    for run_id in run_ids:
        for route in (f"runs/{run_id}", f"runs/{run_id}/failures", f"runs/{run_id}/manifest",
                      f"dashboard/runs/{run_id}", f"dashboard/runs/{run_id}/failures",
                      f"dashboard/runs/{run_id}/postcodes"):
            texts[route] = stack.get(f"/api/{route}").text
        texts[f"durable history {run_id}"] = requests.get(
            f"{stack.base_url}/runtime/webhooks/durabletask/instances/{run_id}",
            params={"showHistory": "true", "showHistoryOutput": "true", "showInput": "true"}, timeout=30).text
    blobs = stack.blobs
    for container in ("results", stack.settings["STAGING_CONTAINER"]):
        for blob in blobs.list(container):
            texts[f"blob {container}/{blob.name}"] = blobs.read_bytes(container, blob.name).decode(errors="replace")
    texts["host log"] = (stack.root / "host.log").read_text(errors="replace")
    for path in (stack.root / "aci").rglob("*"):
        if path.is_file() and path.suffix != ".pem":
            texts[f"stand-in file {path.relative_to(stack.root)}"] = path.read_text(errors="replace")
    leaked = {what: [where for where, text in texts.items() if secret in text]
              for what, secret in secrets_of_stack(stack).items()}
    assert leaked == {what: [] for what in leaked}, f"secrets found: {leaked}"


def assert_no_group_left(stack) -> None:
    deadline = time.monotonic() + 15
    while stack.standin.groups() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert stack.standin.groups() == [], "container groups outlived their runs"


def upload_inputs(stack, sample_models) -> tuple[str, str]:
    """Two versions of the same days' input, the second written later (its blob time orders `latest`)."""
    _, input_csv = sample_models
    older, newer = "conc/older.csv", "conc/newer.csv"
    stack.blobs.write_bytes("input", older, input_csv.read_bytes())
    wait_until(lambda: stack.blobs.write_bytes("input", newer, input_csv.read_bytes()) and
               stack.blobs.info("input", newer).last_modified > stack.blobs.info("input", older).last_modified,
               "a newer input blob time", timeout=10)
    return older, newer


def test_invariants_hold_under_concurrent_runs(stack, sample_models):
    models, _ = sample_models
    everything = {p.stem for p in models.glob("*.rds")}
    store = ModelStore(stack.blobs)
    register_version(store, "parcels", "v2", models)  # a challenger: never takes latest
    register_version(store, "letters", "v1", models, champion=True)  # a second model, its own latest
    older, newer = upload_inputs(stack, sample_models)
    subset = sorted(everything)[:3]

    gate, watch = BudgetGate(stack), PublishWatch(stack)
    gate.close()
    try:
        bodies = {
            "old": {"input": older, "shardSize": 10},  # champion, older input: must not end on latest
            "new": {"input": newer, "shardSize": 5},  # champion, newest input; shard 0's container exits 1
            "challenger": {"input": newer, "version": "v2", "shardSize": 5},  # shard 1 never provisions
            "cancelled": {"input": older, "shardSize": 10},  # its container hangs; the user cancels
            "letters": {"input": older, "model": "letters", "shardSize": 10},  # ARM refuses the create twice
            "subset": {"input": newer, "postcodes": subset},  # polls fail three times; a subset: no latest
            "refused": {"input": newer, "shardSize": 10},  # ACI refuses the image: the run fails
        }
        runs = {name: start(stack, body) for name, body in bodies.items()}
        for name, run_id in runs.items():
            watch.add(run_id, model=bodies[name].get("model", "parcels"))
        for fault in (
            {"kind": "exit", "exit_code": 1, "output": "worker crashed", "match": f"{runs['new']}-s000"},
            {"kind": "stuck_pending", "match": f"{runs['challenger']}-s001"},
            {"kind": "hang", "match": f"{runs['cancelled']}-s000"},
            {"kind": "http", "method": "PUT", "status": 503, "code": "ServiceUnavailable", "retry_after": 1,
             "times": 2, "match": f"{runs['letters']}-s000"},
            {"kind": "http", "method": "GET", "status": 502, "code": "BadGateway", "times": 3,
             "match": f"{runs['subset']}-s000"},
            {"kind": "http", "method": "PUT", "status": 400, "code": "InaccessibleImage",
             "message": "The image 'localhost/r-scoring:dev' is not accessible.", "match": f"{runs['refused']}-s000"},
        ):
            stack.standin.inject(fault)
        assert stack.standin.groups() == []  # every fault is in place before any group exists
        gate.open()

        # The user cancels the hanging run once its container runs.
        wait_until(lambda: any(g.startswith(runs["cancelled"]) for g in stack.standin.groups()), "the hang's group")
        assert stack.post(f"/api/runs/{runs['cancelled']}/cancel").status_code == 202

        # As soon as `new` is done, retry it, and start two champion runs: the retry publishes while they score
        # and publish, and all three race for latest.
        wait_until(lambda: view_of(stack, runs["new"])["runtimeStatus"] in FINISHED, "run new", timeout=240)
        r = stack.post(f"/api/runs/{runs['new']}/retry")
        assert r.status_code == 202, r.text
        runs["retry"] = r.json()["id"]
        watch.add(runs["retry"], retry_of=runs["new"])
        runs["late"] = start(stack, {"input": older, "shardSize": 10})  # planned after `new`, older input
        runs["later"] = start(stack, {"input": newer, "shardSize": 10})  # planned after `new`, same input
        watch.add(runs["late"])
        watch.add(runs["later"])
        views = wait_all(stack, list(runs.values()))
        early = watch.stop()
    finally:
        gate.open()
        stack.standin.clear_faults()
        watch.stop()

    state = {name: views[run_id]["state"] for name, run_id in runs.items()}
    assert state == {"old": "completed", "new": "completed_with_failures", "challenger": "completed_with_failures",
                     "cancelled": "cancelled", "letters": "completed", "subset": "completed", "refused": "failed",
                     "retry": "completed", "late": "completed", "later": "completed"}, \
        {n: views[r]["errors"] for n, r in runs.items()}
    assert_no_group_left(stack)
    assert early == [], f"visible before publish: {early}"

    # The retry and the late run were under way at once (each started before the other finished).
    retry, late = views[runs["retry"]], views[runs["late"]]
    assert retry["created"] < late["updated"] and late["created"] < retry["updated"]

    # Each fault is reported where it struck.
    reasons = {name: views[runs[name]].get("postcodes_failed") or {} for name in runs}
    assert len(reasons["new"]) == 5 and all("code 1" in why for why in reasons["new"].values()), reasons["new"]
    challenger_shards = views[runs["challenger"]]["shards"]
    assert [s["state"] for s in challenger_shards] == ["succeeded", "timed_out"], challenger_shards
    assert len(reasons["challenger"]) == 5 and all("did not start within" in why
                                                   for why in reasons["challenger"].values())
    assert len(reasons["cancelled"]) == 10 and all("cancel" in why for why in reasons["cancelled"].values())
    assert all("InaccessibleImage" in why for why in reasons["refused"].values())
    # ARM's 503s on create were retried in place: one container attempt.
    assert [a["attempt"] for s in views[runs["letters"]]["shards"] for a in s["attempts"]] == [1]

    for name, run_id in runs.items():
        requested = set(subset) if name == "subset" else everything
        assert_every_postcode_accounted_for(stack, views[run_id], requested,
                                            target=runs["new"] if name == "retry" else None)
    # The retry published a new revision of `new`, with every postcode now scored.
    new_manifest, new_scored = published_postcodes(stack, runs["new"])
    assert new_manifest["revision"] == runs["retry"] and new_scored == everything
    assert new_manifest["postcodes_failed"] == {}

    # latest: the newest champion run by input time, then plan time: `later` (the newest input, planned after
    # `new`); never the challenger (same input), the subset, `new`'s retry, or the older input planned last.
    latest = stack.blobs.read_json("results", "latest/parcels.json")
    assert (latest["run_id"], latest["revision"]) == (runs["later"], runs["later"]), latest
    assert stack.blobs.read_json("results", "latest/letters.json")["run_id"] == runs["letters"]

    assert_no_secret_anywhere(stack, list(runs.values()))


# ------------------------------------------------------------------------------- a model that leaks secrets

LEAKY_SCORER = r"""
# Every secret this model can find: the storage connection string, and the whole environment.
conn <- Sys.getenv("SCORING_STORAGE_CONNECTION_STRING")
env <- Sys.getenv()
everything <- paste(names(env), env, sep = "=", collapse = "; ")
system("env")  # when sourced, on every node: a child process's output, past R's sinks
cat("scorer loaded with", conn, "\n")
score <- function(model, newdata) {
  switch(model$kind,
    error = stop("cannot connect with ", conn, " (environment: ", everything, ")"),
    warning = withCallingHandlers(  # a warning (muffled by the worker), then the same turned into an error
      warning("warning as error: ", everything),
      warning = function(w) stop(conditionMessage(w), call. = FALSE)),
    print = {
      print(env)
      cat("stdout:", conn, "\n")
      message("stderr: ", everything)
      cat("to /dev/stdout:", conn, "\n", file = "/dev/stdout")
      cat("to /dev/stderr:", everything, "\n", file = "/dev/stderr")
      system(paste("echo from a child:", shQuote(conn)))
    },
    quit = {
      cat("dying with", conn, "\n", file = "/dev/stderr")
      quit(save = "no", status = 1)
    },
    ok = NULL)
  rep(model$level, nrow(newdata))
}
"""
LEAKY_KINDS = {"5001": "ok", "5002": "error", "5003": "print", "5004": "warning", "5005": "quit", "5006": "ok"}
# A version whose scorer.R fails as it is sourced: the whole shard cannot run, and says why.
UNLOADABLE_SCORER = 'stop("cannot start: ", Sys.getenv("SCORING_STORAGE_CONNECTION_STRING"))\n'


def r_client_view(stack, run_id: str) -> str:
    """What the R client (clients/r, sourced as is) prints of the run, its failures and its manifest."""
    script = f"""
    for (f in list.files("{REPO / 'clients' / 'r' / 'R'}", full.names = TRUE)) source(f)
    conn <- scoring_connect("{stack.base_url}", key = "local")
    run <- run_status(conn, "{run_id}")
    print(run)
    str(unclass(run)[setdiff(names(run), "conn")])
    print(run_failures(conn, "{run_id}"))
    str(run_manifest(conn, "{run_id}"))
    """
    done = subprocess.run(["Rscript", "-e", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def test_a_model_that_leaks_secrets_leaks_them_nowhere(stack, tmp_path):
    folder = tmp_path / "leaky"
    folder.mkdir()
    script = "; ".join(f'saveRDS(list(kind = "{kind}", level = {i + 3}), "{folder}/{pc}.rds")'
                       for i, (pc, kind) in enumerate(LEAKY_KINDS.items()))
    subprocess.run(["Rscript", "-e", script], check=True)
    (folder / "scorer.R").write_text(LEAKY_SCORER)
    register_version(ModelStore(stack.blobs), "leaky", "v1", folder, champion=True)
    (folder / "scorer.R").write_text(UNLOADABLE_SCORER)
    register_version(ModelStore(stack.blobs), "leaky", "v2", folder)
    first = date.fromisoformat(SAMPLE_START)
    lines = ["postcode,date"] + [f"{pc},{first + timedelta(days=d)}" for pc in LEAKY_KINDS for d in range(HORIZON)]
    stack.blobs.write_bytes("input", "conc/leaky.csv", "\n".join(lines).encode())

    run_id = start(stack, {"model": "leaky", "input": "conc/leaky.csv", "shardSize": 6})
    unloadable = start(stack, {"model": "leaky", "version": "v2", "input": "conc/leaky.csv", "shardSize": 6})
    watch = PublishWatch(stack, run_id, model="leaky")
    watch.add(unloadable, model="leaky")
    view = stack.wait_for_run(run_id, timeout=240)
    failed_view = stack.wait_for_run(unloadable, timeout=240)
    assert watch.stop() == []
    assert failed_view["state"] == "failed" and "cannot start: ***" in failed_view["errors"][0], failed_view["errors"]
    assert_every_postcode_accounted_for(stack, failed_view, set(LEAKY_KINDS))
    assert view["state"] == "completed_with_failures", view["errors"]
    failed = view["postcodes_failed"]
    assert set(failed) == {"5002", "5004", "5005"}, failed
    assert failed["5002"].startswith("cannot connect with ***") and "warning as error:" in failed["5004"]
    assert "the R process scoring this postcode died" in failed["5005"]
    assert_every_postcode_accounted_for(stack, view, set(LEAKY_KINDS))
    assert_no_group_left(stack)

    # The leaks happened, and were masked: in the kept log (served by the dashboard) and in what ACI holds.
    log = stack.get(f"/api/dashboard/runs/{run_id}/files/logs/shard-000-a1.log")
    assert log.status_code == 200, log.text
    for masked in ("to /dev/stdout: ***", "from a child: ***", "dying with ***", "REPORTS_URL="):
        assert masked in log.text, (masked, log.text[-3000:])
    assert "sig=***" in log.text

    assert_no_secret_anywhere(stack, [run_id, unloadable], more={"kept log via the dashboard": log.text,
                                                                 "R client": r_client_view(stack, run_id)})
