"""DevHost: plays the Functions host's part for a v2-model Durable Functions app, in-process."""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

from .client_binding import WEBHOOK_PATH, durable_client_json
from .discovery import FunctionIndex, import_app, index_app
from .durable_api import DurableApi
from .engine import OrchestrationEngine
from .http_functions import ROUTE_PREFIX, HttpFunctions
from .server import HostHttpServer
from .store import Store
from .triggers import BlobPoller, TimerScheduler, TriggerRunner, admin_trigger_value, read_blob_for_admin
from .web import WebRequest, WebResponse, json_response, text_response

log = logging.getLogger("devenv.durable_host")
REPO_ROOT = Path(__file__).resolve().parents[2]


def load_settings(path: Path) -> None:
    """Load local.settings.json `Values` into the environment (existing variables win)."""
    values = json.loads(path.read_text()).get("Values", {})
    for key, value in values.items():
        os.environ.setdefault(key, str(value))


class DevHost:
    def __init__(self, app_module: str, state_dir: Path, port: int = 0, *, app_dir: Path = REPO_ROOT,
                 task_hub: str = "TestHubName", activity_workers: int = 8, schedule_timers: bool = True,
                 blob_poll_interval: float = 2.0, completions_per_episode: int = 1, function_key: str = "") -> None:
        self.app_module = app_module
        self.state_dir = Path(state_dir)
        self.index: FunctionIndex = index_app(import_app(app_module, app_dir))
        self.task_hub = task_hub
        self.store = Store(self.state_dir)
        self.server = HostHttpServer(port, self.handle)
        self.port = self.server.server_address[1]
        self.engine = OrchestrationEngine(self.store, self.index, self.client_json, activity_workers,
                                          completions_per_episode)
        self.durable_api = DurableApi(self.engine, task_hub)
        self.http_functions = HttpFunctions(self.index, self.client_json, function_key)
        self.triggers = TriggerRunner(self.client_json)
        self.timers = TimerScheduler(self.index, self.triggers) if schedule_timers else None
        self.blobs = BlobPoller(self.index, self.triggers, self.store, blob_poll_interval)
        self._server_thread = threading.Thread(target=self.server.serve_forever, name="http", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client_json(self) -> str:
        return durable_client_json(self.base_url, self.task_hub)

    def start(self) -> DevHost:
        self._server_thread.start()
        self.engine.start()
        if self.timers is not None:
            self.timers.start()
        self.blobs.start()
        log.info("Durable dev host for %s listening on %s (state in %s)", self.app_module, self.base_url,
                 self.store.path)
        for line in self.http_functions.describe(self.base_url):
            log.info("  %s", line)
        for info in self.index.functions.values():
            if info.trigger_type != "httpTrigger":
                log.info("  %s: %s", info.name, info.trigger_type)
        return self

    def stop(self) -> None:
        if self.timers is not None:
            self.timers.stop()
        self.blobs.stop()
        self.server.shutdown()
        self.server.server_close()
        self.engine.stop()
        self.triggers.stop()
        self.store.close()

    def __enter__(self) -> DevHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------------------------------ routing

    def handle(self, request: WebRequest) -> WebResponse:
        path = request.path
        if path == WEBHOOK_PATH or path.startswith(WEBHOOK_PATH + "/"):
            return self.durable_api.handle(request)
        if path == ROUTE_PREFIX or path.startswith(ROUTE_PREFIX + "/"):
            return self.http_functions.handle(request)
        if path == "/admin/host/status":
            return json_response(200, {"state": "Running", "version": "durable-dev-host"})
        if path.startswith("/admin/functions/") and request.method == "POST":
            return self.run_function_now(path.rsplit("/", 1)[-1], request)
        if path == "/":
            return text_response(200, "Durable Functions dev host is running.")
        return WebResponse(404)

    def run_function_now(self, name: str, request: WebRequest) -> WebResponse:
        """Core Tools' POST /admin/functions/{name} {"input": "..."}: run a non-HTTP function now (202)."""
        info = self.index.get(name)
        if info is None:
            return WebResponse(404)
        if info.trigger_type in ("httpTrigger", "orchestrationTrigger", "entityTrigger"):
            return text_response(400, f"{name} is a {info.trigger_type} function; it cannot be run this way")
        try:
            body = json.loads(request.body) if request.body.strip() else {}
            input_text = str(body.get("input") or "")
            value = admin_trigger_value(info, input_text, read_blob_for_admin)
        except Exception as exc:
            return text_response(400, f"bad input for {name}: {exc}")
        self.triggers.submit(info, value, "admin request")
        return WebResponse(202)
