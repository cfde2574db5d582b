"""Running the dev host as a child process (for demos and restart tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from devenv.azurite import free_port

from .host import REPO_ROOT


@dataclass
class HostProcess:
    process: subprocess.Popen
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, timeout: float = 10) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """SIGKILL: no clean-up at all, like a crashed host."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def start_host_process(app_module: str, state_dir: Path, port: int = 0, env: dict[str, str] | None = None,
                       *, extra_args: list[str] | None = None, log_file: Path | None = None,
                       timeout: float = 30) -> HostProcess:
    port = port or free_port()
    child_env = {**os.environ, **(env or {})}
    child_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), child_env.get("PYTHONPATH")) if p)
    out = open(log_file, "ab") if log_file else None
    command = [sys.executable, "-m", "devenv.durable_host", "--app", app_module, "--port", str(port),
               "--state-dir", str(state_dir), *(extra_args or [])]
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=child_env, stdout=out, stderr=out)
    host = HostProcess(process, port)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dev host exited with code {process.returncode}: {' '.join(command)}")
        try:
            if requests.get(f"{host.base_url}/admin/host/status", timeout=1).status_code == 200:
                return host
        except requests.RequestException:
            time.sleep(0.1)
    host.kill()
    raise RuntimeError(f"dev host did not answer on port {port} within {timeout} s")
