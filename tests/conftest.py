"""Shared fixtures: a real Azurite, real R, sample models trained by the project's own trainer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from devenv.azurite import start_azurite  # noqa: E402
from scoring.blobstore import BlobStore  # noqa: E402

SAMPLE_START = "2026-11-23"
HORIZON = 14


@pytest.fixture(scope="session")
def azurite():
    server = start_azurite()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def blobs(azurite) -> BlobStore:
    store = BlobStore.connect(connection_string=azurite.connection_string)
    for container in ("models", "input", "results"):
        store.ensure_container(container)
    return store


def train(out: Path, n: int, kind: str, input_csv: Path | None = None, horizon: int = HORIZON) -> Path:
    cmd = ["Rscript", str(REPO / "sample" / "train_models.R"), "--out", str(out), "--n", str(n), "--kind", kind,
           "--start", SAMPLE_START, "--horizon", str(horizon), "--history", "400"]
    if input_csv:
        cmd += ["--input", str(input_csv)]
    subprocess.run(cmd, check=True, capture_output=True)
    return out


@pytest.fixture(scope="session")
def sample_models(tmp_path_factory) -> tuple[Path, Path]:
    """8 postcodes, mixed: 1 ets (every 10th... so ask for 10) and the rest glm; plus their input CSV."""
    root = tmp_path_factory.mktemp("sample")
    models = train(root / "models", 10, "mixed", root / "input.csv")
    return models, root / "input.csv"
