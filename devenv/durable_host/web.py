"""Tiny request/response types shared by the HTTP front end and its handlers."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class WebRequest:
    method: str
    path: str  # percent-decoded path, without query string
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    origin: str  # scheme://host:port the client used, for absolute URLs in responses

    @property
    def url(self) -> str:
        return self.origin + self.path


@dataclass
class WebResponse:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def json_response(status: int, value: Any, headers: dict[str, str] | None = None) -> WebResponse:
    return WebResponse(status, json.dumps(value).encode(), {"Content-Type": "application/json; charset=utf-8",
                                                             **(headers or {})})


def text_response(status: int, text: str) -> WebResponse:
    return WebResponse(status, text.encode(), {"Content-Type": "text/plain; charset=utf-8"})
