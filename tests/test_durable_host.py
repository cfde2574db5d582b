"""The Durable Functions dev host, driven through real HTTP and the real SDK client (nothing mocked)."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import azure.durable_functions as df
import pytest
import requests

from devenv.azurite import start_azurite
from devenv.durable_host import DevHost, start_host_process
from devenv.durable_host.invoker import run_coroutine
from devenv.durable_host.ncrontab import Schedule

pytestmark = pytest.mark.integration  # Azurite, R, the stand-in or the dev host

APP = "tests.apps.toy_app"
TERMINAL = ("Completed", "Failed", "Terminated")


@pytest.fixture(scope="module")
def azurite() -> Iterator[str]:
    emulator = start_azurite()
    yield emulator.connection_string
    # Azurite takes ~10 s to honour SIGTERM; its storage is in memory, so a kill loses nothing.
    emulator.process.kill()
    emulator.process.wait()


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory, azurite: str) -> Iterator[DevHost]:
    blob_log = tmp_path_factory.mktemp("blobs") / "deliveries.jsonl"
    saved = {k: os.environ.get(k) for k in ("TOY_SCHEDULE", "TOY_STORAGE", "TOY_BLOB_LOG")}
    # A schedule that never comes round during the tests: the admin endpoint fires the timer instead.
    os.environ.update(TOY_SCHEDULE="0 0 0 1 1 *", TOY_STORAGE=azurite, TOY_BLOB_LOG=str(blob_log))
    dev_host = DevHost(APP, tmp_path_factory.mktemp("state"), schedule_timers=False, blob_poll_interval=0.2)
    dev_host.start()
    yield dev_host
    dev_host.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def client_for(host: DevHost) -> df.DurableOrchestrationClient:
    return df.DurableOrchestrationClient(host.client_json())


def start(base_url: str, orchestrator: str, payload: object = None, instance_id: str | None = None) -> dict:
    url = f"{base_url}/api/start/{orchestrator}" + (f"/{instance_id}" if instance_id else "")
    response = requests.post(url, json=payload, timeout=10)
    assert response.status_code == 202, response.text
    assert response.headers["Location"] == response.json()["statusQueryGetUri"]
    return response.json()


def wait_for(status_url: str, timeout: float = 15, until: tuple[str, ...] = TERMINAL) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        response = requests.get(status_url, timeout=5)
        status = response.json() if response.status_code != 404 else {"runtimeStatus": None}
        if status["runtimeStatus"] in until or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def run(base_url: str, orchestrator: str, payload: object = None, timeout: float = 15) -> dict:
    return wait_for(start(base_url, orchestrator, payload)["statusQueryGetUri"], timeout)


# ------------------------------------------------------------------------------------------ HTTP layer


def test_http_route_params_query_headers_and_body(host: DevHost) -> None:
    response = requests.post(f"{host.base_url}/api/echo/hi?x=1&code=ignored", data=b"payload",
                             headers={"x-toy": "t"}, timeout=5)
    assert response.status_code == 200
    assert response.headers["x-echo"] == "yes"
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == {"word": "hi", "method": "POST", "params": {"x": "1", "code": "ignored"},
                               "header": "t", "body": "payload"}
    assert requests.delete(f"{host.base_url}/api/echo/hi", timeout=5).status_code == 404
    assert requests.get(f"{host.base_url}/api/nowhere", timeout=5).status_code == 404


def test_client_binding_json_points_at_the_host(host: DevHost) -> None:
    binding = json.loads(host.client_json())
    assert binding["rpcBaseUrl"] == f"{host.base_url}/runtime/webhooks/durabletask/"
    assert binding["managementUrls"]["id"] == "INSTANCEID"
    assert binding["taskHubName"] == "TestHubName"


# ------------------------------------------------------------------------------------- orchestrations


def test_http_starter_and_status_query_uri(host: DevHost) -> None:
    links = start(host.base_url, "hello_sequence", ["Oslo", "Lima"])
    running = requests.get(links["statusQueryGetUri"], timeout=5)
    assert running.status_code in (200, 202)
    status = wait_for(links["statusQueryGetUri"])
    assert status["runtimeStatus"] == "Completed"
    assert status["output"] == ["Hello Oslo!", "Hello Lima!"]
    assert status["input"] == ["Oslo", "Lima"]
    assert status["name"] == "hello_sequence" and status["instanceId"] == links["id"]
    assert status["createdTime"].endswith("Z") and status["lastUpdatedTime"].endswith("Z")
    final = requests.get(links["statusQueryGetUri"] + "&showHistory=true&showHistoryOutput=true", timeout=5)
    assert final.status_code == 200
    kinds = [e["EventType"] for e in final.json()["historyEvents"]]
    assert kinds[0] == "ExecutionStarted" and kinds[-1] == "ExecutionCompleted"
    assert kinds.count("TaskScheduled") == kinds.count("TaskCompleted") == 2


def test_wait_for_completion_or_create_check_status_response(host: DevHost) -> None:
    response = requests.post(f"{host.base_url}/api/run/fan_out", json=3, timeout=15)
    assert response.status_code == 200
    assert response.json() == {"sum": 5, "squares": [0, 1, 4]}


def test_fan_out_fan_in(host: DevHost) -> None:
    status = run(host.base_url, "fan_out", 12)
    assert status["runtimeStatus"] == "Completed"
    assert status["output"] == {"sum": sum(i * i for i in range(12)), "squares": [i * i for i in range(12)]}


def test_bounded_fan_out_with_task_any(host: DevHost) -> None:
    status = run(host.base_url, "bounded_fan_out", {"count": 10, "limit": 3})
    assert status["runtimeStatus"] == "Completed"
    assert status["output"] == sorted(i * i for i in range(10))
    from tests.apps import toy_app

    assert 1 < toy_app._running["max"] <= 3


def test_call_activity_with_retry_fails_twice_then_succeeds(host: DevHost, tmp_path: Path) -> None:
    counter = tmp_path / "attempts"
    started = time.monotonic()
    status = run(host.base_url, "retrying", {"counter_file": str(counter), "fail_times": 2})
    assert status["runtimeStatus"] == "Completed", status
    assert status["output"] == "succeeded on attempt 3"
    assert counter.read_text() == "3"
    assert time.monotonic() - started >= 0.4  # two retry timers of 200 ms


def test_retry_gives_up_after_max_attempts(host: DevHost, tmp_path: Path) -> None:
    counter = tmp_path / "attempts"
    status = run(host.base_url, "retry_exhausted", {"counter_file": str(counter), "fail_times": 10})
    assert status["runtimeStatus"] == "Completed", status
    expected = "gave up: Activity function 'flaky' failed: RuntimeError: flaky failure #2"
    assert status["output"].startswith(expected)
    assert counter.read_text() == "2"


def test_durable_timer_delays(host: DevHost) -> None:
    started = time.monotonic()
    status = run(host.base_url, "delayed", 1)
    assert status["runtimeStatus"] == "Completed"
    assert time.monotonic() - started >= 1.0
    assert status["output"] >= 1.0  # current_utc_datetime moved past the timer


def test_sub_orchestrations_with_explicit_ids_and_failure(host: DevHost) -> None:
    instance_id = f"parent-{uuid.uuid4().hex[:8]}"
    status = wait_for(start(host.base_url, "parent", None, instance_id)["statusQueryGetUri"])
    assert status["runtimeStatus"] == "Completed", status
    assert status["output"]["good"] == 49
    assert "child failed on purpose" in status["output"]["error"]
    client = client_for(host)
    good = run_coroutine(client.get_status(f"{instance_id}-child-ok"))
    bad = run_coroutine(client.get_status(f"{instance_id}-child-bad"))
    assert good.runtime_status == df.OrchestrationRuntimeStatus.Completed and good.output == 49
    assert bad.runtime_status == df.OrchestrationRuntimeStatus.Failed
    assert "child failed on purpose" in bad.output


def test_custom_classes_travel_as_the_sdk_sends_them(host: DevHost) -> None:
    """to_json/from_json classes reach activities and sub-orchestrations as themselves (the SDK's envelope,
    {"__class__", "__module__", "__data__"}, kept as is by the host); an orchestration output must be plain JSON."""
    envelope = {"__class__": "Point", "__module__": "tests.apps.toy_app", "__data__": {"x": 1, "y": 2}}
    status = run(host.base_url, "typed_payloads", envelope)
    assert status["runtimeStatus"] == "Completed", status
    assert status["output"] == {"input": "Point", "activity_result": "Point", "shifted": {"x": 2, "y": 3},
                                "child": {"type": "Point", "x": 2}}
    assert status["input"] == envelope
    assert status["customStatus"] == {"__class__": "Point", "__module__": "tests.apps.toy_app",
                                      "__data__": {"x": -1, "y": -1}}
    refused = run(host.base_url, "object_output")
    assert refused["runtimeStatus"] == "Failed" and "not JSON serializable" in str(refused["output"])


def test_external_events_custom_status_and_buffering(host: DevHost) -> None:
    links = start(host.base_url, "approval")
    client = client_for(host)
    deadline = time.monotonic() + 10
    while run_coroutine(client.get_status(links["id"])).custom_status != {"stage": "waiting for approval"}:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    run_coroutine(client.raise_event(links["id"], "approval", {"by": "ann"}))
    # The second event is sent straight away; it waits in the inbox until the orchestrator asks for it.
    run_coroutine(client.raise_event(links["id"], "approval", "again"))
    status = wait_for(links["statusQueryGetUri"])
    assert status["runtimeStatus"] == "Completed"
    assert status["output"] == {"first": {"by": "ann"}, "second": "again"}
    assert status["customStatus"] == {"stage": "approved"}


def test_raise_event_through_management_url(host: DevHost) -> None:
    links = start(host.base_url, "approval")
    url = links["sendEventPostUri"].replace("{eventName}", "approval")
    assert requests.post(url, json="first", timeout=5).status_code == 202
    assert requests.post(url, json={"n": 2}, timeout=5).status_code == 202
    assert wait_for(links["statusQueryGetUri"])["output"] == {"first": "first", "second": {"n": 2}}
    assert requests.post(url, json=1, timeout=5).status_code == 410


def test_terminate(host: DevHost) -> None:
    links = start(host.base_url, "wait_forever")
    wait_for(links["statusQueryGetUri"], until=("Running",))
    run_coroutine(client_for(host).terminate(links["id"], "no longer needed"))
    status = wait_for(links["statusQueryGetUri"])
    assert status["runtimeStatus"] == "Terminated"
    assert status["output"] == "no longer needed"
    url = links["terminatePostUri"].replace("{text}", "again")
    assert requests.post(url, timeout=5).status_code == 410


def test_same_instance_id_runs_once(host: DevHost, tmp_path: Path) -> None:
    instance_id = f"single-{uuid.uuid4().hex[:8]}"
    marker = tmp_path / "runs"
    payload = {"seconds": 0.5, "marker": str(marker)}
    first = start(host.base_url, "sleepy", payload, instance_id)
    second = requests.post(f"{host.base_url}/api/start/sleepy/{instance_id}", json=payload, timeout=10)
    assert second.status_code == 409 and "already exists" in second.text
    assert wait_for(first["statusQueryGetUri"])["runtimeStatus"] == "Completed"
    assert len(marker.read_text().splitlines()) == 1
    # Once finished, the id may be used again: a new run replaces the old one.
    again = start(host.base_url, "sleepy", payload, instance_id)
    assert wait_for(again["statusQueryGetUri"])["runtimeStatus"] == "Completed"
    assert len(marker.read_text().splitlines()) == 2


def test_client_queries_and_purge(host: DevHost) -> None:
    client = client_for(host)
    instance_id = run_coroutine(client.start_new("counter", None, 0))
    deadline = time.monotonic() + 10
    while (status := run_coroutine(client.get_status(instance_id))).runtime_status != \
            df.OrchestrationRuntimeStatus.Completed:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert status.output == 3  # continued as new three times
    completed = run_coroutine(client.get_status_by(runtime_status=[df.OrchestrationRuntimeStatus.Completed]))
    assert instance_id in {s.instance_id for s in completed}
    assert len(run_coroutine(client.get_status_all())) >= len(completed)
    assert run_coroutine(client.purge_instance_history(instance_id)).instances_deleted == 1
    assert not run_coroutine(client.get_status(instance_id))
    with pytest.raises(Exception, match="doesn't exist"):
        run_coroutine(client.start_new("no_such_orchestrator"))


def test_opt_in_completion_batching_gives_the_same_results(tmp_path: Path) -> None:
    with DevHost(APP, tmp_path / "state", schedule_timers=False, blob_poll_interval=3600,
                 completions_per_episode=16) as batched:
        links = {
            "fan": start(batched.base_url, "fan_out", 40),
            "bounded": start(batched.base_url, "bounded_fan_out", {"count": 12, "limit": 4}),
            "retry": start(batched.base_url, "retrying", {"counter_file": str(tmp_path / "n"), "fail_times": 2}),
            "parent": start(batched.base_url, "parent", None, f"batched-{uuid.uuid4().hex[:6]}"),
        }
        results = {key: wait_for(value["statusQueryGetUri"]) for key, value in links.items()}
    assert results["fan"]["output"]["sum"] == sum(i * i for i in range(40))
    assert results["bounded"]["output"] == sorted(i * i for i in range(12))
    assert results["retry"]["output"] == "succeeded on attempt 3"
    assert results["parent"]["output"]["good"] == 49


# ------------------------------------------------------------------------------------ other triggers


def test_admin_endpoint_runs_timer_function(host: DevHost) -> None:
    response = requests.post(f"{host.base_url}/admin/functions/scheduled_kick", json={"input": ""}, timeout=5)
    assert response.status_code == 202
    status_url = f"{host.base_url}/runtime/webhooks/durabletask/instances/scheduled-run"
    assert wait_for(status_url)["output"] == ["Hello Timer!"]


def test_ncrontab_schedules() -> None:
    from datetime import UTC, datetime

    moment = datetime(2026, 11, 3, 10, 7, 31, tzinfo=UTC)  # a Tuesday
    assert Schedule.parse("0 */5 * * * *").next_after(moment) == datetime(2026, 11, 3, 10, 10, tzinfo=UTC)
    assert Schedule.parse("*/10 * * * * *").next_after(moment) == datetime(2026, 11, 3, 10, 7, 40, tzinfo=UTC)
    assert Schedule.parse("0 30 9 * * MON-FRI").next_after(moment) == datetime(2026, 11, 4, 9, 30, tzinfo=UTC)
    assert Schedule.parse("0 0 12 1,15 * *").next_after(moment) == datetime(2026, 11, 15, 12, tzinfo=UTC)
    assert Schedule.parse("00:00:05").next_after(moment) == datetime(2026, 11, 3, 10, 7, 36, tzinfo=UTC)


def test_scheduled_timer_fires_on_its_own(tmp_path: Path) -> None:
    os.environ["TOY_SCHEDULE"] = "* * * * * *"  # every second
    with DevHost(APP, tmp_path, blob_poll_interval=60) as dev_host:
        status_url = f"{dev_host.base_url}/runtime/webhooks/durabletask/instances/scheduled-run"
        assert wait_for(status_url, timeout=10)["output"] == ["Hello Timer!"]
    os.environ["TOY_SCHEDULE"] = "0 0 0 1 1 *"


def test_blob_trigger_fires_once_per_new_blob(host: DevHost, azurite: str) -> None:
    from azure.storage.blob import BlobServiceClient

    container = BlobServiceClient.from_connection_string(azurite).get_container_client("uploads")
    container.create_container()
    container.upload_blob("a.csv", b"alpha")
    container.upload_blob("nested/b.csv", b"beta")
    log_file = Path(os.environ["TOY_BLOB_LOG"])
    deadline = time.monotonic() + 10
    while len(log_file.read_text().splitlines() if log_file.exists() else []) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(0.6)  # a few more polls: nothing may fire twice
    deliveries = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert sorted((d["name"], d["length"], d["content"]) for d in deliveries) == [
        ("uploads/a.csv", 5, "alpha"), ("uploads/nested/b.csv", 4, "beta")]
    assert all(d["uri"].endswith(d["name"]) for d in deliveries)
    container.upload_blob("a.csv", b"alpha v2", overwrite=True)  # a new ETag is a new blob version
    deadline = time.monotonic() + 10
    while len(log_file.read_text().splitlines()) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.1)


# ----------------------------------------------------------------------------------------- restarts


def test_killed_host_resumes_activities_and_timers(tmp_path: Path) -> None:
    env = {"TOY_SCHEDULE": "0 0 0 1 1 *"}
    state = tmp_path / "state"
    marker = tmp_path / "activity-runs"
    args = ["--no-schedule", "--blob-poll-interval", "3600"]
    first = start_host_process(APP, state, env=env, extra_args=args, log_file=tmp_path / "host1.log")
    try:
        sleeping = start(first.base_url, "sleepy", {"seconds": 1.5, "marker": str(marker)}, "kill-activity")
        timer = start(first.base_url, "delayed", 2, "kill-timer")
        deadline = time.monotonic() + 10
        while not marker.exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        wait_for(timer["statusQueryGetUri"], until=("Running",))
    finally:
        first.kill()
    second = start_host_process(APP, state, env=env, extra_args=args, log_file=tmp_path / "host2.log")
    try:
        base = f"{second.base_url}/runtime/webhooks/durabletask/instances"
        activity_status = wait_for(f"{base}/{sleeping['id']}", timeout=15)
        timer_status = wait_for(f"{base}/{timer['id']}", timeout=15)
    finally:
        second.stop()
    assert activity_status["runtimeStatus"] == "Completed" and activity_status["output"] == "slept well"
    assert timer_status["runtimeStatus"] == "Completed" and timer_status["output"] >= 2
    assert len(marker.read_text().splitlines()) == 2  # at-least-once: the interrupted activity ran again
