"""Container polls back off: a short first interval, doubling up to POLL_INTERVAL_SECONDS (real SDK replay)."""

from __future__ import annotations

from datetime import timedelta

from test_orchestrator_replay import RUNNING, aci_shard, container, own_timers, run_shard, shard

from pipeline.settings import DEFAULTS, Settings


def test_polls_start_short_and_double_up_to_the_interval():
    # Running for six polls, then done: waits of 2, 4, 8, 16, 20 s (capped by poll_seconds = 20).
    def states(group: str, poll: int) -> dict:
        return RUNNING if poll <= 6 else container("Terminated", 0, detail="Completed")

    replay = run_shard(aci_shard(states), shard(poll_first_seconds=2))
    waits = [t.fire_at - t.scheduled_at for t in own_timers(replay)]
    assert waits == [timedelta(seconds=s) for s in (2, 4, 8, 16, 20, 20)]
    assert replay.output["state"] == "succeeded"


def test_plan_without_a_first_interval_polls_at_the_interval():
    # A run planned before POLL_FIRST_SECONDS existed replays as it was recorded.
    replay = run_shard(aci_shard(), shard())
    assert [t.fire_at - t.scheduled_at for t in own_timers(replay)] == [timedelta(seconds=20)]


def test_first_interval_setting_has_a_default():
    settings = Settings.from_env({})
    assert settings.poll_first_seconds == float(DEFAULTS["POLL_FIRST_SECONDS"]) <= settings.poll_interval_seconds
