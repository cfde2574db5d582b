"""pipeline.aci against the loopback ARM stand-in, through the real SDK over HTTPS.

Nothing is mocked except the credential: with a loopback ARM_ENDPOINT, ContainerGroups picks
pipeline.aci.client.LoopbackCredential (a fixed dummy token) instead of DefaultAzureCredential.
Every test must leave zero container groups behind (the aci_groups fixture checks).
"""

from __future__ import annotations

import hashlib
import json
import ssl
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from devenv.aci_standin.control import Standin, start_standin  # noqa: E402
from pipeline.aci.client import ContainerGroups, ContainerState, LoopbackCredential, default_credential  # noqa: E402
from pipeline.aci.errors import AciError  # noqa: E402
from pipeline.aci.spec import ContainerGroupSpec, build_container_group  # noqa: E402
from pipeline.settings import Settings  # noqa: E402

pytestmark = pytest.mark.integration  # Azurite, R, the stand-in or the dev host

SUBSCRIPTION = "00000000-0000-0000-0000-0000000000aa"
RESOURCE_GROUP = "rg-scoring-dev"
SECRET = "s3cr3t-sas-token-value"
IDENTITY = (f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/"
            "Microsoft.ManagedIdentity/userAssignedIdentities/scoring-worker")
WORKER_CLIENT_ID = "11111111-2222-3333-4444-555555555555"


def settings_for(standin: Standin, **extra: str) -> Settings:
    return Settings.from_env({
        "ARM_ENDPOINT": standin.endpoint,
        "ARM_CA_BUNDLE": str(standin.ca_file),
        "ARM_POLLING_INTERVAL_SECONDS": "0.1",
        "AZURE_SUBSCRIPTION_ID": SUBSCRIPTION,
        "ACI_RESOURCE_GROUP": RESOURCE_GROUP,
        **extra,
    })


@pytest.fixture(scope="module")
def aci_standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standin]:
    standin = start_standin(tmp_path_factory.mktemp("aci-standin"))
    yield standin
    standin.stop(kill_containers=True)


@pytest.fixture
def aci_groups(aci_standin: Standin) -> Iterator[ContainerGroups]:
    groups = ContainerGroups(settings_for(aci_standin))
    yield groups
    groups.close()
    aci_standin.clear_faults()
    left = aci_standin.groups()
    aci_standin.delete_all_groups()  # so that one failing test does not fail the next ones
    assert left == [], f"the test left container groups behind: {left}"


def spec(name: str, command: list[str] | None = None, **overrides: object) -> ContainerGroupSpec:
    values: dict = {
        "name": name,
        "image": "scoringacr.azurecr.io/scoring:dev",
        "cpu": 1.0,
        "memory_gb": 1.5,
        "environment": {"X": "world"},
        "secure_environment": {"TOKEN": SECRET},
        "tags": {"app": "scoring-test", "run": name},
        "command": command,
    }
    values.update(overrides)
    return ContainerGroupSpec(**values)


def python(code: str) -> list[str]:
    """A container command; the stand-in maps "python" to its own interpreter."""
    return ["python", "-c", code]


def wait_until(groups: ContainerGroups, name: str, done, timeout: float = 20.0) -> ContainerState:
    deadline = time.monotonic() + timeout
    while True:
        state = groups.state(name)
        assert state is not None, f"group {name} vanished"
        if done(state):
            return state
        assert time.monotonic() < deadline, f"group {name} stuck in {state}"
        time.sleep(0.1)


def wait_terminated(groups: ContainerGroups, name: str, timeout: float = 20.0) -> ContainerState:
    return wait_until(groups, name, lambda s: s.terminated, timeout)


def arm_get(standin: Standin, path: str) -> str:
    """A raw ARM GET (with a dummy bearer token), to see exactly what goes over the wire."""
    request = urllib.request.Request(f"{standin.endpoint}{path}?api-version=2023-05-01",
                                     headers={"Authorization": "Bearer dummy"})
    context = ssl.create_default_context(cafile=str(standin.ca_file))
    with urllib.request.urlopen(request, context=context, timeout=10) as response:
        return response.read().decode()


def container_pid(standin: Standin, name: str, timeout: float = 10.0) -> int:
    """The container's pid, once its image pull is over and it has started."""
    runner_file = standin.state_dir / "groups" / name / "runner.json"
    deadline = time.monotonic() + timeout
    while not runner_file.exists():
        assert time.monotonic() < deadline, f"group {name} never started its container"
        time.sleep(0.05)
    return int(json.loads(runner_file.read_text())["child_pid"])


def process_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return True
        if stat.rsplit(")", 1)[1].split()[0] == "Z":  # exited, only not reaped yet
            return True
        time.sleep(0.05)
    return False


# ---- the happy path ------------------------------------------------------------------------------


def test_create_run_logs_delete(aci_standin: Standin, aci_groups: ContainerGroups) -> None:
    digest = hashlib.sha256(SECRET.encode()).hexdigest()
    code = ("import hashlib, os; print('hello', os.environ['X']); "
            "print('token', hashlib.sha256(os.environ['TOKEN'].encode()).hexdigest())")
    aci_groups.create(spec("cg-happy", python(code)))

    state = wait_terminated(aci_groups, "cg-happy")
    assert (state.state, state.exit_code, state.group_state) == ("Terminated", 0, "Succeeded")
    assert state.start_time and state.finish_time and state.start_time <= state.finish_time
    logs = aci_groups.logs("cg-happy")
    assert "hello world" in logs
    assert f"token {digest}" in logs  # the process got the secure value...

    # ...but no ARM answer, and no file the stand-in keeps, shows it.
    group_path = (f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}"
                  "/providers/Microsoft.ContainerInstance/containerGroups")
    bodies = [arm_get(aci_standin, f"{group_path}/cg-happy"), arm_get(aci_standin, group_path),
              arm_get(aci_standin, f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.ContainerInstance"
                                   "/containerGroups")]
    for body in bodies:
        assert "cg-happy" in body and SECRET not in body and "secureValue" not in body
    env = json.loads(bodies[0])["properties"]["containers"][0]["properties"]["environmentVariables"]
    assert {"name": "TOKEN"} in env and {"name": "X", "value": "world"} in env
    for path in (aci_standin.state_dir / "groups" / "cg-happy").iterdir():
        assert SECRET not in path.read_text(errors="replace"), path

    assert aci_groups.delete("cg-happy") is True
    assert aci_groups.delete("cg-happy") is False
    assert aci_groups.state("cg-happy") is None
    assert aci_groups.logs("cg-happy") == ""


def test_group_sent_is_run_once_private_and_keyless(aci_standin: Standin) -> None:
    settings = settings_for(
        aci_standin, WORKER_IDENTITY_RESOURCE_ID=IDENTITY, WORKER_IDENTITY_CLIENT_ID=WORKER_CLIENT_ID,
        REGISTRY_SERVER="scoringacr.azurecr.io",
        ACI_SUBNET_ID=f"/subscriptions/{SUBSCRIPTION}/resourceGroups/net/providers/Microsoft.Network/"
                      "virtualNetworks/vnet/subnets/aci",
        ACI_LOCATION="northeurope")
    groups = ContainerGroups(settings)
    try:
        groups.create(spec("cg-shape", python("print('ok')")))
        sent = aci_standin.received("cg-shape")
        props = sent["properties"]
        assert props["restartPolicy"] == "Never"
        assert "ipAddress" not in props
        assert props["osType"] == "Linux"
        assert sent["location"] == "northeurope"
        assert props["subnetIds"] == [{"id": settings.aci_subnet_id}]
        assert sent["identity"] == {"type": "UserAssigned", "userAssignedIdentities": {IDENTITY: {}}}
        registry = {"server": "scoringacr.azurecr.io", "identity": IDENTITY}
        assert props["imageRegistryCredentials"] == [registry]
        [container] = props["containers"]
        assert container["name"] == "scoring"
        assert container["properties"]["resources"] == {"requests": {"memoryInGB": 1.5, "cpu": 1.0}}
        assert {"name": "TOKEN", "secureValue": "***"} in container["properties"]["environmentVariables"]
        wait_terminated(groups, "cg-shape")
    finally:
        assert groups.delete("cg-shape") is True
        groups.close()
    assert aci_standin.groups() == []


def test_list_filters_by_tags_and_groups_run_concurrently(aci_groups: ContainerGroups) -> None:
    names = [f"cg-list-{i}" for i in range(4)]
    specs = [spec(n, python("print('hi')"), tags={"run": "a" if i < 3 else "b", "shard": str(i)})
             for i, n in enumerate(names)]
    with ThreadPoolExecutor(len(specs)) as pool:
        list(pool.map(aci_groups.create, specs))

    assert sorted(g.name for g in aci_groups.list()) == names
    assert sorted(g.name for g in aci_groups.list({"run": "a"})) == names[:3]
    assert [g.name for g in aci_groups.list({"run": "a", "shard": "1"})] == ["cg-list-1"]
    assert aci_groups.list({"run": "c"}) == []
    wait_terminated(aci_groups, names[3])
    [summary] = aci_groups.list({"run": "b"})
    assert summary.tags == {"run": "b", "shard": "3"} and summary.provisioning_state == "Succeeded"
    for name in names:
        assert aci_groups.delete(name) is True


# ---- failures the orchestration must tell apart --------------------------------------------------


@pytest.mark.parametrize("how", ["command", "exit_fault"])
def test_nonzero_exit_is_reported(aci_standin: Standin, aci_groups: ContainerGroups, how: str) -> None:
    if how == "exit_fault":
        aci_standin.inject({"kind": "exit", "exit_code": 3, "output": "boom", "match": "cg-exit", "times": 1})
        command = None  # the fault replaces the image's entrypoint
    else:
        command = python("import sys; print('boom'); sys.exit(3)")
    name = f"cg-exit-{how.replace('_', '-')}"
    aci_groups.create(spec(name, command))
    state = wait_terminated(aci_groups, name)
    assert (state.state, state.exit_code, state.group_state) == ("Terminated", 3, "Failed")
    assert "boom" in aci_groups.logs(name)
    assert aci_groups.delete(name) is True


@pytest.mark.parametrize("name", ["Upper", "a--b", "-a", "a-", "a" * 64, "under_score"])
def test_invalid_name_is_an_aci_error(aci_groups: ContainerGroups, name: str) -> None:
    with pytest.raises(AciError) as caught:
        aci_groups.create(spec(name, python("print(1)")))
    assert (caught.value.status, caught.value.code, caught.value.retryable) == (
        400, "InvalidContainerGroupName", False)


def test_429_with_retry_after_is_retried_by_the_sdk(
        aci_standin: Standin, aci_groups: ContainerGroups) -> None:
    aci_standin.inject({"kind": "http", "method": "PUT", "status": 429, "code": "TooManyRequests",
                        "message": "slow down", "retry_after": 1, "match": "cg-throttled", "times": 1})
    started = time.monotonic()
    aci_groups.create(spec("cg-throttled", python("print('made it')")))
    assert time.monotonic() - started >= 0.9  # the SDK honoured Retry-After
    assert aci_standin.faults() == []  # used up
    wait_terminated(aci_groups, "cg-throttled")
    assert aci_groups.delete("cg-throttled") is True


def test_long_retry_after_is_left_to_the_orchestration(
        aci_standin: Standin, aci_groups: ContainerGroups) -> None:
    aci_standin.inject({"kind": "http", "method": "PUT", "status": 429, "code": "TooManyRequests",
                        "message": "slow down", "retry_after": 120, "times": 1})
    started = time.monotonic()
    with pytest.raises(AciError) as caught:
        aci_groups.create(spec("cg-throttled-long", python("print(1)")))
    assert time.monotonic() - started < 5  # no 2-minute sleep inside the activity
    error = caught.value
    assert (error.status, error.code, error.retryable) == (429, "TooManyRequests", True)
    assert aci_standin.groups() == []


def test_inaccessible_image_is_not_retryable(aci_standin: Standin, aci_groups: ContainerGroups) -> None:
    aci_standin.inject({"kind": "http", "method": "PUT", "status": 400, "code": "InaccessibleImage",
                        "message": "The image 'scoring:dev' in group 'cg-noimage' is not accessible."})
    with pytest.raises(AciError) as caught:
        aci_groups.create(spec("cg-noimage", python("print(1)")))
    error = caught.value
    assert (error.status, error.code, error.retryable) == (400, "InaccessibleImage", False)
    assert "cg-noimage" in str(error)
    assert aci_groups.state("cg-noimage") is None


def test_failed_create_operation_raises_with_its_code(
        aci_standin: Standin, aci_groups: ContainerGroups) -> None:
    aci_standin.inject({"kind": "lro_failed", "code": "InaccessibleImage", "message": "pull failed",
                        "match": "cg-lro", "times": 1})
    aci_groups.create(spec("cg-lro", python("print(1)")))  # the PUT itself is accepted; the operation fails
    state = aci_groups.state("cg-lro")  # like ACI, a failed deployment leaves the group behind
    assert state is not None and state.provisioning_state == "Failed" and state.terminated
    assert state.exit_code is None
    assert aci_groups.delete("cg-lro") is True


@pytest.mark.parametrize("status,code", [(409, "ServiceUnavailable"), (409, "InsufficientCapacity"),
                                         (400, "ContainerGroupQuotaReached")])
def test_capacity_and_quota_errors_are_retryable(
        aci_standin: Standin, aci_groups: ContainerGroups, status: int, code: str) -> None:
    aci_standin.inject({"kind": "http", "method": "PUT", "status": status, "code": code, "message": "later",
                        "times": 1})
    with pytest.raises(AciError) as caught:
        aci_groups.create(spec("cg-capacity", python("print(1)")))
    assert (caught.value.status, caught.value.code, caught.value.retryable) == (status, code, True)
    assert aci_standin.groups() == []


def test_sdk_gives_up_quickly_on_5xx(aci_standin: Standin, aci_groups: ContainerGroups) -> None:
    aci_standin.inject({"kind": "http", "method": "GET", "status": 503, "code": "ServiceUnavailable",
                        "message": "down", "match": "cg-5xx", "times": 3})
    started = time.monotonic()
    with pytest.raises(AciError) as caught:
        aci_groups.state("cg-5xx")
    assert (caught.value.status, caught.value.retryable) == (503, True)
    assert time.monotonic() - started < 10  # 1 try + 2 retries, not the SDK default of 10


def test_error_messages_never_carry_secure_values(aci_standin: Standin, aci_groups: ContainerGroups) -> None:
    # Should ARM ever echo a value back in an error, the message still must not show it.
    aci_standin.inject({"kind": "http", "method": "PUT", "status": 400, "code": "InvalidRequestContent",
                        "message": f"bad value {SECRET}", "times": 1})
    with pytest.raises(AciError) as caught:
        aci_groups.create(spec("cg-echo", python("print(1)")))
    assert SECRET not in str(caught.value) and "***" in str(caught.value)


# ---- containers that never finish ----------------------------------------------------------------


def test_hanging_container_runs_until_deleted(aci_standin: Standin, aci_groups: ContainerGroups) -> None:
    aci_standin.inject({"kind": "hang", "match": "cg-hang", "times": 1})
    aci_groups.create(spec("cg-hang"))
    time.sleep(1.0)
    state = aci_groups.state("cg-hang")
    assert state is not None and (state.state, state.group_state, state.terminated) == (
        "Running", "Running", False)
    pid = container_pid(aci_standin, "cg-hang")
    assert not process_gone(pid, timeout=0)
    assert aci_groups.delete("cg-hang") is True
    assert process_gone(pid), "delete left the container process running"


def test_stuck_pending_never_starts(aci_standin: Standin, aci_groups: ContainerGroups) -> None:
    aci_standin.inject({"kind": "stuck_pending", "match": "cg-pending", "times": 1})
    started = time.monotonic()
    assert aci_groups.create(spec("cg-pending", python("print(1)"))) == "Pending"  # returns at once
    assert time.monotonic() - started < 5
    time.sleep(1.0)
    state = aci_groups.state("cg-pending")
    assert state is not None and (state.state, state.group_state, state.terminated) == (
        "Waiting", "Pending", False)
    assert state.provisioning_state in ("Pending", "Creating"), "a stuck pull never provisions"
    assert "Pulling image" in (state.detail or "")
    assert aci_groups.delete("cg-pending") is True


# ---- strict like ACI: the image pull, conflicts, missing instance views ---------------------------


def test_create_returns_right_after_the_put_and_the_pull_shows(
        aci_standin: Standin, aci_groups: ContainerGroups) -> None:
    """ACI's create LRO lasts the image pull; create() must not wait for it (it did: poller.result())."""
    aci_standin.inject({"kind": "slow_pull", "seconds": 4, "match": "cg-pull", "times": 1})
    started = time.monotonic()
    assert aci_groups.create(spec("cg-pull", python("print('pulled')"))) == "Pending"
    assert time.monotonic() - started < 2.0, "create waited for the image pull"

    early = aci_groups.state("cg-pull")  # early in the pull: no instance view at all, and not terminal
    assert early is not None and (early.provisioning_state, early.group_state, early.state) == (
        "Pending", None, None)
    assert not early.terminated

    # A second PUT while the group is transitioning: 409, which the orchestration retries.
    with pytest.raises(AciError) as caught:
        aci_groups.create(spec("cg-pull", python("print('pulled')")))
    assert (caught.value.status, caught.value.code, caught.value.retryable) == (
        409, "ContainerGroupTransitioning", True)

    later = wait_until(aci_groups, "cg-pull", lambda s: s.group_state is not None, timeout=5)
    assert (later.provisioning_state, later.group_state, later.state) == ("Creating", "Pending", "Waiting")
    assert not later.terminated
    done = wait_terminated(aci_groups, "cg-pull")
    assert (done.provisioning_state, done.exit_code) == ("Succeeded", 0)
    assert time.monotonic() - started >= 4, "the container started before its image was pulled"
    # Once provisioned, a repeated PUT is an update (200), never a second run.
    assert aci_groups.create(spec("cg-pull", python("print('pulled')"))) == "Succeeded"
    assert aci_groups.logs("cg-pull").count("pulled") == 1
    assert aci_groups.delete("cg-pull") is True


def test_a_group_without_instance_view_is_not_terminal(aci_standin: Standin, aci_groups: ContainerGroups) -> None:
    aci_standin.inject({"kind": "no_instance_view", "match": "cg-noview", "times": 1})
    aci_groups.create(spec("cg-noview", python("print(1)")))
    container_pid(aci_standin, "cg-noview")
    time.sleep(0.5)
    state = aci_groups.state("cg-noview")
    assert state is not None and (state.provisioning_state, state.group_state, state.state) == (
        "Succeeded", None, None)
    assert not state.terminated, "a GET without instanceView was taken for the end of the container"
    assert aci_groups.delete("cg-noview") is True


def test_failed_provisioning_without_instance_view_is_terminal(
        aci_standin: Standin, aci_groups: ContainerGroups) -> None:
    aci_standin.inject({"kind": "lro_failed", "code": "InaccessibleImage", "message": "pull failed",
                        "no_instance_view": True, "match": "cg-failed-noview", "times": 1})
    aci_groups.create(spec("cg-failed-noview", python("print(1)")))
    state = aci_groups.state("cg-failed-noview")
    assert state is not None and (state.provisioning_state, state.group_state) == ("Failed", None)
    assert state.terminated and state.exit_code is None
    assert aci_groups.delete("cg-failed-noview") is True


# ---- the stand-in restarts while containers run --------------------------------------------------


def test_groups_survive_a_standin_restart(aci_standin: Standin, aci_groups: ContainerGroups) -> None:
    endpoint = aci_standin.endpoint
    aci_standin.inject({"kind": "hang", "match": "cg-restart-hang", "times": 1})
    aci_groups.create(spec("cg-restart-hang"))
    aci_groups.create(spec("cg-restart-job", python("import time; time.sleep(1.5); print('done')")))
    hang_pid = container_pid(aci_standin, "cg-restart-hang")

    aci_standin.restart()
    assert aci_standin.endpoint == endpoint  # same port: configured clients keep working

    assert sorted(g.name for g in aci_groups.list()) == ["cg-restart-hang", "cg-restart-job"]
    state = wait_terminated(aci_groups, "cg-restart-job")
    assert (state.exit_code, state.group_state) == (0, "Succeeded")
    assert "done" in aci_groups.logs("cg-restart-job")
    assert aci_groups.state("cg-restart-hang").state == "Running"
    assert aci_groups.delete("cg-restart-hang") is True
    assert process_gone(hang_pid), "delete after a restart left the container process running"
    assert aci_groups.delete("cg-restart-job") is True


# ---- the credential ------------------------------------------------------------------------------


def test_loopback_credential_is_for_loopback_only() -> None:
    for endpoint in ("https://127.0.0.1:8443", "https://localhost:1", "https://[::1]:443"):
        assert LoopbackCredential(endpoint).get_token("https://management.azure.com/.default").token
    for endpoint in ("https://management.azure.com", "https://127.0.0.1.example.com"):
        with pytest.raises(ValueError):
            LoopbackCredential(endpoint)



def test_production_settings_use_default_azure_credential() -> None:
    from azure.identity import DefaultAzureCredential

    production = Settings.from_env({"AZURE_SUBSCRIPTION_ID": SUBSCRIPTION,
                                    "ACI_RESOURCE_GROUP": RESOURCE_GROUP})
    assert isinstance(default_credential(production), DefaultAzureCredential)
    # Without identity, registry or subnet settings the body has none of them (and never an IP).
    body = build_container_group(production, spec("cg-plain")).serialize()
    assert body["properties"]["restartPolicy"] == "Never"
    for absent in ("ipAddress", "imageRegistryCredentials", "subnetIds"):
        assert absent not in body["properties"]
    assert "identity" not in body
