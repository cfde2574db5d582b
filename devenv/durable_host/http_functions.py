"""HTTP-triggered functions at /api/<route>, invoked the way Core Tools does it."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable
from urllib.parse import urlencode

import azure.functions as func

from .discovery import FunctionIndex, FunctionInfo
from .invoker import call_user_function
from .routes import RouteTemplate, compile_route
from .web import WebRequest, WebResponse, text_response

log = logging.getLogger("devenv.durable_host")
ROUTE_PREFIX = "/api"


class HttpFunctions:
    """function_key: when set, routes whose authLevel is not anonymous need it, as the Functions host does:
    in the `x-functions-key` header or the `code` query parameter, else 401 with an empty body (Azure docs,
    "Azure Functions HTTP trigger", Authorization level / API key authorization). Core Tools enforces no
    keys locally; this host does only when given one (--function-key-env), so clients can be tested against it."""

    def __init__(self, index: FunctionIndex, client_json: Callable[[], str], function_key: str = "") -> None:
        self.client_json = client_json
        self.function_key = function_key
        routes: list[tuple[RouteTemplate, FunctionInfo]] = []
        for info in index.by_trigger("httpTrigger"):
            routes.append((compile_route(info.trigger.get("route") or info.name), info))
        # More literal segments first, so "orders/latest" wins over "orders/{id}".
        self.routes = sorted(routes, key=lambda r: -r[0].literal_segments)

    def describe(self, base_url: str) -> list[str]:
        lines = []
        for template, info in self.routes:
            methods = ",".join(info.trigger.get("methods") or ["*"])
            lines.append(f"{info.name}: [{methods}] {base_url}{ROUTE_PREFIX}/{template.template}")
        return lines

    def handle(self, request: WebRequest) -> WebResponse:
        path = request.path[len(ROUTE_PREFIX):]
        for template, info in self.routes:
            route_params = template.match(path)
            if route_params is None:
                continue
            methods = [m.upper() for m in info.trigger.get("methods") or []]
            if methods and request.method not in methods:
                continue
            if not self._authorized(info, request):
                return WebResponse(401)
            return self._invoke(info, request, route_params)
        return WebResponse(404)

    def _authorized(self, info: FunctionInfo, request: WebRequest) -> bool:
        if not self.function_key or str(info.trigger.get("authLevel", "")).lower() == "anonymous":
            return True
        header = next((v for k, v in request.headers.items() if k.lower() == "x-functions-key"), None)
        given = header if header is not None else request.query.get("code", "")
        return hmac.compare_digest(given.encode(), self.function_key.encode())

    def _invoke(self, info: FunctionInfo, request: WebRequest, route_params: dict[str, str]) -> WebResponse:
        http_request = func.HttpRequest(request.method, request.url + _query_string(request),
                                        headers=request.headers, params=request.query,
                                        route_params=route_params, body=request.body)
        kwargs = {info.trigger_param: http_request}
        if info.client_param:
            kwargs[info.client_param] = self.client_json()
        started = time.monotonic()
        try:
            result = call_user_function(info.user_function, info.name, kwargs)
        except Exception as exc:
            log.exception("Executed 'Functions.%s' (Failed: %s)", info.name, exc)
            return text_response(500, f"Exception while executing function: Functions.{info.name}: {exc}")
        log.info("Executed 'Functions.%s' (Succeeded, %s %s, %.0f ms)", info.name, request.method,
                 request.path, (time.monotonic() - started) * 1000)
        return to_web_response(result)


def _query_string(request: WebRequest) -> str:
    return "?" + urlencode(request.query) if request.query else ""


def to_web_response(result: object) -> WebResponse:
    if result is None:
        return WebResponse(204)
    if isinstance(result, str | bytes):
        result = func.HttpResponse(result)
    if not isinstance(result, func.HttpResponse):
        raise TypeError(f"HTTP function returned {type(result).__name__}, expected func.HttpResponse")
    headers = {k: v for k, v in result.headers.items()}
    if not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = f"{result.mimetype}; charset={result.charset}"
    return WebResponse(result.status_code, result.get_body(), headers)
