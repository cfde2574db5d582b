"""The whole pipeline on one machine: Azurite, the ARM stand-in for ACI and the Durable dev host.

Production code is unchanged; only endpoints differ (app settings below). Used by `make demo`, the
end-to-end tests and the benchmark.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from devenv.aci_standin.control import Standin, start_standin
from devenv.azurite import Azurite, start_azurite
from devenv.durable_host import HostProcess, start_host_process
from pipeline.settings import DEFAULTS
from scoring.blobstore import BlobStore

# Short waits: locally a container "starts" in well under a second.
FAST_LOCAL_SETTINGS = {
    "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000",
    "ACI_RESOURCE_GROUP": "rg-local",
    "SCORING_IMAGE": "localhost/r-scoring:dev",
    "ARM_POLLING_INTERVAL_SECONDS": "0.1",
    "POLL_FIRST_SECONDS": "0.1",
    "POLL_INTERVAL_SECONDS": "0.25",
    "ACI_RETRY_INTERVAL_SECONDS": "0.5",
    "CONTAINER_CPU": "2",
    "CORE_QUOTA": "4",
    "MAX_PARALLEL_GROUPS": "2",
    "MIN_SHARD_SIZE": "100",
}


@dataclass
class LocalStack:
    root: Path
    azurite: Azurite
    standin: Standin
    settings: dict[str, str]
    host: HostProcess | None = None
    host_args: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        assert self.host is not None
        return self.host.base_url

    @property
    def blobs(self) -> BlobStore:
        return BlobStore.connect(connection_string=self.azurite.connection_string)

    def start_host(self, port: int = 0) -> HostProcess:
        self.host = start_host_process("function_app", self.root / "durable", port, env=self.settings,
                                       extra_args=self.host_args, log_file=self.root / "host.log")
        return self.host

    def restart_host(self, hard: bool = True) -> None:
        """Kill (or stop) the host and start it again on the same state and port."""
        assert self.host is not None
        port = self.host.port
        self.host.kill() if hard else self.host.stop()
        self.start_host(port)

    def post(self, path: str, body: object = None, **kw) -> requests.Response:
        return requests.post(self.base_url + path, json=body, timeout=30, **kw)

    def get(self, path: str) -> requests.Response:
        return requests.get(self.base_url + path, timeout=30)

    def wait_for_run(self, run_id: str, timeout: float = 300, on_progress=None) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.get(f"/api/runs/{run_id}")
            if r.status_code == 200:
                view = r.json()
                if on_progress:
                    on_progress(view)
                if view["runtimeStatus"] in ("Completed", "Failed", "Terminated"):
                    return view
            time.sleep(0.2)
        raise TimeoutError(f"run {run_id} did not finish within {timeout} s")

    def stop(self) -> None:
        if self.host:
            self.host.stop()
        self.standin.stop(kill_containers=True)
        self.azurite.stop()


def local_r_packages() -> str:
    """What the 'image' has locally: this machine's R packages, as IMAGE_R_PACKAGES wants them."""
    script = ('ip <- installed.packages()[, c("Package", "Version")]; '
              'cat(paste(ip[, 1], ip[, 2], sep = "=", collapse = ";"))')
    return subprocess.run(["Rscript", "-e", script], capture_output=True, text=True, check=True).stdout


def start_stack(root: Path, overrides: dict[str, str] | None = None, host_args: list[str] | None = None,
                start_host: bool = True) -> LocalStack:
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    azurite = start_azurite(log_file=root / "azurite.log")
    try:
        standin = start_standin(root / "aci")
    except Exception:
        azurite.stop()
        raise
    settings = {**DEFAULTS, **FAST_LOCAL_SETTINGS, "IMAGE_R_PACKAGES": local_r_packages(),
                "STORAGE": azurite.connection_string,
                "ARM_ENDPOINT": standin.endpoint, "ARM_CA_BUNDLE": str(standin.ca_file), **(overrides or {})}
    stack = LocalStack(root, azurite, standin, settings, host_args=list(host_args or []))
    blobs = stack.blobs
    for name in ("MODELS_CONTAINER", "INPUT_CONTAINER", "RESULTS_CONTAINER", "STAGING_CONTAINER", "UPLOADS_CONTAINER"):
        blobs.ensure_container(settings[name])
    if start_host:
        try:
            stack.start_host()
        except Exception:
            stack.stop()
            raise
    return stack
