"""Responses of the client routes: JSON, CSV, and errors that name the field at fault."""

from __future__ import annotations

import json

import azure.functions as func


class ApiError(ValueError):
    """A request the route refuses: `field` names what is wrong (a route parameter, query parameter or
    "body"), `status` is the 4xx to answer."""

    def __init__(self, field: str, problem: str, status: int = 400):
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem
        self.status = status


def json_response(body: object, status: int = 200, headers: dict | None = None) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body, default=str), status_code=status, mimetype="application/json",
                             headers=headers)


def error_response(e: ApiError) -> func.HttpResponse:
    return json_response({"error": str(e), "field": e.field}, e.status)


def csv_response(data: bytes, headers: dict | None = None) -> func.HttpResponse:
    return func.HttpResponse(data, status_code=200, mimetype="text/csv", headers=headers)


def body_limit(body: bytes, limit_mb: float, what: str) -> bytes:
    """The body, or a 400 if empty and a 413 if larger than the limit."""
    limit = int(limit_mb * 1024 * 1024)
    if not body:
        raise ApiError("body", f"empty: send {what} as the request body")
    if len(body) > limit:
        raise ApiError("body", f"{len(body)} bytes; the limit for {what} is {limit} bytes", 413)
    return body


def json_body(body: bytes, limit: int = 64 * 1024) -> dict:
    if len(body) > limit:
        raise ApiError("body", f"{len(body)} bytes; the limit is {limit}", 413)
    try:
        value = json.loads(body or b"{}")
    except ValueError as e:
        raise ApiError("body", f"malformed JSON ({e})") from None
    if not isinstance(value, dict):
        raise ApiError("body", "must be a JSON object")
    return value


def flag(params: dict, name: str) -> bool:
    """A boolean query parameter: absent, true/false or 1/0."""
    raw = params.get(name)
    if raw is None or raw == "":
        return False
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise ApiError(name, f"{raw!r} is not true or false")
