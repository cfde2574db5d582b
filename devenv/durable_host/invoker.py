"""Calling user functions: sync ones in the caller's thread, async ones on one process-wide event loop.

The SDK's durable client keeps a module-global aiohttp session bound to the first event loop it sees, so
every coroutine of every host in this process must run on the same loop, which is never closed.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import uuid
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def shared_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _loop_lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="durable-host-asyncio", daemon=True).start()
        return _loop


@dataclass
class InvocationContext:
    """The bits of func.Context a user function (or the SDK's client middleware) may read."""

    invocation_id: str
    function_name: str
    function_directory: str = ""
    trace_context: Any = None
    retry_context: Any = None
    thread_local_storage: Any = None


def call_user_function(function: Any, function_name: str, kwargs: dict[str, Any]) -> Any:
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        parameters = {}
    if "context" in parameters and "context" not in kwargs:
        kwargs = {**kwargs, "context": InvocationContext(str(uuid.uuid4()), function_name)}
    if inspect.iscoroutinefunction(function):
        return run_coroutine(function(**kwargs))
    result = function(**kwargs)
    if inspect.iscoroutine(result):
        return run_coroutine(result)
    return result


def run_coroutine(coroutine: Any) -> Any:
    future: Future = asyncio.run_coroutine_threadsafe(coroutine, shared_loop())
    return future.result()
