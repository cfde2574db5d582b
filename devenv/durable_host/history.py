"""History events in the exact shape the Durable Functions Python SDK replays (its models/history/HistoryEvent.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from azure.durable_functions.models.history import HistoryEventType

# The SDK parses Timestamp/FireAt with dateutil; the host writes this one format everywhere.
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
STATUS_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

Event = dict[str, Any]


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def parse_timestamp(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def status_time(text: str) -> str:
    """Instance timestamps as the real status API prints them (second precision, Z)."""
    return parse_timestamp(text).strftime(STATUS_TIME_FORMAT)


def make_event(event_type: HistoryEventType, timestamp: str, event_id: int = -1, **fields: Any) -> Event:
    return {"EventType": int(event_type), "EventId": event_id, "IsPlayed": False, "Timestamp": timestamp,
            **fields}


def orchestrator_started(timestamp: str) -> Event:
    return make_event(HistoryEventType.ORCHESTRATOR_STARTED, timestamp)


def orchestrator_completed(timestamp: str) -> Event:
    return make_event(HistoryEventType.ORCHESTRATOR_COMPLETED, timestamp)


def execution_started(timestamp: str, name: str, input_text: str | None, version: str,
                      parent_instance_id: str | None) -> Event:
    # Version is mandatory: the SDK reads ExecutionStarted.Version as an attribute.
    return make_event(HistoryEventType.EXECUTION_STARTED, timestamp, Name=name, Input=input_text,
                      Version=version, ParentInstance=parent_instance_id)


def task_scheduled(timestamp: str, event_id: int, name: str, input_text: str | None) -> Event:
    return make_event(HistoryEventType.TASK_SCHEDULED, timestamp, event_id, Name=name, Input=input_text)


def task_completed(timestamp: str, task_id: int, result_text: str | None) -> Event:
    return make_event(HistoryEventType.TASK_COMPLETED, timestamp, TaskScheduledId=task_id, Result=result_text)


def task_failed(timestamp: str, task_id: int, reason: str, details: str) -> Event:
    return make_event(HistoryEventType.TASK_FAILED, timestamp, TaskScheduledId=task_id, Reason=reason,
                      Details=details)


def timer_created(timestamp: str, event_id: int, fire_at: str) -> Event:
    return make_event(HistoryEventType.TIMER_CREATED, timestamp, event_id, FireAt=fire_at)


def timer_fired(timestamp: str, timer_id: int, fire_at: str) -> Event:
    return make_event(HistoryEventType.TIMER_FIRED, timestamp, TimerId=timer_id, FireAt=fire_at)


def sub_orchestration_created(timestamp: str, event_id: int, name: str, instance_id: str,
                              input_text: str | None) -> Event:
    return make_event(HistoryEventType.SUB_ORCHESTRATION_INSTANCE_CREATED, timestamp, event_id, Name=name,
                      InstanceId=instance_id, Input=input_text)


def sub_orchestration_completed(timestamp: str, task_id: int, result_text: str | None) -> Event:
    return make_event(HistoryEventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED, timestamp,
                      TaskScheduledId=task_id, Result=result_text)


def sub_orchestration_failed(timestamp: str, task_id: int, reason: str, details: str) -> Event:
    return make_event(HistoryEventType.SUB_ORCHESTRATION_INSTANCE_FAILED, timestamp, TaskScheduledId=task_id,
                      Reason=reason, Details=details)


def event_raised(timestamp: str, name: str, input_text: str | None) -> Event:
    return make_event(HistoryEventType.EVENT_RAISED, timestamp, Name=name, Input=input_text)


def execution_completed(timestamp: str, status: str, result_text: str | None) -> Event:
    return make_event(HistoryEventType.EXECUTION_COMPLETED, timestamp, OrchestrationStatus=status,
                      Result=result_text)


def execution_terminated(timestamp: str, reason: str) -> Event:
    return make_event(HistoryEventType.EXECUTION_TERMINATED, timestamp, Input=reason)
