"""The sample models the demo, the benchmark and the tests use: sample/train_models.R, run once per call."""

from __future__ import annotations

import subprocess
from datetime import date
from pathlib import Path

from devenv.azurite import REPO


def train_sample_models(out: Path, postcodes: int, kind: str, input_csv: Path, start: date | str, horizon: int,
                        history_days: int = 730, quiet: bool = False, train_end: date | str | None = None) -> Path:
    """Fit one model per postcode into `out`, and write the input to score them from `start` on. Training
    data ends on `train_end` (default the day before `start`); ets models record it (attribute training_end)."""
    extra = ["--train-end", str(train_end)] if train_end else []
    subprocess.run(["Rscript", str(REPO / "sample" / "train_models.R"), "--out", str(out), "--n", str(postcodes),
                    "--kind", kind, "--input", str(input_csv), "--start", str(start), "--horizon", str(horizon),
                    "--history", str(history_days), *extra], check=True, capture_output=quiet)
    return out
