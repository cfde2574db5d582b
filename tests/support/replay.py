"""A replay driver for the production orchestrators, through the real azure-functions-durable SDK.

It hands `score_shard` / `score_run` a history exactly as the Durable host would (one completion per episode:
the SDK replays the whole history each time and returns the actions it wants next) and records what the
orchestrator scheduled. No host, no storage, no ACI: the orchestrators do no I/O, the tests answer their
activities.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.durable_functions as df
from azure.durable_functions.models.actions.ActionType import ActionType
from azure.functions import meta
from azure.functions._durable_functions import _deserialize_custom_object, _serialize_custom_object
from azure.functions.durable_functions import OrchestrationTriggerConverter

from devenv.durable_host import history as h
from devenv.durable_host.actions import RetryPolicy, flatten_actions, parse_orchestrator_failure
from pipeline import payloads as p
from pipeline.registration import build_blueprint

# What production code sends across each boundary (checked on every scheduled input and every output). Tests
# may answer with the plain JSON of a payload; the driver turns it into the object the activity would return.
INPUT_TYPES: dict[str, type[p.Payload]] = {
    "score_run": p.RunRequest, "score_shard": p.ShardInput, "plan_run": p.PlanRequest,
    "create_container_group": p.GroupRequest, "save_container_logs": p.LogsRequest, "publish_run": p.Publication,
    "record_failures": p.Publication}
RESULT_TYPES: dict[str, type[p.Payload]] = {
    "score_run": p.RunResult, "score_shard": p.ShardOutcome, "plan_run": p.RunPlan,
    "create_container_group": p.CreateResult, "get_container_state": p.ContainerState,
    "read_shard_status": p.ShardReport, "publish_run": p.Published, "record_failures": p.FailuresWritten}


def sdk_dumps(value: Any) -> str:
    """JSON text as the SDK writes payloads (ActivityTriggerConverter.encode, df_dumps)."""
    return json.dumps(value, default=_serialize_custom_object)


def sdk_loads(text: str) -> Any:
    """A payload as the SDK reads it (ActivityTriggerConverter.decode, df_loads)."""
    return json.loads(text, object_hook=_deserialize_custom_object)


def typed(name: str | None, value: Any, types: dict[str, type[p.Payload]]) -> Any:
    return types[name].from_json(value) if isinstance(value, dict) and name in types else value


def plain(value: Any) -> Any:
    return value.to_json() if isinstance(value, p.Payload) else value


SCHEMA_VERSION = 2  # what current hosts send: fan-out comes back as nested WhenAny/WhenAll actions
ACTIVITY_SECONDS = 2  # how long every activity / sub-orchestration "takes" on the driver's clock
T0 = datetime(2026, 11, 23, 6, 0, 0, tzinfo=UTC)


@functools.cache
def orchestrator_functions() -> dict[str, Callable[[Any], str]]:
    """The registered orchestrators, as the worker gets them: a fresh app, get_functions() called once."""
    app = df.DFApp()
    app.register_functions(build_blueprint())
    return {f.get_function_name(): f.get_user_function() for f in app.get_functions()
            if f.get_trigger().type == "orchestrationTrigger"}


def identity(action: dict) -> tuple:
    return tuple(action.get(k) for k in ("actionType", "functionName", "instanceId", "input", "fireAt",
                                          "externalEventName"))


class OrchestratorCrashed(AssertionError):
    """The orchestrator raised: the real host would mark the instance Failed (these orchestrators never should)."""


@dataclass(frozen=True)
class Fail:
    """Answer for an activity / sub-orchestration: it failed (TaskFailed / SubOrchestrationInstanceFailed)."""

    reason: str
    details: str = ""


@dataclass(frozen=True)
class Raise:
    """Answer for any work item: do not complete it now, raise this external event instead."""

    name: str
    value: Any = None


@dataclass
class Work:
    """One unit of work the orchestrator scheduled: an activity, a durable timer or a sub-orchestration."""

    kind: str  # "activity" | "timer" | "sub"
    id: int
    name: str | None
    input: Any  # the plain JSON of what was sent (payload.to_json())
    scheduled_at: datetime
    episode: int
    fire_at: datetime | None = None
    instance_id: str | None = None
    retry: dict | None = None  # retryOptions of a *WithRetry action
    attempt: int = 1  # of a retried activity, as the Durable retry loop counts them
    retry_timer_for: Work | None = None  # set on the timers of the retry loop (no action of their own)
    action_index: int | None = None  # position in the flattened action list (None for retry-loop work)
    canceled: bool = False
    done: bool = False
    payload: Any = None  # what was sent, as the SDK hands it to the activity / sub-orchestration


@dataclass
class Episode:
    delivered: str  # what this episode delivered, e.g. "started", "completed get_container_state#3"
    clock: datetime
    new_work: list[Work]
    pending_subs: list[str]  # instance ids of sub-orchestrations outstanding after the episode
    custom_status: Any  # plain JSON (Progress.to_json())


@dataclass
class Replay:
    """Runs one orchestration instance episode by episode, building the history the Durable host would."""

    orchestrator: str
    input: Any
    instance_id: str = "run-0f3a9c2b7d4e4a1b9c8d"
    clock: datetime = T0
    history: list[dict] = field(default_factory=list)
    pending: list[Work] = field(default_factory=list)
    scheduled: list[Work] = field(default_factory=list)  # every work item ever scheduled, in id order
    actions: list[dict] = field(default_factory=list)  # the flattened actions of the latest episode
    episodes: list[Episode] = field(default_factory=list)
    state: dict | None = None
    next_id: int = 0

    # ------------------------------------------------------------------ delivering one thing per episode

    def start(self) -> None:
        ts = h.format_timestamp(self.clock)
        started = h.execution_started(ts, self.orchestrator, self._input_text(), "", None)
        self._episode("started", [started])

    def complete(self, work: Work, value: Any) -> None:
        self._finish(work, ACTIVITY_SECONDS)
        ts = h.format_timestamp(self.clock)
        if work.kind == "sub":
            # An orchestration's output is plain JSON (SDK 1.7 refuses custom objects there).
            event = h.sub_orchestration_completed(ts, work.id, json.dumps(plain(typed(work.name, value, RESULT_TYPES))))
        else:
            event = h.task_completed(ts, work.id, sdk_dumps(typed(work.name, value, RESULT_TYPES)))
        self._episode(f"completed {work.name}#{work.id}", [event])

    def fail(self, work: Work, failure: Fail) -> None:
        self._finish(work, ACTIVITY_SECONDS)
        ts = h.format_timestamp(self.clock)
        if work.kind == "sub":
            events = [h.sub_orchestration_failed(ts, work.id, failure.reason, failure.details)]
        else:
            events = [h.task_failed(ts, work.id, failure.reason, failure.details)]
        if work.retry is not None:
            # Durable Task's retry loop: the failure is followed by a retry timer (always, even after the last
            # attempt: the SDK waits for it), then by the task again while attempts are left.
            policy = RetryPolicy.from_action(work.retry)
            fire_at = self.clock + timedelta(milliseconds=policy.delay_ms(work.attempt))
            timer = self._new_work("timer", None, None, fire_at=fire_at, retry=work.retry, attempt=work.attempt,
                                   retry_timer_for=work)
            events.append(h.timer_created(ts, timer.id, h.format_timestamp(fire_at)))
        self._episode(f"failed {work.name}#{work.id}", events)

    def fire(self, timer: Work) -> None:
        assert timer.kind == "timer" and timer.fire_at is not None
        self._finish(timer, 0)
        self.clock = max(self.clock, timer.fire_at)
        ts = h.format_timestamp(self.clock)
        events = [h.timer_fired(ts, timer.id, h.format_timestamp(timer.fire_at))]
        origin = timer.retry_timer_for
        if origin is not None and timer.attempt < RetryPolicy.from_action(origin.retry).max_attempts:
            again = self._new_work("activity", origin.name, origin.input, retry=origin.retry,
                                   attempt=timer.attempt + 1, payload=origin.payload)
            events.append(h.task_scheduled(ts, again.id, again.name, sdk_dumps(again.payload)))
        self._episode(f"fired timer#{timer.id}", events)

    def raise_event(self, name: str, value: Any = None) -> None:
        self.clock += timedelta(seconds=1)
        self._episode(f"event {name}", [h.event_raised(h.format_timestamp(self.clock), name, json.dumps(value))])

    # ------------------------------------------------------------------ running a whole scenario

    def run(self, answer: Callable[[Work], Any], max_episodes: int = 400) -> dict:
        """Deliver the oldest outstanding work item's outcome, one per episode, until the orchestration ends.

        `answer(work)` gives an activity's / sub-orchestration's result, a Fail, or a Raise (raise an event
        instead; the work stays outstanding). Timers fire unless `answer` returns a Raise for them.
        """
        if not self.episodes:
            self.start()
        while not self.done:
            assert len(self.episodes) < max_episodes, "the orchestration did not finish"
            assert self.pending, f"the orchestration waits for nothing it was given: {self.actions}"
            work = self.pending[0]
            reply = answer(work)
            if isinstance(reply, Raise):
                self.raise_event(reply.name, reply.value)
            elif work.kind == "timer":
                self.fire(work)
            elif isinstance(reply, Fail):
                self.fail(work, reply)
            else:
                self.complete(work, reply)
        return self.output

    @property
    def done(self) -> bool:
        return bool(self.state and self.state.get("isDone"))

    @property
    def result(self) -> Any:
        """The orchestration's output, read back as its payload type (it travels as that type's plain JSON)."""
        assert self.done, "the orchestration has not finished"
        return typed(self.orchestrator, self.state["output"], RESULT_TYPES)

    @property
    def output(self) -> dict:
        """The orchestration's output as plain JSON (payload.to_json())."""
        return plain(self.result)

    @property
    def custom_status(self) -> Any:
        return self._plain_status(self.state.get("customStatus")) if self.state else None

    def calls(self, name: str) -> list[Work]:
        return [w for w in self.scheduled if w.kind == "activity" and w.name == name]

    def timeline(self) -> list[str]:
        """Every scheduled work item, in order: activity names, "timer", "sub:<instance id>"."""
        return [w.name if w.kind == "activity" else "timer" if w.kind == "timer" else f"sub:{w.instance_id}"
                for w in self.scheduled if w.retry_timer_for is None]

    # ------------------------------------------------------------------ internals

    def _input_text(self) -> str:
        return sdk_dumps(typed(self.orchestrator, self.input, INPUT_TYPES))

    @staticmethod
    def _sent(name: str, text: str) -> Any:
        """An action's input as the receiving function gets it; it must be the payload type production sends."""
        payload = sdk_loads(text)
        expected = INPUT_TYPES.get(name)
        assert expected is None or isinstance(payload, expected), f"{name} was sent {text}"
        return payload

    @staticmethod
    def _plain_status(value: Any) -> Any:
        return None if value is None else plain(sdk_loads(json.dumps(value)))

    def _finish(self, work: Work, seconds: float) -> None:
        assert work in self.pending, f"{work.kind} {work.name}#{work.id} is not outstanding"
        self.pending.remove(work)
        work.done = True
        self.clock += timedelta(seconds=seconds)

    def _new_work(self, kind: str, name: str | None, value: Any, **fields: Any) -> Work:
        work = Work(kind, self.next_id, name, value, self.clock, len(self.episodes), **fields)
        self.next_id += 1
        self.pending.append(work)
        self.scheduled.append(work)
        return work

    def _episode(self, delivered: str, events: list[dict]) -> None:
        assert not self.done, "the orchestration has already finished"
        ts = h.format_timestamp(self.clock)
        new_events = [h.orchestrator_started(ts), *events]
        replay = [{**e, "IsPlayed": True} for e in self.history] + new_events
        context = {"history": replay, "instanceId": self.instance_id, "isReplaying": False,
                   "parentInstanceId": None, "input": self._input_text(), "upperSchemaVersion": SCHEMA_VERSION}
        handle = orchestrator_functions()[self.orchestrator]
        try:
            state = json.loads(handle(OrchestrationTriggerConverter.decode(
                meta.Datum(type="json", value=json.dumps(context)), trigger_metadata={})))
        except Exception as exc:  # noqa: BLE001 - the SDK reports a user exception this way
            message, state = parse_orchestrator_failure(exc)
            raise OrchestratorCrashed(f"{self.orchestrator} raised after '{delivered}': {message}") from None
        self.state = state
        flat = flatten_actions(state.get("actions") or [])
        seen = len(self.actions)
        assert [identity(a) for a in flat[:seen]] == [identity(a) for a in self.actions], \
            "the SDK's action list is not append-only across episodes"
        new_work: list[Work] = []
        if not state.get("isDone"):
            for index in range(seen, len(flat)):
                work = self._schedule(flat[index], index, new_events)
                if work is not None:
                    new_work.append(work)
            for work in list(self.pending):  # a timer canceled after its WhenAny was won never fires
                if work.action_index is not None and flat[work.action_index].get("isCanceled"):
                    work.canceled = True
                    self.pending.remove(work)
        self.actions = flat
        new_events.append(h.orchestrator_completed(ts))
        self.history.extend(new_events)
        self.episodes.append(Episode(delivered, self.clock, new_work,
                                     [w.instance_id for w in self.pending if w.kind == "sub"],
                                     self._plain_status(state.get("customStatus"))))

    def _schedule(self, action: dict, index: int, new_events: list[dict]) -> Work | None:
        kind = action["actionType"]
        ts = h.format_timestamp(self.clock)
        if kind == ActionType.WAIT_FOR_EXTERNAL_EVENT:
            return None  # matched by name, takes no id
        if kind in (ActionType.CALL_ACTIVITY, ActionType.CALL_ACTIVITY_WITH_RETRY):
            payload = self._sent(action["functionName"], action["input"])
            work = self._new_work("activity", action["functionName"], plain(payload),
                                  retry=action.get("retryOptions"), action_index=index, payload=payload)
            new_events.append(h.task_scheduled(ts, work.id, work.name, action["input"]))
        elif kind == ActionType.CREATE_TIMER:
            fire_at = h.parse_timestamp(action["fireAt"])
            work = self._new_work("timer", None, None, fire_at=fire_at, action_index=index)
            new_events.append(h.timer_created(ts, work.id, h.format_timestamp(fire_at)))
            if action.get("isCanceled"):
                work.canceled = True
                self.pending.remove(work)
        elif kind == ActionType.CALL_SUB_ORCHESTRATOR:
            payload = self._sent(action["functionName"], action["input"])
            work = self._new_work("sub", action["functionName"], plain(payload),
                                  instance_id=action["instanceId"], action_index=index, payload=payload)
            new_events.append(h.sub_orchestration_created(ts, work.id, work.name, work.instance_id,
                                                          action["input"]))
        else:
            raise AssertionError(f"unexpected action {action}")
        return work
