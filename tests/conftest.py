"""Shared fixtures: a real Azurite, real R, sample models trained by the project's own trainer.

Two layers. Tests marked `integration` start real components (Azurite, R, the ARM stand-in, the dev host);
every other test is a unit test and may start none of them: `make test-fast` runs those
(`pytest -m "not integration"`), and the guard below fails a unit test that tries.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from devenv.azurite import start_azurite  # noqa: E402
from devenv.samples import train_sample_models  # noqa: E402
from devenv.stack import LocalStack, start_stack  # noqa: E402
from scoring.blobstore import BlobStore  # noqa: E402
from scoring.modelstore import ModelStore  # noqa: E402
from scoring.registration import register_version  # noqa: E402

# Fixtures that start real components: a test using any of them is an integration test.
INTEGRATION_FIXTURES = frozenset({"azurite", "blobs", "sample_models", "stack", "aci_standin", "aci"})
# What a unit test must not start: these programs, and these Python modules run with -m.
SLOW_PROGRAMS = frozenset({"R", "Rscript", "node", "azurite", "azurite-blob"})
SLOW_MODULES = ("devenv.durable_host", "devenv.aci_standin", "scoring")


def starts_something_slow(argv: list[str]) -> bool:
    program = Path(argv[0]).name if argv else ""
    modules = [argv[i + 1] for i in range(len(argv) - 1) if argv[i] == "-m"]
    return program in SLOW_PROGRAMS or any(m == slow or m.startswith(slow + ".") for m in modules
                                           for slow in SLOW_MODULES)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def unit_tests_start_nothing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A unit test that starts Azurite, R, the stand-in, the dev host or the worker fails, naming what."""
    if request.node.get_closest_marker("integration"):
        return
    real_popen = subprocess.Popen

    class GuardedPopen(real_popen):  # type: ignore[misc, valid-type]
        def __init__(self, args, *a, **kw):
            argv = [str(args)] if isinstance(args, str | bytes) else [str(x) for x in args]
            if kw.get("shell") and argv:
                argv = argv[0].split()
            if starts_something_slow(argv):
                raise AssertionError(f"a unit test started {' '.join(argv)!r}: mark it integration")
            super().__init__(args, *a, **kw)

    def no_r():
        raise AssertionError("a unit test started R (scoring.r_session): mark it integration")

    monkeypatch.setattr(subprocess, "Popen", GuardedPopen)
    from scoring import r_session

    monkeypatch.setattr(r_session, "_r", no_r)


# Sample input starts tomorrow: a run refuses input dates in the past.
SAMPLE_START = (date.today() + timedelta(days=1)).isoformat()
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


@pytest.fixture(scope="session")
def sample_models(tmp_path_factory) -> tuple[Path, Path]:
    """8 postcodes, mixed: 1 ets (every 10th... so ask for 10) and the rest glm; plus their input CSV."""
    root = tmp_path_factory.mktemp("sample")
    models = train_sample_models(root / "models", 10, "mixed", root / "input.csv", SAMPLE_START, HORIZON,
                                 history_days=400, quiet=True)
    return models, root / "input.csv"


REFERENCE_R = r"""
args <- commandArgs(trailingOnly = TRUE)
input <- read.csv(args[2], colClasses = c(postcode = "character"))
input$date <- as.Date(input$date)
out <- list()
for (f in list.files(args[1], pattern = "[.]rds$", full.names = TRUE)) {
  pc <- sub("[.]rds$", "", basename(f))
  nd <- input[input$postcode == pc, ]
  nd <- nd[order(nd$date), ]
  m <- readRDS(f)
  if (inherits(m, "ets")) {
    fc <- forecast::forecast(m, h = nrow(nd))
    out[[pc]] <- data.frame(postcode = pc, date = format(nd$date), volume = as.numeric(fc$mean),
                            lower_95 = as.numeric(fc$lower[, 2]), upper_95 = as.numeric(fc$upper[, 2]))
  } else {
    out[[pc]] <- data.frame(postcode = pc, date = format(nd$date),
                            volume = as.numeric(predict(m, newdata = nd, type = "response")),
                            lower_95 = NA, upper_95 = NA)
  }
}
write.csv(do.call(rbind, out), args[3], row.names = FALSE)
"""


def r_reference(models: Path, input_csv: Path, tmp_path: Path) -> list[dict]:
    """What R itself computes for these models and this input: predict(type = "response") or forecast()."""
    reference, script = tmp_path / "reference.csv", tmp_path / "reference.R"
    script.write_text(REFERENCE_R)
    subprocess.run(["Rscript", str(script), str(models), str(input_csv), str(reference)], check=True)
    return list(csv.DictReader(reference.open()))


@contextmanager
def sample_stack(root: Path, sample_models: tuple[Path, Path], overrides: dict[str, str],
                 host_args: list[str] | None = None) -> Iterator[LocalStack]:
    """The local stack with the sample models registered as parcels/v1 (champion) and their input at
    input/manual/input.csv."""
    stack = start_stack(root / "local", overrides, host_args=host_args)
    try:
        models, input_csv = sample_models
        register_version(ModelStore(stack.blobs), "parcels", "v1", models, champion=True)
        stack.blobs.write_bytes("input", "manual/input.csv", input_csv.read_bytes())
        yield stack
    finally:
        stack.stop()
