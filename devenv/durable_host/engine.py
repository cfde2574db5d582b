"""The orchestration engine: builds each instance's history, replays it through the real SDK, and turns the
returned actions into work (activities, timers, sub-orchestrations), persisting everything in SQLite.

Rules that keep the SDK's task ids aligned with ours (azure/durable_functions/models/TaskOrchestrationExecutor.py):
- ids are handed out in the order the SDK hands them out: first whatever the delivered completion causes
  (retry timers, retried tasks), then the episode's new actions in list order;
- exactly one completion (or raised event) is delivered per episode.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import requests
from azure.durable_functions.constants import HTTP_ACTION_NAME
from azure.durable_functions.models.actions.ActionType import ActionType
from azure.durable_functions.models.history import HistoryEventType
from azure.functions import meta
from azure.functions.durable_functions import ActivityTriggerConverter, OrchestrationTriggerConverter

from . import history as h
from .actions import RetryPolicy, flatten_actions, parse_orchestrator_failure
from .discovery import FunctionIndex
from .invoker import call_user_function
from .store import Store

log = logging.getLogger("devenv.durable_host")

ACTIVE_STATUSES = ("Pending", "Running")
TERMINAL_STATUSES = ("Completed", "Failed", "Terminated")
# upperSchemaVersion 2 is what current hosts send; fan-out then arrives as nested WhenAll/WhenAny actions.
SCHEMA_VERSION = 2
SUB_ORCHESTRATION_ACTIONS = (ActionType.CALL_SUB_ORCHESTRATOR, ActionType.CALL_SUB_ORCHESTRATOR_WITH_RETRY)


class InstanceExists(Exception):
    pass


class UnknownOrchestrator(Exception):
    pass


@dataclass
class Episode:
    """What one orchestrator episode produces, written in a single transaction."""

    instance: sqlite3.Row
    now: str
    next_event_id: int
    new_events: list[h.Event] = field(default_factory=list)
    activities: list[tuple[int, str, str | None]] = field(default_factory=list)
    timers: list[tuple[int, str, int | None]] = field(default_factory=list)
    children: list[tuple[int, str, str, str | None]] = field(default_factory=list)
    retry_inserts: list[tuple[int, str, str, str | None, str | None, str, int]] = field(default_factory=list)
    retry_updates: list[tuple[int, int, int | None, int | None]] = field(default_factory=list)
    retry_deletes: list[int] = field(default_factory=list)
    canceled_timer_actions: list[int] = field(default_factory=list)

    def allocate_id(self) -> int:
        event_id = self.next_event_id
        self.next_event_id += 1
        return event_id


class OrchestrationEngine:
    def __init__(self, store: Store, index: FunctionIndex, client_json: Callable[[], str],
                 activity_workers: int = 8, completions_per_episode: int = 1) -> None:
        # >1 is an opt-in speed-up for big fan-outs: completions that touch no retry loop are batched
        # (retry failures and retry timers still travel alone). The default follows the verified rule.
        self.completions_per_episode = max(1, completions_per_episode)
        self.store = store
        self.index = index
        self.client_json = client_json
        self._pool = ThreadPoolExecutor(max_workers=activity_workers, thread_name_prefix="activity")
        self._cond = threading.Condition()
        self._dirty = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        # Resume after a restart: activities scheduled without a completion run again (at-least-once).
        rows = self.store.query("SELECT a.* FROM activities a JOIN instances i USING (instance_id) "
                                "WHERE i.status IN ('Pending','Running') AND a.execution_id = i.execution_id")
        for row in rows:
            log.info("Resuming activity %s (task %s) of instance %s", row["name"], row["task_id"],
                     row["instance_id"])
            self._submit_activity(row["instance_id"], row["execution_id"], row["task_id"], row["name"],
                                  row["input"])
        self._thread = threading.Thread(target=self._dispatch_loop, name="orchestrations", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def wake(self) -> None:
        with self._cond:
            self._dirty = True
            self._cond.notify_all()

    # ----------------------------------------------------------------------------- client operations

    def start_instance(self, name: str, instance_id: str | None, input_text: str | None,
                       version: str = "") -> str:
        info = self.index.get(name, "orchestrationTrigger")
        if info is None:
            raise UnknownOrchestrator(
                f"The function '{name}' doesn't exist, is disabled, or is not an orchestrator function.")
        instance_id = instance_id or uuid.uuid4().hex
        with self.store.transaction() as db:
            existing = self._status_in(db, instance_id)
            if existing is not None and existing["status"] in ACTIVE_STATUSES:
                # Like the real extension's default (OverridableExistingInstanceStates = NonRunningStates).
                raise InstanceExists(f"An Orchestration instance with the status {existing['status']} "
                                     f"already exists: instance ID '{instance_id}'.")
            self._create_instance(db, instance_id, info.name, input_text, version, None, None, None)
        log.info("Instance %s (%s): Pending", instance_id, info.name)
        self.wake()
        return instance_id

    def get_instance(self, instance_id: str) -> sqlite3.Row | None:
        rows = self.store.query("SELECT * FROM instances WHERE instance_id=?", (instance_id,))
        return rows[0] if rows else None

    def get_history(self, instance_id: str) -> list[h.Event]:
        rows = self.store.query("SELECT event FROM history WHERE instance_id=? ORDER BY seq", (instance_id,))
        return [json.loads(r["event"]) for r in rows]

    def query_instances(self, where: str, params: list[Any], order_by: str = "created_time, instance_id",
                        limit: int | None = None) -> list[sqlite3.Row]:
        assert order_by in ("created_time, instance_id", "instance_id"), order_by
        tail = f" LIMIT {int(limit)}" if limit is not None else ""
        return self.store.query(f"SELECT * FROM instances {where} ORDER BY {order_by}{tail}", params)

    def raise_event(self, instance_id: str, event_name: str, input_text: str | None) -> str:
        """Returns 'accepted', 'not_found' or 'gone'. Events wait in the inbox until someone waits on them."""
        with self.store.transaction() as db:
            row = self._status_in(db, instance_id)
            if row is None:
                return "not_found"
            if row["status"] not in ACTIVE_STATUSES:
                return "gone"
            event = h.event_raised(h.format_timestamp(h.utc_now()), event_name, input_text)
            db.execute("INSERT INTO inbox (instance_id, execution_id, event) VALUES (?, NULL, ?)",
                       (instance_id, json.dumps(event)))
        log.info("Instance %s: event %r raised", instance_id, event_name)
        self.wake()
        return "accepted"

    def terminate(self, instance_id: str, reason: str) -> str:
        with self.store.transaction() as db:
            row = db.execute("SELECT * FROM instances WHERE instance_id=?", (instance_id,)).fetchone()
            if row is None:
                return "not_found"
            if row["status"] not in ACTIVE_STATUSES:
                return "gone"
            now = h.format_timestamp(h.utc_now())
            self._append_history(db, instance_id, [h.execution_terminated(now, reason)])
            self._finish(db, row, "Terminated", json.dumps(reason), now,
                         f"Instance '{instance_id}' was terminated: {reason}")
        log.info("Instance %s (%s): Terminated (%s)", instance_id, row["name"], reason)
        self.wake()
        return "accepted"

    def purge(self, instance_ids: list[str]) -> int:
        deleted = 0
        with self.store.transaction() as db:
            for instance_id in instance_ids:
                if self._status_in(db, instance_id) is None:
                    continue
                for table in ("history", "inbox", "activities", "timers", "retries", "instances"):
                    db.execute(f"DELETE FROM {table} WHERE instance_id=?", (instance_id,))
                deleted += 1
        return deleted

    # ----------------------------------------------------------------------------- dispatch loop

    def _dispatch_loop(self) -> None:
        while not self._stopping.is_set():
            with self._cond:
                self._dirty = False
            worked = False
            try:
                self._fire_due_timers()
                for instance_id in self._candidate_instances():
                    if self._stopping.is_set():
                        return
                    worked = self._run_episode(instance_id) or worked
            except Exception:
                log.exception("orchestration dispatcher error")
            if not worked:
                with self._cond:
                    if not self._dirty and not self._stopping.is_set():
                        self._cond.wait(timeout=self._seconds_to_next_timer())

    def _candidate_instances(self) -> list[str]:
        rows = self.store.query(
            "SELECT instance_id FROM instances i WHERE status IN ('Pending','Running') AND NOT EXISTS "
            "(SELECT 1 FROM history WHERE history.instance_id = i.instance_id) "
            "UNION SELECT DISTINCT b.instance_id FROM inbox b JOIN instances i USING (instance_id) "
            "WHERE i.status = 'Running'")
        return [r["instance_id"] for r in rows]

    def _seconds_to_next_timer(self) -> float:
        rows = self.store.query("SELECT MIN(fire_at) AS fire_at FROM timers")
        if not rows or rows[0]["fire_at"] is None:
            return 1.0
        delay = (h.parse_timestamp(rows[0]["fire_at"]) - h.utc_now()).total_seconds()
        return max(0.0, min(delay, 1.0))

    def _fire_due_timers(self) -> None:
        now = h.utc_now()
        due = [r for r in self.store.query("SELECT * FROM timers") if h.parse_timestamp(r["fire_at"]) <= now]
        if not due:
            return
        with self.store.transaction() as db:
            for row in due:
                gone = db.execute("DELETE FROM timers WHERE instance_id=? AND execution_id=? AND timer_id=?",
                                  (row["instance_id"], row["execution_id"], row["timer_id"])).rowcount == 0
                if gone:
                    continue
                event = h.timer_fired(h.format_timestamp(h.utc_now()), row["timer_id"], row["fire_at"])
                db.execute("INSERT INTO inbox (instance_id, execution_id, event) VALUES (?, ?, ?)",
                           (row["instance_id"], row["execution_id"], json.dumps(event)))

    # ----------------------------------------------------------------------------- one episode

    def _pick_deliveries(self, instance: sqlite3.Row) -> list[tuple[int, h.Event]]:
        waiting: dict[str, int] = json.loads(instance["waiting"])
        retry_rows = self.store.query("SELECT task_id, timer_id FROM retries WHERE instance_id=? "
                                      "AND execution_id=?", (instance["instance_id"], instance["execution_id"]))
        retry_tasks = {r["task_id"] for r in retry_rows}
        retry_timers = {r["timer_id"] for r in retry_rows}

        def drives_retry(event: h.Event) -> bool:
            if event["EventType"] in (HistoryEventType.TASK_FAILED,
                                      HistoryEventType.SUB_ORCHESTRATION_INSTANCE_FAILED):
                return event["TaskScheduledId"] in retry_tasks
            return event["EventType"] == HistoryEventType.TIMER_FIRED and event["TimerId"] in retry_timers

        picked: list[tuple[int, h.Event]] = []
        rows = self.store.query("SELECT * FROM inbox WHERE instance_id=? ORDER BY id",
                                (instance["instance_id"],))
        for row in rows:
            if row["execution_id"] not in (None, instance["execution_id"]):
                with self.store.transaction() as db:  # left over from an execution that has ended
                    db.execute("DELETE FROM inbox WHERE id=?", (row["id"],))
                continue
            event = json.loads(row["event"])
            if event["EventType"] == HistoryEventType.EVENT_RAISED:
                if waiting.get(event["Name"], 0) <= 0:
                    continue  # buffered until the orchestrator waits for this event name
                waiting[event["Name"]] -= 1
            if drives_retry(event):
                return picked or [(row["id"], event)]  # alone in its episode
            picked.append((row["id"], event))
            if len(picked) >= self.completions_per_episode:
                break
        return picked

    def _run_episode(self, instance_id: str) -> bool:
        instance = self.get_instance(instance_id)
        if instance is None or instance["status"] not in ACTIVE_STATUSES:
            return False
        past = self.get_history(instance_id)
        now = h.format_timestamp(h.utc_now())
        episode = Episode(instance, now, instance["next_event_id"])
        episode.new_events.append(h.orchestrator_started(now))
        delivered_ids: list[int] = []
        if not past:
            episode.new_events.append(h.execution_started(now, instance["name"], instance["input"],
                                                          instance["version"],
                                                          instance["parent_instance_id"]))
        else:
            picked = self._pick_deliveries(instance)
            if not picked:
                return False
            delivered_ids = [row_id for row_id, _ in picked]
            episode.new_events.extend(event for _, event in picked)
            if len(picked) == 1:
                self._continue_retry_loop(episode, picked[0][1])

        replay = [{**e, "IsPlayed": True} for e in past]
        replay += [{**e, "IsPlayed": False} for e in episode.new_events]
        context = {"history": replay, "instanceId": instance_id, "isReplaying": False,
                   "parentInstanceId": instance["parent_instance_id"], "input": instance["input"],
                   "upperSchemaVersion": SCHEMA_VERSION}
        failure: str | None = None
        try:
            state = json.loads(self._call_orchestrator(instance["name"], json.dumps(context)))
        except Exception as exc:
            failure, state = parse_orchestrator_failure(exc)

        flat = flatten_actions(state.get("actions") or [])
        continue_as_new = next((a for a in flat if a.get("actionType") == ActionType.CONTINUE_AS_NEW), None)
        if failure is None and not state.get("isDone"):
            try:
                self._schedule_new_actions(episode, flat)
            except Exception as exc:  # an action this host cannot run (entities...) fails the instance
                failure = f"{type(exc).__name__}: {exc}"
        episode.new_events.append(h.orchestrator_completed(now))
        self._commit_episode(episode, delivered_ids, state, flat, failure, continue_as_new)
        return True

    def _call_orchestrator(self, name: str, context_json: str) -> str:
        info = self.index.get(name, "orchestrationTrigger")
        if info is None:
            raise RuntimeError(f"orchestrator function {name!r} not found")
        datum = meta.Datum(type="json", value=context_json)
        context = OrchestrationTriggerConverter.decode(datum, trigger_metadata={})
        return info.user_function(context)

    def _continue_retry_loop(self, episode: Episode, delivered: h.Event) -> None:
        """Reproduce Durable Task's retry loop: failure -> retry timer -> (attempts left?) task again."""
        instance = episode.instance
        event_type = delivered["EventType"]
        key = (instance["instance_id"], instance["execution_id"])
        if event_type in (HistoryEventType.TASK_FAILED, HistoryEventType.SUB_ORCHESTRATION_INSTANCE_FAILED):
            rows = self.store.query(
                "SELECT * FROM retries WHERE instance_id=? AND execution_id=? AND task_id=?",
                (*key, delivered["TaskScheduledId"]))
            if rows:
                group = rows[0]
                policy = RetryPolicy.from_action(json.loads(group["options"]))
                # The SDK waits for this timer even after the last attempt, so it is always created.
                timer_id = episode.allocate_id()
                fire_at = h.format_timestamp(h.parse_timestamp(episode.now)
                                             + timedelta(milliseconds=policy.delay_ms(group["attempt"])))
                episode.new_events.append(h.timer_created(episode.now, timer_id, fire_at))
                episode.timers.append((timer_id, fire_at, None))
                episode.retry_updates.append((group["group_id"], group["attempt"], None, timer_id))
                log.info("Instance %s: %s attempt %d failed; retry timer %d at %s", instance["instance_id"],
                         group["name"], group["attempt"], timer_id, fire_at)
        elif event_type == HistoryEventType.TIMER_FIRED:
            rows = self.store.query(
                "SELECT * FROM retries WHERE instance_id=? AND execution_id=? AND timer_id=?",
                (*key, delivered["TimerId"]))
            if rows:
                group = rows[0]
                policy = RetryPolicy.from_action(json.loads(group["options"]))
                if group["attempt"] >= policy.max_attempts:
                    episode.retry_deletes.append(group["group_id"])
                    return
                task_id = episode.allocate_id()
                episode.retry_updates.append((group["group_id"], group["attempt"] + 1, task_id, None))
                if group["kind"] == "activity":
                    episode.new_events.append(
                        h.task_scheduled(episode.now, task_id, group["name"], group["input"]))
                    episode.activities.append((task_id, group["name"], group["input"]))
                else:
                    episode.new_events.append(h.sub_orchestration_created(
                        episode.now, task_id, group["name"], group["child_id"], group["input"]))
                    episode.children.append((task_id, group["name"], group["child_id"], group["input"]))

    def _schedule_new_actions(self, episode: Episode, flat: list[dict[str, Any]]) -> None:
        instance = episode.instance
        now = episode.now
        for index in range(instance["actions_seen"], len(flat)):
            action = flat[index]
            action_type = action["actionType"]
            if action_type == ActionType.WAIT_FOR_EXTERNAL_EVENT:
                continue  # matched by name, takes no id
            if action_type == ActionType.CONTINUE_AS_NEW:
                continue
            if action_type in (ActionType.CALL_ENTITY, ActionType.SIGNAL_ENTITY):
                raise NotImplementedError("durable entities are not supported by the dev host")
            event_id = episode.allocate_id()
            if action_type in (ActionType.CALL_ACTIVITY, ActionType.CALL_ACTIVITY_WITH_RETRY):
                name, input_text = action["functionName"], action.get("input")
                episode.new_events.append(h.task_scheduled(now, event_id, name, input_text))
                episode.activities.append((event_id, name, input_text))
                if action_type == ActionType.CALL_ACTIVITY_WITH_RETRY:
                    episode.retry_inserts.append((event_id, "activity", name, input_text, None,
                                                  json.dumps(action["retryOptions"]), event_id))
            elif action_type == ActionType.CALL_HTTP:
                input_text = json.dumps(action["httpRequest"])
                episode.new_events.append(h.task_scheduled(now, event_id, HTTP_ACTION_NAME, input_text))
                episode.activities.append((event_id, HTTP_ACTION_NAME, input_text))
            elif action_type == ActionType.CREATE_TIMER:
                fire_at = h.format_timestamp(h.parse_timestamp(action["fireAt"]))
                episode.new_events.append(h.timer_created(now, event_id, fire_at))
                if not action.get("isCanceled"):
                    episode.timers.append((event_id, fire_at, index))
            elif action_type in SUB_ORCHESTRATION_ACTIONS:
                name, input_text = action["functionName"], action.get("input")
                child_id = action.get("instanceId") or f"{instance['instance_id']}:{event_id}"
                episode.new_events.append(
                    h.sub_orchestration_created(now, event_id, name, child_id, input_text))
                episode.children.append((event_id, name, child_id, input_text))
                if action_type == ActionType.CALL_SUB_ORCHESTRATOR_WITH_RETRY:
                    episode.retry_inserts.append((event_id, "suborchestration", name, input_text, child_id,
                                                  json.dumps(action["retryOptions"]), event_id))
            else:
                raise NotImplementedError(f"action type {action_type} is not supported by the dev host")
        # A timer canceled after a WhenAny was won need not fire (the SDK marks it isCanceled).
        episode.canceled_timer_actions = [i for i, a in enumerate(flat)
                                          if a["actionType"] == ActionType.CREATE_TIMER
                                          and a.get("isCanceled")]

    def _commit_episode(self, episode: Episode, delivered_ids: list[int], state: dict[str, Any],
                        flat: list[dict[str, Any]], failure: str | None,
                        continue_as_new: dict[str, Any] | None) -> None:
        instance = episode.instance
        instance_id, execution_id = instance["instance_id"], instance["execution_id"]
        now = episode.now
        custom_status = state.get("customStatus")
        custom_text = json.dumps(custom_status) if custom_status is not None else instance["custom_status"]
        new_activities: list[tuple[str, str, int, str, str | None]] = []
        with self.store.transaction() as db:
            current = db.execute("SELECT status, execution_id FROM instances WHERE instance_id=?",
                                 (instance_id,)).fetchone()
            if current is None or current["status"] not in ACTIVE_STATUSES \
                    or current["execution_id"] != execution_id:
                return  # terminated or purged while the orchestrator ran: drop this episode
            for delivered_id in delivered_ids:
                db.execute("DELETE FROM inbox WHERE id=?", (delivered_id,))
            self._append_history(db, instance_id, episode.new_events)
            db.execute("UPDATE instances SET custom_status=?, last_updated_time=? WHERE instance_id=?",
                       (custom_text, now, instance_id))

            if failure is not None:
                message = f"Orchestrator function '{instance['name']}' failed: {failure}"
                output_text = json.dumps(message)
                self._append_history(db, instance_id, [h.execution_completed(now, "Failed", output_text)])
                self._finish(db, instance, "Failed", output_text, now, message)
                log.info("Instance %s (%s): Failed: %s", instance_id, instance["name"],
                         failure.splitlines()[0])
                return
            if continue_as_new is not None:
                self._continue_as_new(db, instance, continue_as_new.get("input"), now)
                log.info("Instance %s (%s): ContinuedAsNew", instance_id, instance["name"])
                return
            if state.get("isDone"):
                output_text = json.dumps(state.get("output"))
                self._append_history(db, instance_id, [h.execution_completed(now, "Completed", output_text)])
                self._finish(db, instance, "Completed", output_text, now, None)
                log.info("Instance %s (%s): Completed", instance_id, instance["name"])
                return

            for task_id, name, input_text in episode.activities:
                db.execute("INSERT INTO activities VALUES (?, ?, ?, ?, ?)",
                           (instance_id, execution_id, task_id, name, input_text))
                new_activities.append((instance_id, execution_id, task_id, name, input_text))
            for timer_id, fire_at, action_index in episode.timers:
                db.execute("INSERT INTO timers VALUES (?, ?, ?, ?, ?)",
                           (instance_id, execution_id, timer_id, fire_at, action_index))
            for group_id, kind, name, input_text, child_id, options, task_id in episode.retry_inserts:
                db.execute("INSERT INTO retries VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?, NULL)",
                           (instance_id, execution_id, group_id, kind, name, input_text, child_id, options,
                            task_id))
            for group_id, attempt, task_id, timer_id in episode.retry_updates:
                db.execute("UPDATE retries SET attempt=?, task_id=?, timer_id=? "
                           "WHERE instance_id=? AND execution_id=? AND group_id=?",
                           (attempt, task_id, timer_id, instance_id, execution_id, group_id))
            for group_id in episode.retry_deletes:
                db.execute("DELETE FROM retries WHERE instance_id=? AND execution_id=? AND group_id=?",
                           (instance_id, execution_id, group_id))
            for action_index in episode.canceled_timer_actions:
                db.execute("DELETE FROM timers WHERE instance_id=? AND execution_id=? AND action_index=?",
                           (instance_id, execution_id, action_index))
            for task_id, name, child_id, input_text in episode.children:
                self._start_child(db, instance, task_id, name, child_id, input_text, now)

            waits = Counter(a["externalEventName"] for a in flat
                            if a["actionType"] == ActionType.WAIT_FOR_EXTERNAL_EVENT)
            raised = Counter(e["Name"] for e in self.get_history_in(db, instance_id)
                             if e["EventType"] == HistoryEventType.EVENT_RAISED)
            waiting = {name: count - raised[name] for name, count in waits.items() if count > raised[name]}
            new_status = "Running"
            db.execute("UPDATE instances SET status=?, next_event_id=?, actions_seen=?, waiting=? "
                       "WHERE instance_id=?",
                       (new_status, episode.next_event_id, len(flat), json.dumps(waiting), instance_id))
        if instance["status"] == "Pending":
            log.info("Instance %s (%s): Running", instance_id, instance["name"])
        for args in new_activities:
            self._submit_activity(*args)

    # ----------------------------------------------------------------------------- state helpers (in a txn)

    @staticmethod
    def _status_in(db: sqlite3.Connection, instance_id: str) -> sqlite3.Row | None:
        return db.execute("SELECT status FROM instances WHERE instance_id=?", (instance_id,)).fetchone()

    @staticmethod
    def get_history_in(db: sqlite3.Connection, instance_id: str) -> list[h.Event]:
        rows = db.execute("SELECT event FROM history WHERE instance_id=? ORDER BY seq", (instance_id,))
        return [json.loads(r["event"]) for r in rows]

    @staticmethod
    def _append_history(db: sqlite3.Connection, instance_id: str, events: list[h.Event]) -> None:
        row = db.execute("SELECT COALESCE(MAX(seq), -1) AS seq FROM history WHERE instance_id=?",
                         (instance_id,)).fetchone()
        seq = row["seq"]
        for event in events:
            seq += 1
            db.execute("INSERT INTO history VALUES (?, ?, ?)", (instance_id, seq, json.dumps(event)))

    @staticmethod
    def _create_instance(db: sqlite3.Connection, instance_id: str, name: str, input_text: str | None,
                         version: str, parent_id: str | None, parent_execution: str | None,
                         parent_task_id: int | None) -> None:
        now = h.format_timestamp(h.utc_now())
        for table in ("history", "inbox", "activities", "timers", "retries", "instances"):
            db.execute(f"DELETE FROM {table} WHERE instance_id=?", (instance_id,))
        db.execute("INSERT INTO instances (instance_id, name, status, input, created_time, "
                   "last_updated_time, parent_instance_id, parent_execution_id, parent_task_id, "
                   "execution_id, version) "
                   "VALUES (?, ?, 'Pending', ?, ?, ?, ?, ?, ?, ?, ?)",
                   (instance_id, name, input_text, now, now, parent_id, parent_execution, parent_task_id,
                    uuid.uuid4().hex, version))

    def _start_child(self, db: sqlite3.Connection, parent: sqlite3.Row, task_id: int, name: str,
                     child_id: str, input_text: str | None, now: str) -> None:
        problem = None
        if self.index.get(name, "orchestrationTrigger") is None:
            problem = f"The function '{name}' doesn't exist, is disabled, or is not an orchestrator function."
        else:
            existing = db.execute("SELECT status FROM instances WHERE instance_id=?", (child_id,)).fetchone()
            if existing is not None and existing["status"] in ACTIVE_STATUSES:
                problem = f"An Orchestration instance with the status {existing['status']} already exists: " \
                          f"instance ID '{child_id}'."
        if problem is not None:
            event = h.sub_orchestration_failed(now, task_id, problem, "")
            db.execute("INSERT INTO inbox (instance_id, execution_id, event) VALUES (?, ?, ?)",
                       (parent["instance_id"], parent["execution_id"], json.dumps(event)))
            return
        self._create_instance(db, child_id, name, input_text, "", parent["instance_id"],
                              parent["execution_id"], task_id)
        log.info("Instance %s (%s): Pending (sub-orchestration of %s)", child_id, name, parent["instance_id"])

    def _finish(self, db: sqlite3.Connection, instance: sqlite3.Row, status: str, output_text: str | None,
                now: str, failure: str | None) -> None:
        """Move to a terminal status, drop outstanding work, and tell a parent orchestration."""
        instance_id = instance["instance_id"]
        db.execute("UPDATE instances SET status=?, output=?, last_updated_time=? WHERE instance_id=?",
                   (status, output_text, now, instance_id))
        for table in ("inbox", "activities", "timers", "retries"):
            db.execute(f"DELETE FROM {table} WHERE instance_id=?", (instance_id,))
        parent_id = instance["parent_instance_id"]
        if parent_id is None:
            return
        if failure is None:
            event = h.sub_orchestration_completed(now, instance["parent_task_id"], output_text)
        else:
            event = h.sub_orchestration_failed(now, instance["parent_task_id"], failure, "")
        db.execute("INSERT INTO inbox (instance_id, execution_id, event) VALUES (?, ?, ?)",
                   (parent_id, instance["parent_execution_id"], json.dumps(event)))

    def _continue_as_new(self, db: sqlite3.Connection, instance: sqlite3.Row, input_text: str | None,
                         now: str) -> None:
        instance_id = instance["instance_id"]
        for table in ("history", "activities", "timers", "retries"):
            db.execute(f"DELETE FROM {table} WHERE instance_id=?", (instance_id,))
        # Raised events (execution_id NULL) carry over to the new execution; completions do not.
        db.execute("DELETE FROM inbox WHERE instance_id=? AND execution_id IS NOT NULL", (instance_id,))
        db.execute("UPDATE instances SET status='Running', input=?, execution_id=?, next_event_id=0, "
                   "actions_seen=0, waiting='{}', last_updated_time=? WHERE instance_id=?",
                   (input_text, uuid.uuid4().hex, now, instance_id))

    # ----------------------------------------------------------------------------- activities

    def _submit_activity(self, instance_id: str, execution_id: str, task_id: int, name: str,
                         input_text: str | None) -> None:
        self._pool.submit(self._run_activity, instance_id, execution_id, task_id, name, input_text)

    def _run_activity(self, instance_id: str, execution_id: str, task_id: int, name: str,
                      input_text: str | None) -> None:
        started = time.monotonic()
        try:
            result_text = self._execute_activity(name, input_text)
            completion = h.task_completed(h.format_timestamp(h.utc_now()), task_id, result_text)
            outcome = "Succeeded"
        except Exception as exc:
            log.debug("activity traceback", exc_info=True)
            reason = f"Activity function '{name}' failed: {type(exc).__name__}: {exc}"
            details = "".join(traceback.format_exception(exc))
            completion = h.task_failed(h.format_timestamp(h.utc_now()), task_id, reason, details)
            outcome = f"Failed: {type(exc).__name__}: {exc}"
        log.info("Executed 'Functions.%s' (%s, instance=%s, task=%d, %.0f ms)", name, outcome, instance_id,
                 task_id, (time.monotonic() - started) * 1000)
        if self._stopping.is_set():
            return  # the host is going away: the row stays and the activity runs again on restart
        with self.store.transaction() as db:
            still_wanted = db.execute(
                "DELETE FROM activities WHERE instance_id=? AND execution_id=? AND task_id=?",
                (instance_id, execution_id, task_id)).rowcount == 1
            if still_wanted:
                db.execute("INSERT INTO inbox (instance_id, execution_id, event) VALUES (?, ?, ?)",
                           (instance_id, execution_id, json.dumps(completion)))
        self.wake()

    def _execute_activity(self, name: str, input_text: str | None) -> str:
        if name == HTTP_ACTION_NAME:
            return json.dumps(_durable_http_call(json.loads(input_text or "{}")))
        info = self.index.get(name, "activityTrigger")
        if info is None:
            raise LookupError(
                f"The function '{name}' doesn't exist, is disabled, or is not an activity function.")
        datum = meta.Datum(type="json", value=input_text if input_text is not None else "null")
        value = ActivityTriggerConverter.decode(datum, trigger_metadata={})
        kwargs: dict[str, Any] = {info.trigger_param: value}
        if info.client_param:
            kwargs[info.client_param] = self.client_json()
        result = call_user_function(info.user_function, info.name, kwargs)
        return ActivityTriggerConverter.encode(result, expected_type=None).value


def _durable_http_call(request: dict[str, Any]) -> dict[str, Any]:
    """context.call_http: a plain HTTP request made on the orchestrator's behalf (no managed identity)."""
    response = requests.request(request["method"], request["uri"], data=request.get("content"),
                                headers=request.get("headers") or {}, timeout=100)
    return {"statusCode": response.status_code, "headers": dict(response.headers), "content": response.text}
