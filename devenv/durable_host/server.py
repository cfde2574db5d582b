"""The host's single HTTP port: /api/* functions, the durable API and Core Tools' admin endpoints."""

from __future__ import annotations

import logging
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, urlsplit

from .web import WebRequest, WebResponse, text_response

log = logging.getLogger("devenv.durable_host")


class HostHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # listen() backlog: socketserver's default of 5 resets connections under a burst of concurrent clients
    # (a real host sits behind a front end that queues them). The kernel caps it at net.core.somaxconn.
    request_queue_size = 1024

    def __init__(self, port: int, handle: Callable[[WebRequest], WebResponse]) -> None:
        self.handle_request_object = handle
        super().__init__(("127.0.0.1", port), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: HostHttpServer
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's aiohttp session expects of a real host

    def _serve(self) -> None:
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        host = self.headers.get("Host") or f"127.0.0.1:{self.server.server_address[1]}"
        request = WebRequest(method=self.command.upper(), path=unquote(split.path) or "/",
                             query=dict(reversed(parse_qsl(split.query, keep_blank_values=True))),
                             headers={k: v for k, v in self.headers.items()}, body=body, origin=f"http://{host}")
        try:
            response = self.server.handle_request_object(request)
        except Exception as exc:
            log.exception("error serving %s %s", self.command, self.path)
            response = text_response(500, f"dev host error: {exc}")
        self.send_response(response.status)
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s %s", self.address_string(), format % args)
