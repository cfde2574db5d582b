"""A toy v2-model Durable Functions app exercising every feature of the dev host (tests only)."""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import timedelta
from pathlib import Path

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)
_concurrency_lock = threading.Lock()
_running = {"now": 0, "max": 0}


# ------------------------------------------------------------------------------------------------ HTTP


@app.route(route="start/{orchestrator}/{instance_id?}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def http_start(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    body = req.get_body()
    payload = json.loads(body) if body else None
    try:
        instance_id = await client.start_new(req.route_params["orchestrator"],
                                             req.route_params.get("instance_id"), payload)
    except Exception as exc:  # e.g. the instance id is already running
        return func.HttpResponse(f"not started: {exc}", status_code=409)
    return client.create_check_status_response(req, instance_id)


@app.route(route="run/{orchestrator}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def http_run_and_wait(req: func.HttpRequest,
                            client: df.DurableOrchestrationClient) -> func.HttpResponse:
    body = req.get_body()
    payload = json.loads(body) if body else None
    instance_id = await client.start_new(req.route_params["orchestrator"], None, payload)
    return await client.wait_for_completion_or_create_check_status_response(req, instance_id, 10000, 100)


@app.route(route="echo/{word}", methods=["GET", "POST"])
def echo(req: func.HttpRequest) -> func.HttpResponse:
    body = {"word": req.route_params["word"], "method": req.method, "params": dict(req.params),
            "header": req.headers.get("x-toy"), "body": req.get_body().decode()}
    return func.HttpResponse(json.dumps(body), mimetype="application/json", headers={"x-echo": "yes"})


# -------------------------------------------------------------------------------------- orchestrators


@app.orchestration_trigger(context_name="context")
def hello_sequence(context: df.DurableOrchestrationContext):
    results = []
    for city in context.get_input() or ["Tokyo", "Seattle", "London"]:
        results.append((yield context.call_activity("say_hello", city)))
    return results


@app.orchestration_trigger(context_name="context")
def fan_out(context: df.DurableOrchestrationContext):
    count = context.get_input()
    squares = yield context.task_all([context.call_activity("square", i) for i in range(count)])
    return {"sum": sum(squares), "squares": squares}


@app.orchestration_trigger(context_name="context")
def bounded_fan_out(context: df.DurableOrchestrationContext):
    """At most `limit` activities in flight: start `limit`, wait for any, start the next."""
    settings = context.get_input()
    pending = list(range(settings["count"]))
    in_flight = []
    results = []
    while pending or in_flight:
        while pending and len(in_flight) < settings["limit"]:
            in_flight.append(context.call_activity("slow_square", pending.pop(0)))
        done = yield context.task_any(in_flight)
        in_flight.remove(done)
        results.append(done.result)
    return sorted(results)


@app.orchestration_trigger(context_name="context")
def retrying(context: df.DurableOrchestrationContext):
    options = df.RetryOptions(first_retry_interval_in_milliseconds=200, max_number_of_attempts=5)
    return (yield context.call_activity_with_retry("flaky", options, context.get_input()))


@app.orchestration_trigger(context_name="context")
def retry_exhausted(context: df.DurableOrchestrationContext):
    options = df.RetryOptions(first_retry_interval_in_milliseconds=100, max_number_of_attempts=2)
    try:
        yield context.call_activity_with_retry("flaky", options, context.get_input())
    except Exception as exc:
        return f"gave up: {exc}".splitlines()[0]
    return "unexpected success"


@app.orchestration_trigger(context_name="context")
def delayed(context: df.DurableOrchestrationContext):
    started = context.current_utc_datetime
    yield context.create_timer(started + timedelta(seconds=context.get_input()))
    return (context.current_utc_datetime - started).total_seconds()


@app.orchestration_trigger(context_name="context")
def parent(context: df.DurableOrchestrationContext):
    base = context.instance_id
    good = yield context.call_sub_orchestrator("child", 7, instance_id=f"{base}-child-ok")
    try:
        yield context.call_sub_orchestrator("child", "fail", instance_id=f"{base}-child-bad")
        error = None
    except Exception as exc:
        error = str(exc)
    return {"good": good, "error": error}


@app.orchestration_trigger(context_name="context")
def child(context: df.DurableOrchestrationContext):
    value = context.get_input()
    if value == "fail":
        raise ValueError("child failed on purpose")
    return (yield context.call_activity("square", value))


@app.orchestration_trigger(context_name="context")
def approval(context: df.DurableOrchestrationContext):
    context.set_custom_status({"stage": "waiting for approval"})
    decision = yield context.wait_for_external_event("approval")
    context.set_custom_status({"stage": "approved"})
    second = yield context.wait_for_external_event("approval")
    return {"first": decision, "second": second}


@app.orchestration_trigger(context_name="context")
def wait_forever(context: df.DurableOrchestrationContext):
    yield context.wait_for_external_event("never")
    return "impossible"


@app.orchestration_trigger(context_name="context")
def sleepy(context: df.DurableOrchestrationContext):
    return (yield context.call_activity("sleep_then_answer", context.get_input()))


@app.orchestration_trigger(context_name="context")
def counter(context: df.DurableOrchestrationContext):
    value = context.get_input()
    if value < 3:
        context.continue_as_new(value + 1)
        return None
    return value


class Point:
    """A custom payload class: the SDK passes it with to_json/from_json (its module must be importable)."""

    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y

    def to_json(self) -> dict:
        return {"x": self.x, "y": self.y}

    @classmethod
    def from_json(cls, data: dict) -> Point:
        return cls(data["x"], data["y"])


@app.orchestration_trigger(context_name="context")
def typed_payloads(context: df.DurableOrchestrationContext):
    """A custom class through an activity (both ways), a sub-orchestration's input and the custom status."""
    start = context.get_input()  # a Point when started with one
    context.set_custom_status(Point(-1, -1))
    shifted = yield context.call_activity("shift_point", start)
    child_seen = yield context.call_sub_orchestrator("typed_child", shifted)
    return {"input": type(start).__name__, "activity_result": type(shifted).__name__,
            "shifted": shifted.to_json(), "child": child_seen}


@app.orchestration_trigger(context_name="context")
def typed_child(context: df.DurableOrchestrationContext):
    point = context.get_input()
    return {"type": type(point).__name__, "x": point.x}
    yield  # an orchestrator is a generator


@app.orchestration_trigger(context_name="context")
def object_output(context: df.DurableOrchestrationContext):
    """Returns a custom object: the SDK refuses an orchestration output that plain json.dumps cannot write."""
    return Point(1, 2)
    yield


# ------------------------------------------------------------------------------------------ activities


@app.activity_trigger(input_name="point")
def shift_point(point: Point) -> Point:
    if not isinstance(point, Point):
        raise TypeError(f"expected a Point, got {type(point).__name__}")
    return Point(point.x + 1, point.y + 1)



@app.activity_trigger(input_name="city")
def say_hello(city: str) -> str:
    return f"Hello {city}!"


@app.activity_trigger(input_name="value")
def square(value: int) -> int:
    return value * value


@app.activity_trigger(input_name="value")
def slow_square(value: int) -> int:
    with _concurrency_lock:
        _running["now"] += 1
        _running["max"] = max(_running["max"], _running["now"])
    time.sleep(0.05 + (value % 3) * 0.05)
    with _concurrency_lock:
        _running["now"] -= 1
    return value * value


@app.activity_trigger(input_name="settings")
def flaky(settings: dict) -> str:
    """Fails `fail_times` times, counting attempts in a file, then succeeds."""
    path = Path(settings["counter_file"])
    attempts = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(attempts))
    if attempts <= settings["fail_times"]:
        raise RuntimeError(f"flaky failure #{attempts}")
    return f"succeeded on attempt {attempts}"


@app.activity_trigger(input_name="settings")
def sleep_then_answer(settings: dict) -> str:
    marker = Path(settings["marker"])
    with marker.open("a") as out:
        out.write(f"{os.getpid()}\n")
    time.sleep(settings["seconds"])
    return "slept well"


# ------------------------------------------------------------------------------------ timer and blob


@app.timer_trigger(schedule="%TOY_SCHEDULE%", arg_name="timer", run_on_startup=False)
@app.durable_client_input(client_name="client")
async def scheduled_kick(timer: func.TimerRequest, client: df.DurableOrchestrationClient) -> None:
    status = await client.get_status("scheduled-run")
    if status and status.runtime_status in (df.OrchestrationRuntimeStatus.Running,
                                            df.OrchestrationRuntimeStatus.Pending):
        return
    await client.start_new("hello_sequence", "scheduled-run", ["Timer"])


@app.blob_trigger(arg_name="blob", path="uploads/{name}", connection="TOY_STORAGE", source="EventGrid")
def on_upload(blob: func.InputStream) -> None:
    log_file = Path(os.environ["TOY_BLOB_LOG"])
    with log_file.open("a") as out:
        out.write(json.dumps({"name": blob.name, "length": blob.length, "content": blob.read().decode(),
                              "uri": blob.uri}) + "\n")
