"""The stand-in's HTTPS server: ARM containerGroups routes (api-version 2023-05-01) plus /_standin/.

Routes (paths are case-insensitive, like ARM's):
  (P = /providers/Microsoft.ContainerInstance)
  PUT|GET|PATCH|DELETE /subscriptions/S/resourceGroups/RG/P/containerGroups/N
  POST  .../containerGroups/N/stop | /start | /restart
  GET   .../containerGroups/N/containers/C/logs?tail=N      -> {"content": ...}
  GET   /subscriptions/S/resourceGroups/RG/P/containerGroups
  GET   /subscriptions/S/P/containerGroups
  GET   /subscriptions/S/P/locations/L/operations/ID         (the Azure-AsyncOperation URL)
  GET|POST|DELETE /_standin/faults      list, add, clear faults (see faults.py)
  GET|DELETE      /_standin/groups      group names; delete every group (kills the processes)
  GET             /_standin/groups/N/request    the PUT body as received (secrets redacted)
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import socket
import ssl
import sys
import threading
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import trustme

from devenv.aci_standin.faults import FaultError, Faults
from devenv.aci_standin.store import DEFAULT_PULL_SECONDS, ArmError, GroupStore

API_VERSION = "2023-05-01"
_SUB = r"/subscriptions/(?P<sub>[^/]+)"
_RG = _SUB + r"/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.ContainerInstance/containerGroups"
_GROUP = _RG + r"/(?P<name>[^/]+)"
_OPERATION = _SUB + (
    r"/providers/Microsoft\.ContainerInstance/locations/(?P<loc>[^/]+)/operations/(?P<op>[^/]+)"
)


def _route(pattern: str) -> re.Pattern[str]:
    return re.compile(f"^{pattern}/?$", re.IGNORECASE)


GROUP_ROUTE = _route(_GROUP)
GROUP_ACTION_ROUTE = _route(_GROUP + r"/(?P<action>stop|start|restart)")
LOGS_ROUTE = _route(_GROUP + r"/containers/(?P<container>[^/]+)/logs")
RG_LIST_ROUTE = _route(_RG)
SUB_LIST_ROUTE = _route(_SUB + r"/providers/Microsoft\.ContainerInstance/containerGroups")
OPERATION_ROUTE = _route(_OPERATION)
RECEIVED_ROUTE = _route(r"/_standin/groups/(?P<name>[^/]+)/request")


class Answer(Exception):
    """Raised by a handler to send this response at once."""

    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


class StandinServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state_dir: Path, tls: ssl.SSLContext,
                 pull_seconds: float = DEFAULT_PULL_SECONDS) -> None:
        host = address[0]
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__(address, StandinHandler)
        # No handshake in accept(): each handler thread does its own, so one slow client can't block.
        self.socket = tls.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)
        self.state_dir = state_dir
        self.store = GroupStore(state_dir, pull_seconds)
        self.faults = Faults()
        self.access_log = open(state_dir / "access.log", "a", buffering=1)
        self.log_lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        host, port = self.server_address[:2]
        shown = f"[{host}]" if ":" in host else host
        return f"https://{shown}:{port}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        # TLS handshakes aborted by clients and the like: note them, don't print tracebacks.
        exc = sys.exc_info()[1]
        self.log(f"{client_address} connection error: {exc!r}")

    def log(self, line: str) -> None:
        with self.log_lock:
            self.access_log.write(line + "\n")


class StandinHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's connection pool expects
    server: StandinServer

    def do_GET(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        self.server.log(f"{self.address_string()} {format % args}")

    # ---- dispatch ------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        self.query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        self.body = self._read_body()
        try:
            if url.path.startswith("/_standin/"):
                self._control(url.path)
            else:
                self._arm(url.path)
            raise Answer(404, arm_error("NotFound", f"No route for {self.command} {url.path}"))
        except Answer as answer:
            self._send(answer.status, answer.body, answer.headers)
        except ArmError as exc:
            self._send(exc.status, arm_error(exc.code, exc.message))
        except Exception as exc:  # a bug in the stand-in: answer like ARM would, and keep serving
            self.server.log(f"internal error on {self.command} {self.path}: {exc!r}")
            self._send(500, arm_error("InternalServerError", f"stand-in error: {exc!r}"))

    def _arm(self, path: str) -> None:
        if not self.headers.get("Authorization", "").startswith("Bearer "):
            raise Answer(401, arm_error("AuthenticationFailed", "Authentication failed. The "
                                        "'Authorization' header is missing."))
        if "api-version" not in self.query:
            raise Answer(400, arm_error("MissingApiVersionParameter",
                                        "The api-version query parameter (?api-version=) is required."))
        routes: list[tuple[re.Pattern[str], Callable[[dict[str, str]], None]]] = [
            (GROUP_ROUTE, self._group),
            (GROUP_ACTION_ROUTE, self._group_action),
            (LOGS_ROUTE, self._logs),
            (RG_LIST_ROUTE, self._list),
            (SUB_LIST_ROUTE, self._list),
            (OPERATION_ROUTE, self._operation),
        ]
        for pattern, handler in routes:
            match = pattern.match(path)
            if match:
                params = match.groupdict()
                fault = self._http_fault(params)
                if fault is None:
                    handler(params)
                    return
                if not fault.get("after"):
                    raise fault_answer(fault)
                try:  # carried out, then the answer is lost: the client sees only the error
                    handler(params)
                except (Answer, ArmError):
                    pass
                raise fault_answer(fault)

    def _http_fault(self, params: dict[str, str]) -> dict[str, Any] | None:
        group = params.get("name")
        if params.get("op"):
            group = self.server.store.group_of_operation(params["op"])
        return self.server.faults.take_http(self.command, group)


    # ---- ARM handlers --------------------------------------------------------------------------

    def _group(self, p: dict[str, str]) -> None:
        store = self.server.store
        if self.command == "GET":
            raise Answer(200, store.get(p["sub"], p["rg"], p["name"]))
        if self.command == "PUT":
            self._create(p)
        if self.command == "PATCH":
            tags = self._json_body().get("tags") or {}
            raise Answer(200, store.update_tags(p["sub"], p["rg"], p["name"], tags))
        if self.command == "DELETE":
            body = store.delete(p["sub"], p["rg"], p["name"])
            raise Answer(204) if body is None else Answer(200, body)
        raise Answer(405, arm_error("MethodNotAllowed", f"{self.command} is not allowed here"))

    def _create(self, p: dict[str, str]) -> None:
        store = self.server.store
        body = self._json_body()
        fault = None
        if p["name"] not in store.names():
            fault = self.server.faults.take_container(p["name"])
        created, group, operation_id = store.create_or_update(p["sub"], p["rg"], p["name"], body, fault)
        if not created:
            raise Answer(200, group)
        raise Answer(201, group, {"Azure-AsyncOperation": self._operation_url(p, group, operation_id)})

    def _group_action(self, p: dict[str, str]) -> None:
        if self.command != "POST":
            raise Answer(405, arm_error("MethodNotAllowed", f"{self.command} is not allowed here"))
        store = self.server.store
        if p["action"].lower() == "stop":
            store.stop(p["sub"], p["rg"], p["name"])
            raise Answer(204)
        operation_id = store.start(p["sub"], p["rg"], p["name"])
        group = store.get(p["sub"], p["rg"], p["name"])
        raise Answer(202, None, {"Azure-AsyncOperation": self._operation_url(p, group, operation_id)})

    def _operation_url(self, p: dict[str, str], group: dict[str, Any], operation_id: str) -> str:
        """Absolute, on this stand-in, like ARM's .../locations/L/operations/ID."""
        location = group["location"] or "local"
        return (f"{self.server.endpoint}/subscriptions/{p['sub']}/providers/Microsoft.ContainerInstance"
                f"/locations/{location}/operations/{operation_id}?api-version={API_VERSION}")

    def _logs(self, p: dict[str, str]) -> None:
        self._only("GET")
        tail = self.query.get("tail")
        try:
            lines = int(tail) if tail is not None else None
        except ValueError:
            raise Answer(400, arm_error("InvalidParameter", f"tail is not an integer: {tail!r}")) from None
        content = self.server.store.logs(p["sub"], p["rg"], p["name"], p["container"], lines)
        raise Answer(200, {"content": content})

    def _list(self, p: dict[str, str]) -> None:
        self._only("GET")
        raise Answer(200, {"value": self.server.store.list(p["sub"], p.get("rg"))})

    def _operation(self, p: dict[str, str]) -> None:
        self._only("GET")
        raise Answer(200, self.server.store.operation(p["op"]))

    # ---- control API ---------------------------------------------------------------------------

    def _control(self, path: str) -> None:
        path = path.rstrip("/")
        server = self.server
        if path == "/_standin/faults":
            if self.command == "GET":
                raise Answer(200, {"faults": server.faults.list()})
            if self.command == "POST":
                try:
                    raise Answer(201, server.faults.add(self._json_body()))
                except FaultError as exc:
                    raise Answer(400, arm_error("InvalidFault", str(exc))) from None
            if self.command == "DELETE":
                server.faults.clear()
                raise Answer(204)
        if path == "/_standin/groups":
            if self.command == "GET":
                raise Answer(200, {"groups": server.store.names()})
            if self.command == "DELETE":
                raise Answer(200, {"deleted": server.store.delete_all()})
        match = RECEIVED_ROUTE.match(path)
        if match and self.command == "GET":
            raise Answer(200, server.store.received(match["name"]))

    # ---- plumbing ------------------------------------------------------------------------------

    def _only(self, method: str) -> None:
        if self.command != method:
            raise Answer(405, arm_error("MethodNotAllowed", f"{self.command} is not allowed here"))

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _json_body(self) -> dict[str, Any]:
        try:
            body = json.loads(self.body or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise Answer(400, arm_error("InvalidRequestContent", "The request content is not a JSON object."))
        return body

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("x-ms-request-id", str(uuid.uuid4()))
        if data:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if data:
            self.wfile.write(data)


def fault_answer(fault: dict[str, Any]) -> Answer:
    headers = {}
    if fault.get("retry_after") is not None:
        headers["Retry-After"] = str(fault["retry_after"])
    code = fault.get("code") or "InjectedFault"
    message = fault.get("message") or f"Injected by the stand-in (fault {fault['id']})."
    return Answer(int(fault["status"]), arm_error(code, message), headers)


def arm_error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


# ---- start-up ------------------------------------------------------------------------------------


def tls_context(state_dir: Path) -> ssl.SSLContext:
    """Reuse DIR/ca.pem and DIR/server.pem when present (clients keep trusting the CA); else make them."""
    ca_file, server_file = state_dir / "ca.pem", state_dir / "server.pem"
    if not (ca_file.exists() and server_file.exists()):
        ca = trustme.CA(organization_name="ACI stand-in (development only)")
        cert = ca.issue_cert("127.0.0.1", "localhost", "::1")
        cert.private_key_and_cert_chain_pem.write_to_path(str(server_file))
        os.chmod(server_file, 0o600)
        ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(server_file))
    return context


def require_loopback(host: str) -> None:
    # The stand-in runs whatever command a request asks for: it must never listen beyond this machine.
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise SystemExit(f"the ACI stand-in listens on loopback addresses only, not {host!r}")


def bind(state_dir: Path, host: str, port: int, tls: ssl.SSLContext,
         pull_seconds: float = DEFAULT_PULL_SECONDS) -> StandinServer:
    """Port 0 means: the port of the previous run in this state dir if it is free, else any."""
    previous = _read_port(state_dir / "port")
    if port == 0 and previous:
        try:
            return StandinServer((host, previous), state_dir, tls, pull_seconds)
        except OSError:
            pass
    return StandinServer((host, port), state_dir, tls, pull_seconds)


def _read_port(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def serve(state_dir: Path, host: str = "127.0.0.1", port: int = 0,
          pull_seconds: float = DEFAULT_PULL_SECONDS) -> None:
    require_loopback(host)
    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    endpoint_file = state_dir / "endpoint"
    endpoint_file.unlink(missing_ok=True)
    server = bind(state_dir, host, port, tls_context(state_dir), pull_seconds)
    (state_dir / "port").write_text(f"{server.server_address[1]}\n")

    def shut_down(signum: int, _frame: Any) -> None:
        # shutdown() waits for serve_forever to return, so it must run in another thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, shut_down)
    signal.signal(signal.SIGINT, shut_down)
    # Listening already (bind() activates the socket): tell clients where, atomically.
    tmp = endpoint_file.with_name(".endpoint.tmp")
    tmp.write_text(server.endpoint + "\n")
    os.replace(tmp, endpoint_file)
    server.log(f"listening on {server.endpoint}; groups: {server.store.names()}")
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        endpoint_file.unlink(missing_ok=True)
        server.server_close()
        server.log("stopped; container processes keep running")
