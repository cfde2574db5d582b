"""Triggers against the dev host and the library's own converters: the occurrence a timer is for, one start
per id, and start failures that raise instead of vanishing (nothing mocked)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import azure.durable_functions as df
import pytest
import requests

from devenv.durable_host import DevHost
from devenv.durable_host.invoker import run_coroutine
from devenv.durable_host.triggers import timer_request
from pipeline.trigger_support import scheduled_day, start_once

pytestmark = pytest.mark.integration  # starts the dev host


def host_for(app: str, state) -> DevHost:
    return DevHost(app, state, schedule_timers=False, blob_poll_interval=3600).start()


@pytest.fixture(scope="module")
def runs_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevHost]:
    host = host_for("tests.apps.runs_app", tmp_path_factory.mktemp("runs"))
    yield host
    host.stop()


def test_the_occurrence_not_the_clock_names_the_day() -> None:
    now = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
    # What the host hands the function: the status before this run, Next = the occurrence firing now.
    late = timer_request(True, datetime(2026, 11, 21, 2, tzinfo=UTC), datetime(2026, 11, 22, 2, tzinfo=UTC))
    assert scheduled_day(late, now).isoformat() == "2026-11-22"
    on_time = timer_request(False, datetime(2026, 11, 22, 2, tzinfo=UTC), datetime(2026, 11, 23, 2, tzinfo=UTC))
    assert scheduled_day(on_time, now).isoformat() == "2026-11-23"
    # A manual or start-up run has no occurrence of its own (no status, or Next still ahead): today.
    assert scheduled_day(timer_request(False), now).isoformat() == "2026-11-23"
    ahead = timer_request(False, None, datetime(2026, 11, 24, 2, tzinfo=UTC))
    assert scheduled_day(ahead, now).isoformat() == "2026-11-23"


def test_two_concurrent_starts_of_one_id_make_one_run(runs_host: DevHost) -> None:
    run_id = f"daily-race-{uuid.uuid4().hex[:8]}"

    async def race() -> list[bool]:
        clients = [df.DurableOrchestrationClient(runs_host.client_json()) for _ in range(4)]
        return list(await asyncio.gather(*(start_once(c, run_id, {"n": 1}) for c in clients)))

    started = run_coroutine(race())
    assert started.count(True) == 1, started
    listed = requests.get(f"{runs_host.base_url}/runtime/webhooks/durabletask/instances",
                          params={"instanceIdPrefix": run_id, "top": 100}, timeout=10).json()
    assert [s["instanceId"] for s in listed if s["name"] == "score_run"] == [run_id]


def test_a_start_that_fails_for_another_reason_raises(tmp_path) -> None:
    """The toy app has no score_run: the host refuses the start (400). The old start_once logged that at INFO
    and returned, so the event was acknowledged and the day's run silently lost."""
    host = host_for("tests.apps.toy_app", tmp_path / "toy")
    try:
        client = df.DurableOrchestrationClient(host.client_json())
        with pytest.raises(Exception, match="score_run"):
            run_coroutine(start_once(client, f"daily-lost-{uuid.uuid4().hex[:8]}", {"n": 1}))
    finally:
        host.stop()


def test_a_start_against_an_unreachable_host_raises(runs_host: DevHost) -> None:
    """A transient failure (the host's durable endpoint unreachable) propagates, so the host retries."""
    client = df.DurableOrchestrationClient(runs_host.client_json().replace(str(runs_host.port), "9"))
    with pytest.raises(Exception):  # noqa: B017 - aiohttp's connection error, whatever its class
        run_coroutine(start_once(client, "daily-unreachable", {"n": 1}))
