"""Admission control against the local stack: a vCPU budget that CORE_QUOTA really bounds across runs, a cap
on active runs (429 + Retry-After), a minimum shard size at the door."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import HORIZON, sample_stack

from pipeline import admission
from pipeline.settings import Settings

CORE_QUOTA, CONTAINER_CPU = 4, 2  # two groups at once, across every run


@pytest.fixture(scope="module")
def stack(tmp_path_factory, sample_models):
    root = Path(tmp_path_factory.mktemp("admission"))
    overrides = {"MIN_SHARD_SIZE": "4", "DEFAULT_HORIZON_DAYS": str(HORIZON), "SHARD_ATTEMPTS": "1",
                 "SHARD_DEADLINE_MINUTES": "5", "CORE_QUOTA": str(CORE_QUOTA), "CONTAINER_CPU": str(CONTAINER_CPU),
                 "MAX_PARALLEL_GROUPS": "2", "MAX_ACTIVE_RUNS": "40"}
    with sample_stack(root, sample_models, overrides, host_args=["--blob-poll-interval", "3600"]) as s:
        yield s


class GroupSampler:
    """The most container groups the stand-in held at once, sampled every 10 ms."""

    def __init__(self, stack):
        self.stack, self.most, self.seen = stack, 0, set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            groups = self.stack.standin.groups()
            self.most = max(self.most, len(groups))
            self.seen.update(groups)
            time.sleep(0.01)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(timeout=10)
        return self.most


def test_30_concurrent_starts_never_exceed_the_vcpu_budget(stack):
    # Containers that exit at once (no R): the point is how many groups exist together, not scoring.
    stack.standin.inject({"kind": "exit", "exit_code": 0, "output": "done", "times": 1000})
    sampler = GroupSampler(stack)
    try:
        with ThreadPoolExecutor(30) as pool:
            answers = list(pool.map(lambda _: stack.post("/api/runs", {"input": "manual/input.csv",
                                                                       "postcodes": ["1002", "1004"]}), range(30)))
        assert [r.status_code for r in answers] == [202] * 30, [r.text for r in answers if r.status_code != 202]
        started = time.monotonic()
        views = [stack.wait_for_run(r.json()["id"], timeout=600) for r in answers]
        print(f"30 runs done in {time.monotonic() - started:.0f} s")
    finally:
        most = sampler.stop()
        stack.standin.clear_faults()
    groups = {a["group"] for v in views for s in v["shards"] for a in s["attempts"]}
    assert len(groups) == 30  # every run did get its group, in turn
    print(f"30 runs: at most {most} groups ({most * CONTAINER_CPU} vCPU) at once; quota {CORE_QUOTA}")
    assert 1 <= most <= CORE_QUOTA // CONTAINER_CPU, most
    assert stack.blobs.read_json("results", admission.BUDGET_BLOB)["holders"] == {}  # all released


def test_the_budget_grants_no_more_than_the_quota_to_concurrent_shards(stack):
    settings = Settings.from_env(stack.settings)
    stack.blobs.delete("results", admission.BUDGET_BLOB)
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda n: admission.acquire(stack.blobs, settings, f"g{n}", "run-x"), range(12)))
    assert sum(a.granted for a in answers) == CORE_QUOTA // CONTAINER_CPU
    granted = [f"g{n}" for n, a in enumerate(answers) if a.granted]
    assert admission.release(stack.blobs, settings, granted[0])
    assert admission.acquire(stack.blobs, settings, "g-next", "run-x").granted
    for holder in (granted[1], "g-next"):
        admission.release(stack.blobs, settings, holder)
    assert stack.blobs.read_json("results", admission.BUDGET_BLOB)["holders"] == {}


def test_too_many_active_runs_get_429_with_retry_after(stack):
    stack.settings["MAX_ACTIVE_RUNS"] = "2"
    stack.restart_host(hard=False)
    stack.standin.inject({"kind": "hang"})
    try:
        started = [stack.post("/api/runs", {"input": "manual/input.csv"}) for _ in range(2)]
        assert [r.status_code for r in started] == [202, 202]
        refused = stack.post("/api/runs", {"input": "manual/input.csv"})
        assert refused.status_code == 429, refused.text
        assert int(refused.headers["Retry-After"]) > 0 and "2 runs are active" in refused.json()["error"]
        for r in started:
            stack.post(f"/api/runs/{r.json()['id']}/cancel")
        for r in started:
            stack.wait_for_run(r.json()["id"])
    finally:
        stack.standin.clear_faults()
        stack.settings["MAX_ACTIVE_RUNS"] = "40"
        stack.restart_host(hard=False)


def test_shard_size_below_the_minimum_is_refused(stack):
    r = stack.post("/api/runs", {"input": "manual/input.csv", "shardSize": 1})
    assert r.status_code == 400 and r.json()["field"] == "shardSize", r.text
