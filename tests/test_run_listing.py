"""GET /api/runs past 100 instances, against the dev host paging like the Durable extension (nothing mocked).

The dev host answers instance queries 100 at a time, sub-orchestrations included, in instance-id order, with
x-ms-continuation-token, as the extension does in Azure. 70 runs with one shard each are 140 instances.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import azure.durable_functions as df
import pytest
import requests

from devenv.durable_host import DevHost
from devenv.durable_host.invoker import run_coroutine

RUNS = 70

pytestmark = pytest.mark.integration  # starts the dev host


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevHost]:
    dev_host = DevHost("tests.apps.runs_app", tmp_path_factory.mktemp("runs-host"), schedule_timers=False,
                       blob_poll_interval=3600)
    dev_host.start()
    yield dev_host
    dev_host.stop()


@pytest.fixture(scope="module")
def run_ids(host: DevHost) -> list[str]:
    """Started one after another (creation order known); random ids, so id order is not creation order."""
    ids = []
    for n in range(RUNS):
        run_id = f"run-{uuid.uuid4().hex[:20]}"
        url = f"{host.base_url}/runtime/webhooks/durabletask/orchestrators/score_run/{run_id}"
        assert requests.post(url, json={"n": n}, timeout=10).status_code == 202
        ids.append(run_id)
        time.sleep(0.01)  # distinct creation times
    deadline = time.monotonic() + 120
    while True:
        listed = requests.get(f"{host.base_url}/runtime/webhooks/durabletask/instances",
                              params={"runtimeStatus": "Completed", "top": 1000}, timeout=10).json()
        if len(listed) == 2 * RUNS:
            return ids
        assert time.monotonic() < deadline, f"only {len(listed)} of {2 * RUNS} instances completed"
        time.sleep(0.2)


def test_the_dev_host_pages_like_the_extension(host: DevHost, run_ids: list[str]) -> None:
    url = f"{host.base_url}/runtime/webhooks/durabletask/instances"
    first = requests.get(url, timeout=10)
    assert len(first.json()) == 100 and first.headers["x-ms-continuation-token"]
    shards = [s for s in first.json() if s["name"] == "score_shard"]
    assert shards, "sub-orchestrations take their place on a page"
    second = requests.get(url, headers={"x-ms-continuation-token": first.headers["x-ms-continuation-token"]},
                          timeout=10)
    assert len(second.json()) == 2 * RUNS - 100 and second.headers["x-ms-continuation-token"] == ""
    ids = [s["instanceId"] for s in first.json() + second.json()]
    assert ids == sorted(ids) and len(set(ids)) == 2 * RUNS  # instance-id order, not creation order
    created = [s["createdTime"] for s in first.json()]
    assert created != sorted(created)


def test_the_sdk_alone_sees_only_the_first_page(host: DevHost, run_ids: list[str]) -> None:
    """Why the app follows the token itself: SDK 1.7's get_status_by stops after one page (issue #580)."""
    client = df.DurableOrchestrationClient(host.client_json())
    statuses = run_coroutine(client.get_status_by(created_time_from=datetime.now(UTC) - timedelta(days=1)))
    assert len(statuses) == 100 < 2 * RUNS


def test_runs_are_listed_newest_first_in_pages(host: DevHost, run_ids: list[str]) -> None:
    seen, token, pages = [], None, 0
    while True:
        params = {"top": 30, **({"continuationToken": token} if token else {})}
        body = requests.get(f"{host.base_url}/api/runs", params=params, timeout=30).json()
        assert len(body["runs"]) <= 30
        seen += body["runs"]
        pages += 1
        token = body["continuationToken"]
        if token is None:
            break
    assert pages == 3
    ids = [r["id"] for r in seen]
    assert len(ids) == len(set(ids)) == RUNS and set(ids) == set(run_ids), "every run, once"
    # Newest first. Creation times have whole seconds (as the extension shows them), so runs started within
    # one second may come in any order among themselves, but never before a newer second.
    created = [r["created"] for r in seen]
    assert created == sorted(created, reverse=True)
    assert created[0] > created[-1]
    assert all(r["state"] == "completed" for r in seen)


@pytest.mark.parametrize(("params", "field"), [({"top": "0"}, "top"), ({"top": "lots"}, "top"),
                                              ({"top": "100000"}, "top"),
                                              ({"continuationToken": "not-a-token"}, "continuationToken")])
def test_bad_paging_parameters_get_a_400_naming_them(host: DevHost, params: dict, field: str) -> None:
    response = requests.get(f"{host.base_url}/api/runs", params=params, timeout=10)
    assert response.status_code == 400 and response.json()["field"] == field
