"""Start and stop Azurite (the Blob Storage emulator) from node_modules, on a free loopback port."""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
AZURITE_BIN = REPO / "node_modules" / ".bin" / "azurite-blob"
# Azurite's published development account; it is not a secret.
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Azurite:
    port: int
    process: subprocess.Popen

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{self.port}/{DEV_ACCOUNT};"
        )

    def stop(self) -> None:
        # Azurite ignores SIGTERM for ~10 s; its storage is in memory, so a short grace then SIGKILL loses nothing.
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=1)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_azurite(port: int | None = None, log_file: Path | None = None) -> Azurite:
    if not AZURITE_BIN.exists():
        raise RuntimeError(f"{AZURITE_BIN} is missing: run `make setup` (npm ci) first")
    port = port or free_port()
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL
    process = subprocess.Popen(
        [str(AZURITE_BIN), "--inMemoryPersistence", "--blobHost", "127.0.0.1", "--blobPort", str(port),
         "--skipApiVersionCheck", "--loose"],
        stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Azurite exited with code {process.returncode} on port {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return Azurite(port, process)
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"Azurite did not listen on port {port} within 30 s")
