"""Index a v2-model function app: one `app.get_functions()` call, then lookups by name and trigger type."""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import azure.functions as func

log = logging.getLogger("devenv.durable_host")

SETTING_REFERENCE = re.compile(r"%([^%]+)%")
# get_functions() may be called only once per app object (a second call raises "does not have a unique
# function name"), so the index is cached per app object for hosts that share an imported module.
_INDEX_CACHE: dict[int, list[func.Function]] = {}


def resolve_settings(text: str) -> str:
    """Replace %NAME% with the app setting (environment variable), as the Functions host does."""

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise KeyError(f"app setting {name!r} referenced as %{name}% is not set")
        return os.environ[name]

    return SETTING_REFERENCE.sub(lookup, text)


@dataclass
class FunctionInfo:
    name: str
    trigger_type: str
    trigger: dict[str, Any]
    bindings: list[dict[str, Any]]
    user_function: Any
    client_param: str | None = None
    other_inputs: list[str] = field(default_factory=list)

    @property
    def trigger_param(self) -> str:
        return self.trigger["name"]


@dataclass
class FunctionIndex:
    functions: dict[str, FunctionInfo]

    def by_trigger(self, trigger_type: str) -> list[FunctionInfo]:
        return [f for f in self.functions.values() if f.trigger_type == trigger_type]

    def get(self, name: str, trigger_type: str | None = None) -> FunctionInfo | None:
        info = self.functions.get(name)
        if info is None:  # function names are case-insensitive in the Functions host
            info = next((f for n, f in self.functions.items() if n.lower() == name.lower()), None)
        if info is not None and trigger_type is not None and info.trigger_type != trigger_type:
            return None
        return info


def import_app(app_module: str, app_dir: Path) -> Any:
    for path in (str(app_dir), os.getcwd()):
        if path not in sys.path:
            sys.path.insert(0, path)
    module = importlib.import_module(app_module)
    app = getattr(module, "app", None)
    if app is None or not hasattr(app, "get_functions"):
        raise RuntimeError(f"module {app_module!r} does not expose `app` (a func.FunctionApp / df.DFApp)")
    return app


def index_app(app: Any) -> FunctionIndex:
    functions = _INDEX_CACHE.get(id(app))
    if functions is None:
        functions = app.get_functions()
        _INDEX_CACHE[id(app)] = functions
    index: dict[str, FunctionInfo] = {}
    for function in functions:
        # get_function_json turns the binding enums into plain strings (methods, authLevel, direction...).
        bindings = json.loads(function.get_function_json())["bindings"]
        trigger_type = function.get_trigger().type
        trigger = next(b for b in bindings if b["type"] == trigger_type)
        client = next((b["name"] for b in bindings if b["type"] == "durableClient"), None)
        others = [b["name"] for b in bindings if b is not trigger and b["direction"] == "IN"
                  and b["type"] not in ("durableClient", "http")]
        info = FunctionInfo(function.get_function_name(), trigger_type, trigger, bindings,
                            function.get_user_function(), client, others)
        index[info.name] = info
        if others:
            log.warning("function %s: input bindings %s are not provided by the dev host", info.name, others)
    return FunctionIndex(index)
