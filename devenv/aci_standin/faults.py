"""Fault injection for the stand-in: ARM errors, and containers that hang, fail or never start.

A fault is a JSON object with a "kind", an optional "match" (substring of the group name; absent
means every group) and an optional "times" (how often it applies; absent means always):
  {"kind": "http", "method": "PUT", "status": 429, "code": "TooManyRequests", "message": "...",
   "retry_after": 1, "after": false}          next matching ARM request(s) get this error; with "after": true
                                              the request is carried out first and its answer lost (a gateway
                                              timeout after ARM accepted it: the client retries a PUT that
                                              already created the group)
  {"kind": "hang"}                            the container runs and never finishes
  {"kind": "exit", "exit_code": 3, "output": "boom"}   the container prints output, exits with code
  {"kind": "stuck_pending"}                   the image pull never ends: provisioning stays Pending/Creating,
                                              the create operation InProgress, the container Waiting
  {"kind": "slow_pull", "seconds": 5}         the image pull of this group takes that long
  {"kind": "no_instance_view"}                GETs of the group never carry an instanceView
  {"kind": "lro_failed", "code": "InaccessibleImage", "message": "...", "no_instance_view": true}
                                              the create operation fails (optionally with no instance view)
Faults live in memory: a restart of the stand-in clears them.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

HTTP = "http"
CONTAINER_KINDS = frozenset({"hang", "exit", "stuck_pending", "slow_pull", "no_instance_view", "lro_failed"})
KINDS = CONTAINER_KINDS | {HTTP}
METHODS = frozenset({"GET", "PUT", "POST", "DELETE", "PATCH"})


class FaultError(ValueError):
    """The fault JSON is not valid."""


def validate(fault: Any) -> dict[str, Any]:
    if not isinstance(fault, dict):
        raise FaultError("a fault is a JSON object")
    kind = fault.get("kind")
    if kind not in KINDS:
        raise FaultError(f"kind must be one of {sorted(KINDS)}, not {kind!r}")
    if "match" in fault and not isinstance(fault["match"], str):
        raise FaultError("match must be a string (a substring of the group name)")
    times = fault.get("times")
    if times is not None and (not isinstance(times, int) or times < 1):
        raise FaultError("times must be a positive integer")
    if kind == HTTP:
        method = fault.get("method")
        if method is not None and str(method).upper() not in METHODS:
            raise FaultError(f"method must be one of {sorted(METHODS)}")
        status = fault.get("status")
        if not isinstance(status, int) or not 400 <= status <= 599:
            raise FaultError("an http fault needs a status from 400 to 599")
    if kind == "slow_pull" and not isinstance(fault.get("seconds"), int | float):
        raise FaultError("a slow_pull fault needs seconds (a number)")
    if kind == "exit" and not isinstance(fault.get("exit_code", 1), int):
        raise FaultError("exit_code must be an integer")
    return dict(fault)


class Faults:
    """The active faults, used up in the order they were added."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[dict[str, Any]] = []
        self._ids = itertools.count(1)

    def add(self, fault: Any) -> dict[str, Any]:
        checked = validate(fault)
        with self._lock:
            checked["id"] = next(self._ids)
            self._faults.append(checked)
            return dict(checked)

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(f) for f in self._faults]

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take_http(self, method: str, group: str | None) -> dict[str, Any] | None:
        """The http fault for this ARM request, if any (counting one use)."""
        return self._take(lambda f: f["kind"] == HTTP and _method_matches(f, method), group)

    def take_container(self, group: str) -> dict[str, Any] | None:
        """The container fault for a new group, if any (counting one use)."""
        return self._take(lambda f: f["kind"] in CONTAINER_KINDS, group)

    def _take(self, wanted: Any, group: str | None) -> dict[str, Any] | None:
        with self._lock:
            for fault in self._faults:
                if wanted(fault) and _group_matches(fault, group):
                    if fault.get("times") is not None:
                        fault["times"] -= 1
                        if fault["times"] <= 0:
                            self._faults.remove(fault)
                    return dict(fault)
        return None


def _method_matches(fault: dict[str, Any], method: str) -> bool:
    wanted = fault.get("method")
    return wanted is None or str(wanted).upper() == method


def _group_matches(fault: dict[str, Any], group: str | None) -> bool:
    match = fault.get("match")
    if match is None:
        return True
    # A request without a group (a list) only meets faults meant for every group.
    return group is not None and match in group
