"""Container groups of the stand-in: kept on disk, run as local processes, shown as ARM would.

Each group lives in STATE_DIR/groups/<name>/:
  request.json  the PUT body as received, with secureValue and registry passwords replaced by "***"
  meta.json     what the stand-in decided (ARM ids, operation id, fault, runner pid, stopped)
  output.log, runner.json, exit.json   written by devenv.aci_standin.runner
so that a restarted stand-in finds every group again while the processes keep running.

A new group goes through an image pull before its container starts, as in ACI (each behaviour below is
what azure-mgmt-containerinstance 10.1.0 / api-version 2023-05-01 must cope with in Azure):
  - the PUT answers 201 with provisioningState "Pending" and an Azure-AsyncOperation URL; the operation
    stays "InProgress" and the group's provisioningState "Pending", then "Creating", for the whole pull
    (REST spec: containerInstance.json, containerGroups PUT is x-ms-long-running-operation with
    final-state-via azure-async-operation; provisioningState is read-only and "only appears in the
    response"); only when the container has started does provisioning become "Succeeded";
  - early in the pull a GET carries NO instanceView at all, neither the group's nor the container's
    (both are read-only and optional in the spec; ACI fills them in only once it has placed the group);
  - a PUT to a group whose provisioning is still transitioning (Pending/Creating) answers 409 Conflict,
    code ContainerGroupTransitioning (ARM RPC: a resource provider may reject a write that conflicts with
    an operation in progress with 409; the code is the one ACI uses for this case), never a second start;
  - the "stuck_pending" fault keeps the pull going for ever: provisioning never reaches "Succeeded" and the
    create operation never completes, which is what a slow or hung image pull looks like;
  - the "no_instance_view" fault omits the instance views for the group's whole life (with "lro_failed":
    a Failed provisioning that has no instance view, as a deployment that never got placed shows it).
The pull lasts --pull-seconds (default 0.5 s), or the "slow_pull" fault's "seconds" for one group.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devenv.aci_standin.runner import utc_now, write_json_atomic

REPO = Path(__file__).resolve().parents[2]
PROVIDER = "Microsoft.ContainerInstance"
GROUP_TYPE = f"{PROVIDER}/containerGroups"
REDACTED = "***"
# ACI group names: 1-63 characters, lowercase letters, digits and single hyphens inside.
GROUP_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
# The scoring image's entrypoint (`python -m scoring`) with its default arguments (`run`).
IMAGE_ENTRYPOINT = ["-m", "scoring", "run"]
HANG_SCRIPT = "import time\nwhile True:\n    time.sleep(3600)"
EXIT_SCRIPT = "import sys\nprint(sys.argv[1], flush=True)\nsys.exit(int(sys.argv[2]))"
EXIT_KILLED = 128 + signal.SIGKILL
LOG_LIMIT_BYTES = 4 * 1024 * 1024  # ACI returns at most about 4 MB of logs
DEFAULT_PULL_SECONDS = 0.5
# Provisioning states during which ACI refuses another write to the group (409 ContainerGroupTransitioning).
TRANSITIONING = frozenset({"Pending", "Creating", "Updating", "Repairing", "Deleting"})


class ArmError(Exception):
    """An error to answer in ARM's shape: {"error": {"code", "message"}}."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def not_found(name: str) -> ArmError:
    return ArmError(404, "ResourceNotFound",
                    f"The Resource '{GROUP_TYPE}/{name}' was not found.")


@dataclass
class Meta:
    name: str
    subscription: str
    resource_group: str
    location: str
    operation_id: str
    created: str
    fault: dict[str, Any] | None = None
    runner_pid: int | None = None
    stopped: bool = False
    secure_names: list[str] = field(default_factory=list)
    pull_seconds: float = 0.0  # the simulated image pull: no container process before it is over


@dataclass
class View:
    """What the group is doing now, derived from its files."""

    provisioning: str
    group_state: str
    container: dict[str, Any]
    operation: dict[str, Any]


class GroupStore:
    def __init__(self, state_dir: Path, pull_seconds: float = DEFAULT_PULL_SECONDS) -> None:
        self.pull_seconds = pull_seconds
        self.root = state_dir / "groups"
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._runners: dict[str, subprocess.Popen] = {}  # only groups started by this process
        self._secure_env: dict[str, dict[str, str]] = {}  # in memory only, for start/restart
        self._metas: dict[str, Meta] = {}
        for group_dir in sorted(self.root.iterdir()):
            meta = self._load_meta(group_dir)
            if meta is not None:
                self._metas[meta.name] = meta

    # ---- queries -------------------------------------------------------------------------------

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._metas)

    def get(self, subscription: str, resource_group: str, name: str) -> dict[str, Any]:
        with self._lock:
            meta = self._find(subscription, resource_group, name)
            return self._arm_body(meta)

    def list(self, subscription: str, resource_group: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            metas = [m for m in self._metas.values() if m.subscription.lower() == subscription.lower()
                     and (resource_group is None or m.resource_group.lower() == resource_group.lower())]
            return [self._arm_body(m) for m in sorted(metas, key=lambda m: m.name)]

    def operation(self, operation_id: str) -> dict[str, Any]:
        with self._lock:
            for meta in self._metas.values():
                if meta.operation_id == operation_id:
                    return self._view(meta).operation
        raise ArmError(404, "OperationNotFound", f"Operation {operation_id} was not found.")

    def group_of_operation(self, operation_id: str) -> str | None:
        with self._lock:
            return next((m.name for m in self._metas.values() if m.operation_id == operation_id), None)

    def logs(self, subscription: str, resource_group: str, name: str, container: str,
             tail: int | None) -> str:
        with self._lock:
            meta = self._find(subscription, resource_group, name)
            names = [c.get("name") for c in self._request(meta).get("properties", {}).get("containers", [])]
            if container not in names:
                raise ArmError(404, "ContainerNotFound",
                               f"The container '{container}' was not found in group '{name}'.")
            log_file = self._dir(name) / "output.log"
        try:
            with open(log_file, "rb") as f:
                f.seek(max(0, log_file.stat().st_size - LOG_LIMIT_BYTES))
                text = f.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        if tail is not None:
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-tail:]) if tail > 0 else ""
        return text

    def received(self, name: str) -> dict[str, Any]:
        """The PUT body as received (secrets redacted), for tests."""
        with self._lock:
            if name not in self._metas:
                raise not_found(name)
            return self._request(self._metas[name])

    # ---- changes -------------------------------------------------------------------------------

    def create_or_update(self, subscription: str, resource_group: str, name: str, body: dict[str, Any],
                         fault: dict[str, Any] | None) -> tuple[bool, dict[str, Any], str]:
        """(created, ARM body, operation id). An existing group only takes the new tags, like ACI
        does for a PUT that changes nothing else; it is never started twice."""
        validate_group(name, body)
        with self._lock:
            existing = self._metas.get(name)
            if existing is not None:
                if (existing.subscription.lower(), existing.resource_group.lower()) != (
                        subscription.lower(), resource_group.lower()):
                    raise ArmError(409, "Conflict", f"The stand-in already has a group named '{name}' "
                                                    "in another resource group.")
                provisioning = self._view(existing).provisioning
                if provisioning in TRANSITIONING:
                    raise ArmError(409, "ContainerGroupTransitioning",
                                   f"The container group '{name}' is still transitioning "
                                   f"(provisioning state {provisioning}); please retry later.")
                request = self._request(existing)
                request["tags"] = body.get("tags") or {}
                write_json_atomic(self._dir(name) / "request.json", request)
                return False, self._arm_body(existing), existing.operation_id
            group_dir = self._dir(name)
            shutil.rmtree(group_dir, ignore_errors=True)
            group_dir.mkdir(parents=True)
            plain, secure = environment_of(body)
            kind = (fault or {}).get("kind")
            pull = float(fault.get("seconds", 0)) if kind == "slow_pull" else self.pull_seconds
            meta = Meta(name=name, subscription=subscription, resource_group=resource_group,
                        location=str(body.get("location") or ""), operation_id=str(uuid.uuid4()),
                        created=utc_now(), fault=fault, secure_names=sorted(secure), pull_seconds=pull)
            write_json_atomic(group_dir / "request.json", redacted(body))
            self._metas[name] = meta
            self._secure_env[name] = secure
            self._save_meta(meta)
            if kind not in ("stuck_pending", "lro_failed"):
                if pull <= 0:
                    self._spawn(meta, plain | secure)
                    self._save_meta(meta)
                else:  # the pull ends by itself, whether or not anyone GETs the group meanwhile
                    timer = threading.Timer(pull, self._end_pull, [name, meta.operation_id])
                    timer.daemon = True
                    timer.start()
            return True, self._arm_body(meta), meta.operation_id

    def update_tags(self, subscription: str, resource_group: str, name: str,
                    tags: dict[str, str]) -> dict[str, Any]:
        with self._lock:
            meta = self._find(subscription, resource_group, name)
            request = self._request(meta)
            request["tags"] = tags
            write_json_atomic(self._dir(name) / "request.json", request)
            return self._arm_body(meta)

    def stop(self, subscription: str, resource_group: str, name: str) -> None:
        with self._lock:
            meta = self._find(subscription, resource_group, name)
            self._kill(meta)
            meta.stopped = True
            self._save_meta(meta)

    def start(self, subscription: str, resource_group: str, name: str) -> str:
        """Run the container again from the start (start after stop, or restart); the operation id."""
        with self._lock:
            meta = self._find(subscription, resource_group, name)
            secure = self._secure_env.get(name)
            if secure is None and meta.secure_names:
                raise ArmError(409, "StandinSecureValuesLost",
                               "The stand-in keeps secure values in memory only and was restarted "
                               "since this group was created; delete and create it again.")
            self._kill(meta)
            group_dir = self._dir(name)
            for stale in ("runner.json", "exit.json", "output.log"):
                (group_dir / stale).unlink(missing_ok=True)
            meta.stopped = False
            meta.fault = None
            meta.operation_id = str(uuid.uuid4())
            plain, _ = environment_of(self._request(meta))
            self._spawn(meta, plain | (secure or {}))
            self._save_meta(meta)
            return meta.operation_id

    def delete(self, subscription: str, resource_group: str, name: str) -> dict[str, Any] | None:
        """Kill the container and forget the group; its last ARM body, or None if there was none."""
        with self._lock:
            try:
                meta = self._find(subscription, resource_group, name)
            except ArmError:
                return None
            self._kill(meta)
            body = self._arm_body(meta)
            self._forget(name)
            return body

    def delete_all(self) -> list[str]:
        with self._lock:
            names = sorted(self._metas)
            for name in names:
                self._kill(self._metas[name])
                self._forget(name)
            return names

    # ---- processes -----------------------------------------------------------------------------

    def _pulling(self, meta: Meta) -> float | None:
        """Seconds since the create while the simulated pull is on, else None."""
        if meta.runner_pid is not None or meta.stopped or (meta.fault or {}).get("kind") == "lro_failed":
            return None
        elapsed = (datetime.now(UTC) - datetime.fromisoformat(meta.created)).total_seconds()
        if (meta.fault or {}).get("kind") == "stuck_pending" or elapsed < meta.pull_seconds:
            return elapsed
        return None

    def _end_pull(self, name: str, operation_id: str) -> None:
        with self._lock:
            meta = self._metas.get(name)
            if meta is None or meta.operation_id != operation_id or meta.runner_pid is not None or meta.stopped:
                return
            secure = self._secure_env.get(name)
            if secure is None and meta.secure_names:
                return  # the stand-in restarted mid-pull: the view reports the group failed
            plain, _ = environment_of(self._request(meta))
            self._spawn(meta, plain | (secure or {}))
            self._save_meta(meta)

    def _spawn(self, meta: Meta, env_vars: dict[str, str]) -> None:
        command = container_command(self._request(meta), meta.fault)
        group_dir = self._dir(meta.name)
        with open(group_dir / "runner.err", "ab") as runner_errors:
            runner = subprocess.Popen(
                [sys.executable, "-m", "devenv.aci_standin.runner", str(group_dir), "--", *command],
                cwd=REPO, env=os.environ | env_vars, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=runner_errors,
                # Its own session: it survives a stand-in restart and is killed as one process group.
                start_new_session=True,
            )
        self._runners[meta.name] = runner
        meta.runner_pid = runner.pid

    def _runner_alive(self, meta: Meta) -> bool:
        runner = self._runners.get(meta.name)
        if runner is not None:
            return runner.poll() is None
        if meta.runner_pid is None:
            return False
        # Started by an earlier stand-in: make sure the pid still is our runner, not a reused pid.
        try:
            cmdline = Path(f"/proc/{meta.runner_pid}/cmdline").read_bytes()
        except OSError:
            return False
        return str(self._dir(meta.name)).encode() in cmdline

    def _kill(self, meta: Meta) -> None:
        group_dir = self._dir(meta.name)
        if (group_dir / "exit.json").exists() or not self._runner_alive(meta):
            self._runners.pop(meta.name, None)
            return
        try:
            os.killpg(meta.runner_pid, signal.SIGKILL)  # the runner leads its group: kills the tree
        except (ProcessLookupError, PermissionError, TypeError):
            pass
        runner = self._runners.pop(meta.name, None)
        deadline = time.monotonic() + 5
        if runner is not None:
            try:
                runner.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        while time.monotonic() < deadline and self._runner_alive(meta):
            time.sleep(0.02)
        if not (group_dir / "exit.json").exists() and (group_dir / "runner.json").exists():
            write_json_atomic(group_dir / "exit.json", {"exit_code": EXIT_KILLED, "finish_time": utc_now(),
                                                        "killed": True})

    def _forget(self, name: str) -> None:
        self._metas.pop(name, None)
        self._secure_env.pop(name, None)
        self._runners.pop(name, None)
        shutil.rmtree(self._dir(name), ignore_errors=True)

    # ---- views ---------------------------------------------------------------------------------

    def _view(self, meta: Meta) -> View:
        group_dir = self._dir(meta.name)
        kind = (meta.fault or {}).get("kind")
        succeeded = {"id": meta.operation_id, "status": "Succeeded"}
        if kind == "lro_failed":
            code = meta.fault.get("code") or "ContainerGroupDeploymentFailed"
            message = meta.fault.get("message") or f"The container group deployment failed: {code}."
            return View("Failed", "Stopped" if meta.stopped else "Failed", waiting(message),
                        failed_operation(meta.operation_id, code, message))
        in_progress = {"id": meta.operation_id, "status": "InProgress"}
        elapsed = self._pulling(meta)
        if elapsed is not None:
            early = kind == "stuck_pending" and elapsed < 0.2 or elapsed < meta.pull_seconds / 2
            provisioning = "Pending" if early else "Creating"
            return View(provisioning, "Pending", waiting(f"Pulling image {self._image(meta)}"), in_progress)
        if meta.runner_pid is None and not meta.stopped and kind != "lro_failed":
            # The pull is over but nothing started it (the stand-in restarted mid-pull).
            if self._secure_env.get(meta.name) is None and meta.secure_names:
                message = "The stand-in restarted during the image pull and lost the secure values."
                return View("Failed", "Failed", waiting(message),
                            failed_operation(meta.operation_id, "ContainerGroupDeploymentFailed", message))
            self._end_pull(meta.name, meta.operation_id)
        started = read_json(group_dir / "runner.json")
        finished = read_json(group_dir / "exit.json")
        if finished is None and started is not None and not self._runner_alive(meta):
            # The runner may have written exit.json just now; if not, it died without a word.
            finished = read_json(group_dir / "exit.json") or {"exit_code": -1, "finish_time": utc_now(),
                                                              "lost": True}
        if finished is not None:
            code = int(finished["exit_code"])
            start_time = (started or {}).get("start_time")
            detail = "Killed" if finished.get("killed") else "Completed" if code == 0 else "Error"
            state = "Stopped" if meta.stopped else "Succeeded" if code == 0 else "Failed"
            return View("Succeeded", state, {
                "state": "Terminated", "startTime": start_time, "finishTime": finished["finish_time"],
                "exitCode": code, "detailStatus": detail}, succeeded)
        if started is not None:
            running = {"state": "Running", "startTime": started["start_time"], "detailStatus": ""}
            return View("Succeeded", "Running", running, succeeded)
        if meta.stopped:
            return View("Succeeded", "Stopped", waiting("Stopped before it started."), succeeded)
        if not self._runner_alive(meta):
            message = "The stand-in's runner exited before starting the container; see runner.err."
            return View("Failed", "Failed", waiting(message),
                        failed_operation(meta.operation_id, "ContainerGroupDeploymentFailed", message))
        return View("Creating", "Pending", waiting("ContainerCreating"), in_progress)

    def _image(self, meta: Meta) -> str:
        return str(first_container(self._request(meta)).get("image") or "")

    def _arm_body(self, meta: Meta) -> dict[str, Any]:
        """The group as ARM shows it: no secureValue, no registry password."""
        request = self._request(meta)
        view = self._view(meta)
        show_views = not self._omits_instance_view(meta)
        properties = copy.deepcopy(request.get("properties") or {})
        properties["provisioningState"] = view.provisioning
        properties.setdefault("restartPolicy", "Always")  # ACI's default: recorded, not enforced
        properties.setdefault("osType", "Linux")
        properties.setdefault("sku", "Standard")
        for index, container in enumerate(properties.get("containers") or []):
            props = container.setdefault("properties", {})
            props["environmentVariables"] = [
                {"name": v["name"]} if "secureValue" in v else {"name": v["name"], "value": v.get("value")}
                for v in props.get("environmentVariables") or []
            ]
            if index == 0 and show_views:
                props["instanceView"] = {"restartCount": 0, "currentState": view.container, "events": []}
        for credential in properties.get("imageRegistryCredentials") or []:
            credential.pop("password", None)
        if show_views:
            properties["instanceView"] = {"state": view.group_state, "events": []}
        body: dict[str, Any] = {
            "id": (f"/subscriptions/{meta.subscription}/resourceGroups/{meta.resource_group}"
                   f"/providers/{GROUP_TYPE}/{meta.name}"),
            "name": meta.name,
            "type": GROUP_TYPE,
            "location": meta.location,
            "tags": request.get("tags") or {},
            "properties": properties,
        }
        if request.get("identity"):
            body["identity"] = shown_identity(request["identity"])
        return body

    def _omits_instance_view(self, meta: Meta) -> bool:
        """Early in the pull (its first half, at least 0.2 s of it) and under the no_instance_view fault."""
        if (meta.fault or {}).get("kind") == "no_instance_view" or (meta.fault or {}).get("no_instance_view"):
            return True
        elapsed = self._pulling(meta)
        return elapsed is not None and elapsed < max(0.2, meta.pull_seconds / 2)

    # ---- files ---------------------------------------------------------------------------------

    def _dir(self, name: str) -> Path:
        return self.root / name

    def _find(self, subscription: str, resource_group: str, name: str) -> Meta:
        meta = self._metas.get(name)
        if meta is None or (meta.subscription.lower(), meta.resource_group.lower()) != (
                subscription.lower(), resource_group.lower()):
            raise not_found(name)
        return meta

    def _request(self, meta: Meta) -> dict[str, Any]:
        return read_json(self._dir(meta.name) / "request.json") or {}

    def _save_meta(self, meta: Meta) -> None:
        write_json_atomic(self._dir(meta.name) / "meta.json", asdict(meta))

    @staticmethod
    def _load_meta(group_dir: Path) -> Meta | None:
        data = read_json(group_dir / "meta.json")
        if data is None or not (group_dir / "request.json").exists():
            return None
        return Meta(**data)


def validate_group(name: str, body: dict[str, Any]) -> None:
    if not GROUP_NAME.match(name) or "--" in name:
        raise ArmError(400, "InvalidContainerGroupName",
                       f"The container group name '{name}' is invalid. A container group name must "
                       "contain no more than 63 characters and must match the regex "
                       "'[a-z0-9]([-a-z0-9]*[a-z0-9])?' (e.g. 'my-name').")
    if not isinstance(body, dict) or not body.get("location"):
        raise ArmError(400, "LocationRequired", "The location property is required for this definition.")
    containers = (body.get("properties") or {}).get("containers")
    if not isinstance(containers, list) or not containers:
        raise ArmError(400, "ContainerGroupMissingContainers", "A container group needs containers.")
    if len(containers) != 1:
        raise ArmError(400, "StandinUnsupported", "The stand-in runs exactly one container per group.")
    if not (containers[0].get("properties") or {}).get("image"):
        raise ArmError(400, "InvalidContainerImage", "The container image is required.")


def environment_of(body: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """(plain, secure) environment variables of the first container."""
    variables = first_container(body).get("environmentVariables") or []
    plain = {v["name"]: str(v.get("value") or "") for v in variables if "secureValue" not in v}
    secure = {v["name"]: str(v.get("secureValue") or "") for v in variables if "secureValue" in v}
    return plain, secure


def first_container(body: dict[str, Any]) -> dict[str, Any]:
    containers = (body.get("properties") or {}).get("containers") or [{}]
    return containers[0].get("properties") or {}


def container_command(body: dict[str, Any], fault: dict[str, Any] | None) -> list[str]:
    """The local command standing in for the image: its entrypoint, the given command, or a fault."""
    kind = (fault or {}).get("kind")
    if kind == "hang":
        return [sys.executable, "-c", HANG_SCRIPT]
    if kind == "exit":
        output, exit_code = str(fault.get("output", "")), str(fault.get("exit_code", 1))
        return [sys.executable, "-c", EXIT_SCRIPT, output, exit_code]
    command = first_container(body).get("command")
    if not command:
        return [sys.executable, *IMAGE_ENTRYPOINT]
    if command[0] in ("python", "python3"):
        return [sys.executable, *command[1:]]
    return list(command)


def redacted(body: dict[str, Any]) -> dict[str, Any]:
    """The body to keep on disk: secure values and passwords replaced, names kept."""
    safe = copy.deepcopy(body)
    properties = safe.get("properties") or {}
    for container in properties.get("containers") or []:
        for variable in (container.get("properties") or {}).get("environmentVariables") or []:
            if "secureValue" in variable:
                variable["secureValue"] = REDACTED
    for credential in properties.get("imageRegistryCredentials") or []:
        if "password" in credential:
            credential["password"] = REDACTED
    return safe


def shown_identity(identity: dict[str, Any]) -> dict[str, Any]:
    shown = copy.deepcopy(identity)
    for resource_id in shown.get("userAssignedIdentities") or {}:
        shown["userAssignedIdentities"][resource_id] = {
            "principalId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"principal:{resource_id}")),
            "clientId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"client:{resource_id}")),
        }
    return shown


def failed_operation(operation_id: str, code: str, message: str) -> dict[str, Any]:
    return {"id": operation_id, "status": "Failed", "error": {"code": code, "message": message}}


def waiting(detail: str) -> dict[str, Any]:
    return {"state": "Waiting", "detailStatus": detail}


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
