"""`R CMD check` of the R package (clients/r): no ERROR, no WARNING. Its own tests (tests/testthat) run
against a local fake of the service; tests/test_client_api.py runs it against the real local stack."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # Azurite, R, the stand-in or the dev host

PACKAGE = Path(__file__).resolve().parent.parent / "clients" / "r"


def test_r_cmd_check_has_no_error_or_warning(tmp_path):
    if shutil.which("R") is None:
        pytest.fail("R is not installed: run `make setup`")
    subprocess.run(["R", "CMD", "build", "--no-build-vignettes", str(PACKAGE)], cwd=tmp_path, check=True,
                   capture_output=True)
    tarball = next(tmp_path.glob("rscoring_*.tar.gz"))
    done = subprocess.run(["R", "CMD", "check", "--no-manual", tarball.name], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    status = [line for line in done.stdout.splitlines() if line.startswith("Status:")]
    assert status and "ERROR" not in status[0] and "WARNING" not in status[0], done.stdout[-4000:]
