"""The orphan sweeper: its age/tag rules on their own, then end to end through the Durable dev host, the ARM
stand-in (real azure-mgmt-containerinstance over HTTPS) and Azurite, triggered like Core Tools does."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import HORIZON, sample_stack

from pipeline import naming, sweeper
from pipeline.aci.client import ContainerGroups, GroupSummary
from pipeline.aci.errors import AciError
from pipeline.aci.spec import scoring_spec
from pipeline.settings import Settings
from pipeline.sweeper import SweepAction

NOW = datetime(2030, 6, 1, 12, 0, 0, tzinfo=UTC)
TTL = timedelta(minutes=60)
APP = {"app": "r-scoring"}


def stamp(moment: datetime) -> str:
    return moment.strftime(sweeper.CREATED_FORMAT)


# ------------------------------------------------------------------------------------------ rules


@pytest.mark.parametrize(("created", "old"), [
    (stamp(NOW - timedelta(minutes=61)), True),
    (stamp(NOW - timedelta(minutes=60)), True),
    (stamp(NOW - timedelta(minutes=59)), False),
    (stamp(NOW + timedelta(minutes=5)), False),  # a little clock skew
    (stamp(NOW + timedelta(days=30)), True),  # not skew: a wrong tag must not keep a group forever
    ("2030-06-01T11:30:00+00:00", False),  # ISO 8601 with an offset is read too
    ("2030-06-01T10:30:00", True),  # naive: UTC
    ("", True),
    ("yesterday", True),
    (None, True),  # no tag at all
])
def test_age_rule(created, old):
    tags = {**APP} if created is None else {**APP, "created": created}
    assert sweeper.is_old(tags, TTL, NOW) is old


@pytest.mark.parametrize(("run", "blob"), [
    ("run-abc", "runs/run-abc/logs/orphan-g-s000.log"),
    ("../../models", "orphans/g-s000.log"),
    ("Run-ABC", "orphans/g-s000.log"),
    ("a" * 57, "orphans/g-s000.log"),
    ("", "orphans/g-s000.log"),
])
def test_log_blob_never_escapes_the_run(run, blob):
    assert sweeper.orphan_log_blob("g-s000", sweeper.run_of({"run": run})) == blob


def test_odd_group_name_is_hashed_into_the_path():
    blob = sweeper.orphan_log_blob("../../x", "run-abc")
    assert blob.startswith("runs/run-abc/logs/orphan-group-") and ".." not in blob


class FakeGroups:
    def __init__(self, groups, fail_logs=(), fail_delete=()):
        self.groups = {g.name: g for g in groups}
        self.fail_logs, self.fail_delete = set(fail_logs), set(fail_delete)
        self.deleted = []

    def list(self, tags=None):
        return [g for g in self.groups.values() if all(g.tags.get(k) == v for k, v in (tags or {}).items())]

    def logs(self, name):
        if name in self.fail_logs:
            raise AciError(f"logs {name}: HTTP 500: InternalServerError: boom", status=500)
        return f"output of {name}"

    def delete(self, name):
        if name in self.fail_delete:
            raise AciError(f"delete {name}: HTTP 500: InternalServerError: boom", status=500)
        self.deleted.append(name)
        return self.groups.pop(name, None) is not None


class FakeBlobs:
    def __init__(self):
        self.written = {}

    def write_bytes(self, container, name, data, overwrite=True, content_type=""):
        self.written[f"{container}/{name}"] = data.decode()
        return "etag"


def group(name, **tags):
    return GroupSummary(name, tags, "Succeeded")


def run_sweep(groups, active=(), status_error=()):
    checked = []

    async def is_active(instance_id):
        checked.append(instance_id)
        if instance_id in status_error:
            raise RuntimeError("durable API unreachable")
        return instance_id in active

    blobs = FakeBlobs()
    results = asyncio.run(sweeper.sweep_orphans(groups, blobs, "results", is_active, TTL, NOW))
    return {r.group: r for r in results}, blobs, checked


def test_sweep_rules_with_fakes():
    old, young = stamp(NOW - timedelta(hours=3)), stamp(NOW - timedelta(minutes=5))
    groups = FakeGroups([
        group("run-a-s000", **APP, run="run-a", shard="0", created=old),  # run gone: orphan
        group("run-b-s000", **APP, run="run-b", shard="0", created=old),  # run active
        group("run-c-s001", **APP, run="run-c", shard="1", created=old),  # run terminated, its shard still active
        group("run-d-s000", **APP, run="run-d", shard="0", created=young),
        group("run-e-s000", **APP, run="run-e", shard="0", created=old),  # status unknown: kept
        group("run-f-s000", **APP, run="run-f", shard="0", created=old),  # logs unreadable: deleted anyway
        group("run-g-s000", **APP, run="run-g", shard="0", created=old),  # delete fails: reported
        group("stray-s000", **APP, run="../../etc"),  # no created tag, invalid run: orphan
        group("other-s000", app="something-else", run="run-h", created=old),  # not ours: never touched
        group("bare-s000"),
    ], fail_logs={"run-f-s000"}, fail_delete={"run-g-s000"})
    results, blobs, checked = run_sweep(groups, active={"run-b", "run-c:shard-001"}, status_error={"run-e"})

    assert {name: r.action for name, r in results.items()} == {
        "run-a-s000": SweepAction.DELETED, "run-b-s000": SweepAction.KEPT_ACTIVE, "run-c-s001": SweepAction.KEPT_ACTIVE,
        "run-d-s000": SweepAction.KEPT_YOUNG, "run-e-s000": SweepAction.KEPT_UNKNOWN, "run-f-s000": SweepAction.DELETED,
        "run-g-s000": SweepAction.DELETE_FAILED, "stray-s000": SweepAction.DELETED,
    }
    assert sorted(groups.groups) == ["bare-s000", "other-s000", "run-b-s000", "run-c-s001", "run-d-s000",
                                     "run-e-s000", "run-g-s000"]
    assert blobs.written["results/runs/run-a/logs/orphan-run-a-s000.log"] == "output of run-a-s000"
    assert blobs.written["results/orphans/stray-s000.log"] == "output of stray-s000"
    assert results["run-a-s000"].logs == "results/runs/run-a/logs/orphan-run-a-s000.log"
    assert "InternalServerError" in results["run-f-s000"].logs_error and results["run-f-s000"].logs is None
    assert "delete run-g-s000" in results["run-g-s000"].error
    assert "run-g-s000" in results["run-g-s000"].summary() and "delete_failed" in results["run-g-s000"].summary()
    assert "durable API unreachable" in results["run-e-s000"].error
    assert "run-d" not in checked and "run-h" not in checked  # young and foreign groups need no status


def test_kept_orphan_logs_are_scrubbed(monkeypatch):
    """An orphan's logs are kept as the shard's own are: without any secret the app knows (here: the storage
    connection string in its settings), nor any key or SAS signature it can recognise."""
    from scoring import secrets

    connection = "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=c2VjcmV0a2V5MTIzNDU2;EndpointSuffix=x"
    monkeypatch.setenv("STORAGE", connection)
    secrets._process_secrets.cache_clear()
    try:
        class LeakyGroups(FakeGroups):
            def logs(self, name):
                return f"model says {connection} and https://a.blob/c?sv=1&sig=abcDEF123456%3D\n"

        groups = LeakyGroups([group("run-a-s000", **APP, run="run-a", shard="0",
                                    created=stamp(NOW - timedelta(hours=3)))])
        results, blobs, _ = run_sweep(groups)
    finally:
        monkeypatch.delenv("STORAGE")
        secrets._process_secrets.cache_clear()
    kept = blobs.written["results/runs/run-a/logs/orphan-run-a-s000.log"]
    assert results["run-a-s000"].action == SweepAction.DELETED
    assert kept.startswith("model says ***") and "c2VjcmV0a2V5MTIzNDU2" not in kept and "abcDEF123456" not in kept


# ------------------------------------------------------------------------------------------ end to end

SWEEP_DONE = "Executed 'Functions.sweep_orphan_groups' ("


@pytest.fixture(scope="module")
def stack(tmp_path_factory, sample_models):
    root = Path(tmp_path_factory.mktemp("sweeper"))
    # The schedule is moved out of the way (1 January, midnight): only the tests trigger sweeps.
    # The horizon of the sample input: a plan now fails postcodes whose rows do not match it, before any group.
    overrides = {"ORPHAN_TTL_MINUTES": "60", "ORPHAN_SWEEP_SCHEDULE": "0 0 0 1 1 *",
                 "DEFAULT_HORIZON_DAYS": str(HORIZON)}
    with sample_stack(root, sample_models, overrides) as s:
        yield s


@pytest.fixture(scope="module")
def aci(stack):
    settings = Settings.from_env(stack.settings)
    groups = ContainerGroups(settings)
    yield settings, groups
    groups.close()


@pytest.fixture(autouse=True)
def no_group_outlives_its_test(request):
    yield
    if "stack" not in request.fixturenames:
        return
    stack = request.getfixturevalue("stack")
    stack.standin.clear_faults()
    left = stack.standin.groups()
    stack.standin.delete_all_groups()
    assert left == [], "a container group outlived its test"


def new_run_id() -> str:
    return naming.adhoc_run_id(uuid.uuid4().hex)


def create(aci, name: str, tags: dict[str, str], output: str = "orphan output") -> None:
    settings, groups = aci
    command = ["python", "-u", "-c", f"print({output!r}); import time; time.sleep(600)"]
    groups.create(scoring_spec(settings, name, {}, tags=tags, command=command))
    # Create returns right after the PUT, as in ACI: wait until the container runs and has printed.
    deadline = time.monotonic() + 30
    while output not in groups.logs(name):
        assert time.monotonic() < deadline, f"group {name} never printed its output"
        time.sleep(0.1)


def app_tags(run_id: str, created: datetime, shard: int = 0) -> dict[str, str]:
    return {**APP, "run": run_id, "shard": str(shard), "created": stamp(created)}


def hours_ago(n: float) -> datetime:
    return datetime.now(UTC) - timedelta(hours=n)


def sweep(stack, timeout: float = 30) -> str:
    """Trigger the sweeper as Core Tools does; the host log it wrote (it runs asynchronously)."""
    log_file = stack.root / "host.log"
    start = log_file.stat().st_size
    assert stack.post("/admin/functions/sweep_orphan_groups", {"input": ""}).status_code == 202
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(log_file, "rb") as f:
            f.seek(start)
            text = f.read().decode(errors="replace")
        if SWEEP_DONE in text:
            assert SWEEP_DONE + "Succeeded" in text, text
            return text
        time.sleep(0.1)
    raise TimeoutError(f"the sweep did not finish within {timeout} s")


def line_about(log: str, group: str) -> str:
    lines = [line for line in log.splitlines() if f"group {group} " in line]
    assert len(lines) == 1, log
    return lines[0]


def test_orphan_is_deleted_after_its_logs_are_kept(stack, aci):
    run_id = new_run_id()  # no such run
    orphan = naming.group_name(run_id, 0)
    create(aci, orphan, app_tags(run_id, hours_ago(3)))
    stray = "stray-" + uuid.uuid4().hex[:8] + "-s000"  # app tag, an invalid run tag, no created tag
    create(aci, stray, {**APP, "run": "../../models"}, output="stray output")

    log = sweep(stack)
    assert stack.standin.groups() == []
    assert ": deleted; logs saved to" in line_about(log, orphan)
    assert ": deleted; logs saved to" in line_about(log, stray)
    kept = stack.blobs.read_bytes("results", f"runs/{run_id}/logs/orphan-{orphan}.log").decode()
    assert "orphan output" in kept
    assert "stray output" in stack.blobs.read_bytes("results", f"orphans/{stray}.log").decode()


def test_young_group_is_kept(stack, aci):
    run_id = new_run_id()
    young = naming.group_name(run_id, 0)
    create(aci, young, app_tags(run_id, datetime.now(UTC) - timedelta(minutes=5)))
    log = sweep(stack)
    assert ": kept_young" in line_about(log, young)
    assert stack.standin.groups() == [young]
    assert not stack.blobs.exists("results", f"runs/{run_id}/logs/orphan-{young}.log")
    aci[1].delete(young)


def test_groups_without_the_app_tag_are_never_touched(stack, aci):
    foreign = [f"foreign-{uuid.uuid4().hex[:8]}-s000", f"other-{uuid.uuid4().hex[:8]}-s000"]
    create(aci, foreign[0], {"run": new_run_id(), "created": stamp(hours_ago(30))})
    create(aci, foreign[1], {"app": "someone-else", "run": new_run_id(), "created": stamp(hours_ago(30))})
    log = sweep(stack)
    assert sorted(stack.standin.groups()) == sorted(foreign)
    assert not any(name in log for name in foreign)
    for name in foreign:
        aci[1].delete(name)


def test_old_group_of_a_running_run_is_kept(stack, aci):
    stack.standin.inject({"kind": "hang", "times": 1})  # the run's one container keeps running
    r = stack.post("/api/runs", {"input": "manual/input.csv"})
    assert r.status_code == 202, r.text
    run_id = r.json()["id"]
    own = naming.group_name(run_id, 0)
    deadline = time.monotonic() + 30
    while own not in stack.standin.groups():
        assert time.monotonic() < deadline, "the run created no group"
        time.sleep(0.1)
    assert stack.get(f"/api/runs/{run_id}").json()["runtimeStatus"] == "Running"
    old = naming.group_name(run_id, 5)  # old, and of the running run
    create(aci, old, app_tags(run_id, hours_ago(5), shard=5))
    try:
        log = sweep(stack)
        assert ": kept_active" in line_about(log, old)
        assert ": kept_young" in line_about(log, own)
        assert sorted(stack.standin.groups()) == sorted([own, old])
    finally:
        assert stack.post(f"/api/runs/{run_id}/cancel").status_code == 202
        assert stack.wait_for_run(run_id, timeout=60)["state"] == "cancelled"
        aci[1].delete(old)


def test_failed_delete_is_reported_and_retried_by_the_next_sweep(stack, aci):
    run_id = new_run_id()
    orphan = naming.group_name(run_id, 0)
    create(aci, orphan, app_tags(run_id, hours_ago(2)))
    # More failures than the SDK's own retries of a 5xx.
    stack.standin.inject({"kind": "http", "method": "DELETE", "status": 500, "code": "InternalServerError",
                          "match": orphan, "times": 5})
    log = sweep(stack)
    line = line_about(log, orphan)
    assert ": delete_failed;" in line and "InternalServerError" in line
    assert "retried at the next sweep" in line
    assert stack.standin.groups() == [orphan]

    stack.standin.clear_faults()
    log = sweep(stack)
    assert ": deleted;" in line_about(log, orphan)
    assert stack.standin.groups() == []
    assert "orphan output" in stack.blobs.read_bytes(
        "results", f"runs/{run_id}/logs/orphan-{orphan}.log").decode()
