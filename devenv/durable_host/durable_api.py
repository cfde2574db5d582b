"""The durable HTTP API under /runtime/webhooks/durabletask/, as called by the SDK's
DurableOrchestrationClient (through rpcBaseUrl) and by plain clients following the management URLs.

Listing instances (GET .../instances) pages exactly as the Durable Functions extension does, so that code
which reads only the first page is caught here, not in Azure:
  - a page holds at most `top` instances, 100 when `top` is absent (HttpApiHandler.HandleGetStatusRequestAsync
    copies `top` into OrchestrationStatusQueryCondition.PageSize, whose default is 100);
  - the next page is asked for with the request header x-ms-continuation-token; every answer carries that
    header, empty on the last page (HttpApiHandler adds it unconditionally, from ListInstancesAsync's
    ContinuationToken);
  - sub-orchestrations are instances like any other and take their place on a page;
  - pages come in instance-id order, not creation order (the Azure Storage provider's Instances table is
    keyed, and so read, by instance id).
azure-functions-durable 1.7's get_status_by / get_status_all send neither `top` nor the token and ignore the
answer's header, so they return the first page only (azure-functions-durable-python issue #580).
"""

from __future__ import annotations

import base64
import json
import sqlite3
from datetime import datetime
from typing import Any
from urllib.parse import quote

from . import history as h
from .client_binding import INSTANCE_PLACEHOLDER, WEBHOOK_PATH, durable_client_payload
from .engine import ACTIVE_STATUSES, InstanceExists, OrchestrationEngine, UnknownOrchestrator
from .json_text import body_to_json_text, loads_or_none
from .web import WebRequest, WebResponse, json_response

PAGE_SIZE = 100  # the extension's default page size for instance queries
CONTINUATION_HEADER = "x-ms-continuation-token"

# Event types in the status API's history, by name (OrchestratorStarted/Completed are left out, as in Azure).
EVENT_TYPE_NAMES = {
    0: "ExecutionStarted", 1: "ExecutionCompleted", 2: "ExecutionFailed", 3: "ExecutionTerminated",
    4: "TaskScheduled", 5: "TaskCompleted", 6: "TaskFailed", 7: "SubOrchestrationInstanceCreated",
    8: "SubOrchestrationInstanceCompleted", 9: "SubOrchestrationInstanceFailed", 10: "TimerCreated",
    11: "TimerFired", 14: "EventSent", 15: "EventRaised", 16: "ContinueAsNew",
}
OUTCOME_STATUS = {"accepted": 202, "not_found": 404, "gone": 410}


def _encode_token(last_instance_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": last_instance_id}).encode()).decode()


def _decode_token(token: str) -> str | None:
    if not token or token == "null":
        return None
    try:
        return str(json.loads(base64.urlsafe_b64decode(token.encode()))["after"])
    except (ValueError, KeyError, TypeError):
        return None  # a token from elsewhere: start over, as a fresh query would


def _flag(query: dict[str, str], name: str, default: bool) -> bool:
    value = query.get(name)
    return default if value is None else value.lower() == "true"


class DurableApi:
    def __init__(self, engine: OrchestrationEngine, task_hub: str) -> None:
        self.engine = engine
        self.task_hub = task_hub

    def handle(self, request: WebRequest) -> WebResponse:
        parts = [p for p in request.path[len(WEBHOOK_PATH):].split("/") if p]
        method = request.method
        if parts[:1] == ["orchestrators"] and len(parts) in (2, 3) and method == "POST":
            return self.start(request, parts[1], parts[2] if len(parts) == 3 else None)
        if parts[:1] == ["instances"]:
            if len(parts) == 1 and method == "GET":
                return self.list_instances(request)
            if len(parts) == 1 and method == "DELETE":
                return self.purge_by(request)
            if len(parts) == 2 and method == "GET":
                return self.status(request, parts[1])
            if len(parts) == 2 and method == "DELETE":
                deleted = self.engine.purge([parts[1]])
                return json_response(200 if deleted else 404, {"instancesDeleted": deleted})
            if len(parts) == 4 and parts[2] == "raiseEvent" and method == "POST":
                return self.raise_event(request, parts[1], parts[3])
            if len(parts) == 3 and parts[2] == "terminate" and method == "POST":
                return self.terminate(request, parts[1])
            if len(parts) == 3 and parts[2] == "restart" and method == "POST":
                return self.restart(request, parts[1])
            if len(parts) == 3 and parts[2] in ("rewind", "suspend", "resume"):
                return json_response(501, {"Message": f"{parts[2]} is not supported by the dev host"})
        if parts[:1] == ["entities"]:
            return json_response(501, {"Message": "durable entities are not supported by the dev host"})
        return json_response(404, {"Message": f"No durable API at {method} {request.path}"})

    # ------------------------------------------------------------------------------------------- handlers

    def management_payload(self, request: WebRequest, instance_id: str) -> dict[str, str]:
        urls = durable_client_payload(request.origin, self.task_hub)["managementUrls"]
        return {key: value.replace(INSTANCE_PLACEHOLDER, quote(instance_id, safe=""))
                if key != "id" else instance_id for key, value in urls.items()}

    def start(self, request: WebRequest, name: str, instance_id: str | None) -> WebResponse:
        try:
            input_text = body_to_json_text(request.body)
        except ValueError:
            return json_response(400, {"Message": "Only application/json request content is supported",
                                       "ExceptionMessage": "request body is not JSON"})
        try:
            version = request.query.get("version", "")
            instance_id = self.engine.start_instance(name, instance_id, input_text, version)
        except UnknownOrchestrator as exc:
            return json_response(400, {"Message": str(exc), "ExceptionMessage": str(exc)})
        except InstanceExists as exc:
            return json_response(409, {"Message": str(exc), "ExceptionMessage": str(exc)})
        payload = self.management_payload(request, instance_id)
        return json_response(202, payload, {"Location": payload["statusQueryGetUri"], "Retry-After": "10"})

    def status(self, request: WebRequest, instance_id: str) -> WebResponse:
        row = self.engine.get_instance(instance_id)
        if row is None:
            return WebResponse(404)
        body = self.status_json(row, _flag(request.query, "showInput", True))
        if _flag(request.query, "showHistory", False):
            show_output = _flag(request.query, "showHistoryOutput", False)
            body["historyEvents"] = self.history_json(instance_id, show_output)
        if row["status"] in ACTIVE_STATUSES:
            location = self.management_payload(request, instance_id)["statusQueryGetUri"]
            return json_response(202, body, {"Location": location, "Retry-After": "10"})
        if row["status"] == "Failed" and _flag(request.query, "returnInternalServerErrorOnFailure", False):
            return json_response(500, body)
        return json_response(200, body)

    @staticmethod
    def status_json(row: sqlite3.Row, show_input: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": row["name"],
            "instanceId": row["instance_id"],
            "runtimeStatus": row["status"],
            "input": loads_or_none(row["input"]) if show_input else None,
            "customStatus": loads_or_none(row["custom_status"]),
            "output": loads_or_none(row["output"]),
            "createdTime": h.status_time(row["created_time"]),
            "lastUpdatedTime": h.status_time(row["last_updated_time"]),
        }
        return body

    def history_json(self, instance_id: str, show_output: bool) -> list[dict[str, Any]]:
        events = []
        for event in self.engine.get_history(instance_id):
            name = EVENT_TYPE_NAMES.get(event["EventType"])
            if name is None:
                continue
            item: dict[str, Any] = {"EventType": name, "Timestamp": event["Timestamp"]}
            for key in ("Name", "InstanceId", "TaskScheduledId", "TimerId", "FireAt", "Reason", "Details"):
                if event.get(key) is not None:
                    item["FunctionName" if key == "Name" else key] = event[key]
            if event.get("EventId", -1) >= 0:
                item["EventId"] = event["EventId"]
            if show_output and event.get("Result") is not None:
                item["Result"] = loads_or_none(event["Result"])
            events.append(item)
        return events

    def list_instances(self, request: WebRequest) -> WebResponse:
        where, params = self._filters(request.query)
        try:
            top = int(request.query.get("top") or 0)
        except ValueError:
            top = 0  # the extension ignores a `top` it cannot parse (TryGetIntQueryParameterValue)
        page_size = top if top > 0 else PAGE_SIZE
        sent = next((v for k, v in request.headers.items() if k.lower() == CONTINUATION_HEADER), "")
        after = _decode_token(sent)
        if after is not None:
            where += (" AND " if where else "WHERE ") + "instance_id > ?"
            params = [*params, after]
        rows = self.engine.query_instances(where, params, order_by="instance_id", limit=page_size + 1)
        page = rows[:page_size]
        token = _encode_token(page[-1]["instance_id"]) if len(rows) > page_size else ""
        show_input = _flag(request.query, "showInput", False)
        return json_response(200, [self.status_json(r, show_input) for r in page], {CONTINUATION_HEADER: token})

    def purge_by(self, request: WebRequest) -> WebResponse:
        where, params = self._filters(request.query)
        rows = self.engine.query_instances(where, params)
        # Purging running instances is not allowed in Azure either.
        ids = [r["instance_id"] for r in rows if r["status"] not in ACTIVE_STATUSES]
        deleted = self.engine.purge(ids)
        return json_response(200 if deleted else 404, {"instancesDeleted": deleted})

    @staticmethod
    def _filters(query: dict[str, str]) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if query.get("runtimeStatus"):
            statuses = [s.strip() for s in query["runtimeStatus"].split(",") if s.strip()]
            clauses.append(f"status IN ({','.join('?' * len(statuses))})")
            params.extend(statuses)
        if query.get("instanceIdPrefix"):
            clauses.append("instance_id LIKE ? ESCAPE '\\'")
            prefix = query["instanceIdPrefix"].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            params.append(prefix + "%")
        for key, op in (("createdTimeFrom", ">="), ("createdTimeTo", "<=")):
            if query.get(key):
                moment: datetime = h.parse_timestamp(query[key])
                clauses.append(f"created_time {op} ?")
                params.append(h.format_timestamp(moment))
        return ("WHERE " + " AND ".join(clauses) if clauses else ""), params

    def raise_event(self, request: WebRequest, instance_id: str, event_name: str) -> WebResponse:
        try:
            input_text = body_to_json_text(request.body)
        except ValueError:
            return json_response(400, {"Message": "Only application/json request content is supported"})
        return WebResponse(OUTCOME_STATUS[self.engine.raise_event(instance_id, event_name, input_text)])

    def terminate(self, request: WebRequest, instance_id: str) -> WebResponse:
        reason = request.query.get("reason", "")
        return WebResponse(OUTCOME_STATUS[self.engine.terminate(instance_id, reason)])

    def restart(self, request: WebRequest, instance_id: str) -> WebResponse:
        row = self.engine.get_instance(instance_id)
        if row is None:
            return WebResponse(404)
        same_id = request.query.get("restartWithNewInstanceId", "true").lower() == "false"
        try:
            new_id = self.engine.start_instance(row["name"], instance_id if same_id else None, row["input"])
        except InstanceExists as exc:
            return json_response(409, {"Message": str(exc)})
        return json_response(202, new_id)
