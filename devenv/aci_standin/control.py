"""Start, stop and steer the ACI stand-in from Python (tests, the demo).

    standin = start_standin(Path(".dev/aci"))
    settings = Settings.from_env({"ARM_ENDPOINT": standin.endpoint,
                                  "ARM_CA_BUNDLE": str(standin.ca_file), ...})
    standin.inject({"kind": "http", "method": "PUT", "status": 429, "retry_after": 1, "times": 1})
    ...
    standin.stop()          # container processes keep running; stop(kill_containers=True) ends them too
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0


class StandinError(RuntimeError):
    """The stand-in did not start, or its control API refused a request."""


@dataclass
class Standin:
    state_dir: Path
    port: int
    endpoint: str
    process: subprocess.Popen
    pull_seconds: float | None = None

    @property
    def ca_file(self) -> Path:
        return self.state_dir / "ca.pem"

    # ---- lifecycle -----------------------------------------------------------------------------

    def stop(self, kill_containers: bool = False) -> None:
        """Stop the server. Container processes keep running (as ACI's would) unless kill_containers."""
        if kill_containers and self.process.poll() is None:
            self.delete_all_groups()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def restart(self) -> None:
        """Stop and start the server again with the same state dir and port (groups are rediscovered)."""
        self.stop()
        restarted = start_standin(self.state_dir, self.port, self.pull_seconds)
        self.endpoint, self.process = restarted.endpoint, restarted.process

    # ---- fault injection and inspection --------------------------------------------------------

    def inject(self, fault: dict[str, Any]) -> dict[str, Any]:
        """Add a fault (see devenv/aci_standin/faults.py); returns it with its id."""
        return self._call("POST", "/_standin/faults", fault)

    def faults(self) -> list[dict[str, Any]]:
        return self._call("GET", "/_standin/faults")["faults"]

    def clear_faults(self) -> None:
        self._call("DELETE", "/_standin/faults")

    def groups(self) -> list[str]:
        """Names of the container groups the stand-in knows."""
        return self._call("GET", "/_standin/groups")["groups"]

    def delete_all_groups(self) -> list[str]:
        """Kill every container and forget every group; the names deleted."""
        return self._call("DELETE", "/_standin/groups")["deleted"]

    def received(self, name: str) -> dict[str, Any]:
        """The PUT body the stand-in received for a group (secure values and passwords show as ***)."""
        return self._call("GET", f"/_standin/groups/{name}/request")

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.endpoint + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        context = ssl.create_default_context(cafile=str(self.ca_file))
        try:
            with urllib.request.urlopen(request, context=context, timeout=30) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise StandinError(f"{method} {path}: HTTP {exc.code}: {detail}") from None
        return json.loads(payload) if payload else None


def start_standin(state_dir: Path, port: int = 0, pull_seconds: float | None = None) -> Standin:
    """Start `python -m devenv.aci_standin` and wait until it listens (DIR/endpoint appears)."""
    state_dir = Path(state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    endpoint_file = state_dir / "endpoint"
    endpoint_file.unlink(missing_ok=True)  # a stale one from a killed run must not count
    with open(state_dir / "standin.out", "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "devenv.aci_standin", "--state-dir", str(state_dir), "--port", str(port),
             *(["--pull-seconds", str(pull_seconds)] if pull_seconds is not None else [])],
            cwd=REPO, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StandinError(f"the ACI stand-in exited with code {process.returncode}; "
                               f"see {state_dir / 'standin.out'}")
        if endpoint_file.exists():
            endpoint = endpoint_file.read_text().strip()
            return Standin(state_dir, int(endpoint.rsplit(":", 1)[1]), endpoint, process, pull_seconds)
        time.sleep(0.05)
    process.kill()
    process.wait()
    raise StandinError(f"the ACI stand-in did not listen within {START_TIMEOUT_SECONDS:.0f} s")
