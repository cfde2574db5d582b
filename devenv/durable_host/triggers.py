"""Non-HTTP triggers: timer schedules, blob polling, and Core Tools' admin endpoint that runs one now.

What the functions receive is what the Functions host sends, decoded by the azure-functions library's own
converters (TimerRequestConverter, BlobConverter), so the app meets the shapes it meets in Azure:
  - timer: {"IsPastDue", "Schedule", "ScheduleStatus": {"Last", "Next", "LastUpdated"}} where the status is
    the one recorded BEFORE this invocation: Next is the occurrence now firing, Last the one before
    (WebJobs' TimerListener hands the function its current status and records the new one afterwards).
  - blob: the content as bytes, with trigger metadata BlobTrigger (container/name), Uri, Metadata and
    Properties, the storage extension's BlobProperties serialized by Json.NET: ContentLength (not Length,
    which is why InputStream.length reads both), ContentType, LastModified, CreatedOn, ContentHash (base64),
    BlobType as a number, and ETag as {}: Azure.ETag is a struct without public properties, so Json.NET
    writes an empty object. Code that reads the ETag from the properties gets no ETag.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import azure.functions as func
from azure.functions import meta
from azure.functions.blob import BlobConverter, InputStream
from azure.functions.durable_functions import ActivityTriggerConverter
from azure.functions.timer import TimerRequestConverter

from . import history as h
from .discovery import FunctionIndex, FunctionInfo, resolve_settings
from .invoker import call_user_function
from .ncrontab import Schedule
from .store import Store

log = logging.getLogger("devenv.durable_host")
# A timer is "past due" when it runs this much later than planned (the host's own delay, a restart...).
PAST_DUE_AFTER_SECONDS = 2.0


class TriggerRunner:
    """Invokes timer, blob and other non-HTTP functions on a small pool, with one log line each."""

    def __init__(self, client_json: Callable[[], str], workers: int = 4) -> None:
        self.client_json = client_json
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="trigger")

    def submit(self, info: FunctionInfo, trigger_value: Any, why: str,
               after: Callable[[bool], None] | None = None) -> None:
        self.pool.submit(self.invoke, info, trigger_value, why, after)

    def invoke(self, info: FunctionInfo, trigger_value: Any, why: str,
               after: Callable[[bool], None] | None = None) -> bool:
        kwargs = {info.trigger_param: trigger_value}
        if info.client_param:
            kwargs[info.client_param] = self.client_json()
        started = time.monotonic()
        ok = True
        try:
            call_user_function(info.user_function, info.name, kwargs)
            log.info("Executed 'Functions.%s' (Succeeded, %s, %.0f ms)", info.name, why,
                     (time.monotonic() - started) * 1000)
        except Exception as exc:
            ok = False
            log.exception("Executed 'Functions.%s' (Failed, %s): %s", info.name, why, exc)
        if after is not None:
            after(ok)
        return ok

    def stop(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def timer_request(past_due: bool, last: datetime | None = None,
                  next_: datetime | None = None) -> func.TimerRequest:
    info = {"IsPastDue": past_due, "Schedule": {"AdjustForDST": True},
            "ScheduleStatus": {"Last": last.isoformat() if last else None,
                               "Next": next_.isoformat() if next_ else None,
                               "LastUpdated": h.utc_now().isoformat()}}
    return TimerRequestConverter.decode(meta.Datum(type="json", value=json.dumps(info)), trigger_metadata={})


def admin_trigger_value(info: FunctionInfo, input_text: str,
                        blob_reader: Callable[[FunctionInfo, str], Any]) -> Any:
    """What POST /admin/functions/{name} {"input": ...} passes to the function, per trigger type."""
    if info.trigger_type == "timerTrigger":
        # Core Tools ignores the input here; the dev host takes a timer info object (IsPastDue, ScheduleStatus)
        # when one is given, so that tests can fire an occurrence other than "now".
        given = json.loads(input_text) if input_text.strip().startswith("{") else None
        if isinstance(given, dict):
            return TimerRequestConverter.decode(meta.Datum(type="json", value=json.dumps(given)), trigger_metadata={})
        return timer_request(past_due=False)
    if info.trigger_type == "blobTrigger":
        return blob_reader(info, input_text)
    if info.trigger_type == "activityTrigger":
        text = input_text if input_text else "null"
        return ActivityTriggerConverter.decode(meta.Datum(type="string", value=text), trigger_metadata={})
    return input_text


class TimerScheduler:
    """Fires each timer trigger at its next NCRONTAB occurrence (UTC, as in Azure) while the host runs."""

    def __init__(self, index: FunctionIndex, runner: TriggerRunner) -> None:
        self.runner = runner
        self.timers: list[tuple[FunctionInfo, Schedule]] = []
        for info in index.by_trigger("timerTrigger"):
            self.timers.append((info, Schedule.parse(resolve_settings(info.trigger["schedule"]))))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="timer-triggers", daemon=True)

    def start(self) -> None:
        if self.timers:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        now = h.utc_now()
        due = {info.name: schedule.next_after(now) for info, schedule in self.timers}
        last: dict[str, datetime | None] = {info.name: None for info, _ in self.timers}
        for info, _ in self.timers:
            if info.trigger.get("runOnStartup"):
                self.runner.submit(info, timer_request(False, None, due[info.name]), "run on startup")
        while not self._stop.is_set():
            now = h.utc_now()
            for info, schedule in self.timers:
                planned = due[info.name]
                if planned <= now:
                    past_due = (now - planned).total_seconds() > PAST_DUE_AFTER_SECONDS
                    following = schedule.next_after(now)
                    # The status as recorded before this run: Next is the occurrence firing now.
                    self.runner.submit(info, timer_request(past_due, last[info.name], planned),
                                       f"timer {planned:%H:%M:%S}")
                    last[info.name], due[info.name] = planned, following
            wait = min((d - h.utc_now()).total_seconds() for d in due.values())
            self._stop.wait(max(0.05, min(wait, 1.0)))


@dataclass(frozen=True)
class BlobBinding:
    container: str
    prefix: str
    name_pattern: re.Pattern[str]
    connection_setting: str

    @classmethod
    def from_trigger(cls, trigger: dict[str, Any]) -> BlobBinding:
        path = resolve_settings(trigger["path"]).strip("/")
        container, _, blob_pattern = path.partition("/")
        prefix = blob_pattern.split("{", 1)[0]
        regex = ""
        for piece in re.split(r"(\{[^}]+\})", blob_pattern):
            regex += f"(?P<{piece[1:-1]}>.+)" if piece.startswith("{") else re.escape(piece)
        connection = trigger.get("connection") or "AzureWebJobsStorage"
        return cls(container, prefix, re.compile(regex or ".+"), connection)

    def connection_string(self) -> str:
        for name in (self.connection_setting, f"AzureWebJobs{self.connection_setting}"):
            if os.environ.get(name):
                return os.environ[name]
        raise KeyError(f"app setting {self.connection_setting!r} (blob trigger connection) is not set")


def read_blob(binding: BlobBinding, blob_name: str) -> InputStream:
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(binding.connection_string())
    blob = service.get_blob_client(binding.container, blob_name)
    downloader = blob.download_blob()
    data = downloader.readall()
    return BlobConverter.decode(meta.Datum(type="bytes", value=data),
                                trigger_metadata=blob_trigger_metadata(binding.container, blob_name, blob.url,
                                                                       downloader.properties))


def blob_trigger_metadata(container: str, blob_name: str, url: str, properties: Any) -> dict[str, meta.Datum]:
    """The trigger metadata the Functions host sends with a blob trigger (see the module docstring)."""
    settings = properties.content_settings
    host_properties = {
        "LastModified": properties.last_modified.isoformat(),
        "CreatedOn": properties.creation_time.isoformat() if properties.creation_time else None,
        "BlobType": 0,  # BlobType.Block, an enum Json.NET writes as its number
        "ContentLength": properties.size,
        "ContentType": settings.content_type,
        "ContentEncoding": settings.content_encoding,
        "ContentHash": base64.b64encode(settings.content_md5).decode() if settings.content_md5 else None,
        "ETag": {},  # Azure.ETag: no public properties, so Json.NET writes {}
        "Metadata": dict(properties.metadata or {}),
    }
    return {
        "BlobTrigger": meta.Datum(type="string", value=f"{container}/{blob_name}"),
        "Uri": meta.Datum(type="string", value=url),
        "Properties": meta.Datum(type="json", value=json.dumps(host_properties)),
        "Metadata": meta.Datum(type="json", value=json.dumps(dict(properties.metadata or {}))),
    }


def read_blob_for_admin(info: FunctionInfo, input_text: str) -> InputStream:
    """Core Tools' admin input for a blob trigger is the blob path, `container/name`."""
    binding = BlobBinding.from_trigger(info.trigger)
    blob_name = input_text.strip("/")
    if blob_name.startswith(binding.container + "/"):
        blob_name = blob_name[len(binding.container) + 1:]
    return read_blob(binding, blob_name)


class BlobPoller:
    """Polls each blob trigger's container and invokes the function once per new (blob, ETag).

    In Azure the production app uses the EventGrid source; locally polling gives the same effect. What was
    delivered is remembered in SQLite, so a restarted host does not fire again.
    """

    def __init__(self, index: FunctionIndex, runner: TriggerRunner, store: Store,
                 interval: float = 2.0) -> None:
        self.runner = runner
        self.store = store
        self.interval = interval
        self.blobs = [(info, BlobBinding.from_trigger(info.trigger))
                      for info in index.by_trigger("blobTrigger")]
        self._in_flight: set[tuple[str, str, str]] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="blob-triggers", daemon=True)
        self._warned: set[str] = set()

    def start(self) -> None:
        if self.blobs:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            for info, binding in self.blobs:
                try:
                    self._poll(info, binding)
                except Exception as exc:
                    if info.name not in self._warned:  # e.g. Azurite not up yet, or no container
                        log.warning("blob trigger %s: cannot list %s: %s", info.name, binding.container, exc)
                        self._warned.add(info.name)
            self._stop.wait(self.interval)

    def _poll(self, info: FunctionInfo, binding: BlobBinding) -> None:
        from azure.core.exceptions import ResourceNotFoundError
        from azure.storage.blob import BlobServiceClient

        service = BlobServiceClient.from_connection_string(binding.connection_string())
        try:
            listed = [(b.name, b.etag) for b in service.get_container_client(binding.container)
                      .list_blobs(name_starts_with=binding.prefix or None)]
        except ResourceNotFoundError:
            return
        self._warned.discard(info.name)
        for blob_name, etag in listed:
            if not binding.name_pattern.fullmatch(blob_name):
                continue
            key = (info.name, blob_name, etag)
            with self._lock:
                if key in self._in_flight:
                    continue
            if self.store.query("SELECT 1 FROM blob_receipts WHERE function=? AND blob=? AND etag=?", key):
                continue
            try:
                stream = read_blob(binding, blob_name)
            except ResourceNotFoundError:
                continue  # deleted since the listing
            with self._lock:
                self._in_flight.add(key)
            self.runner.submit(info, stream, f"blob {binding.container}/{blob_name}",
                               after=lambda ok, key=key: self._delivered(key))

    def _delivered(self, key: tuple[str, str, str]) -> None:
        # Recorded after the invocation (at-least-once, as in Azure): a host killed mid-run delivers again.
        with self.store.transaction() as db:
            db.execute("INSERT OR IGNORE INTO blob_receipts VALUES (?, ?, ?, ?)",
                       (*key, h.format_timestamp(h.utc_now())))
        with self._lock:
            self._in_flight.discard(key)
