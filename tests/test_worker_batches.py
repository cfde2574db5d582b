"""How the worker hands models to R: each downloaded pack range is one file, R reads the models as slices of it,
and the ranges ready by the time R is free go to the nodes as batches of at most BATCH_PER_CORE per node.
Real R (rpy2 and PSOCK nodes); storage is the in-memory store of tests/support, as the worker's storage calls
are not what these tests are about."""

from __future__ import annotations

import csv
import io
import subprocess
from pathlib import Path

import pytest
from support.memory_blobs import MemoryBlobStore

from scoring import r_session, worker
from scoring.job import parse_job
from scoring.modelstore import ModelStore
from scoring.registration import register_version

pytestmark = pytest.mark.integration  # real R

DAYS = 5
POSTCODES = [str(4000 + i) for i in range(10)]
FIT = """
fit <- function(i) {
  d <- data.frame(x = 1:30, w = rep(c("a", "b", "c"), 10))
  d$y <- 3 + i * d$x / 10 + (d$w == "b") * i + sin(d$x)
  lm(y ~ x + w, data = d)
}
"""


def input_rows(postcodes: list[str]) -> str:
    lines = ["postcode,date,x,w"] + [f"{pc},2099-01-{d:02d},{d * 2 + k},{'abc'[d % 3]}"
                                     for k, pc in enumerate(postcodes) for d in range(1, DAYS + 1)]
    return "\n".join(lines) + "\n"


def expected_volumes(postcodes: list[str], rows: str) -> dict[tuple[str, str], float]:
    """predict() in a separate Rscript, on each postcode's rows alone."""
    script = FIT + f"""
input <- read.csv(textConnection({rows!r}), colClasses = c(postcode = "character"))
for (i in seq_along(c({", ".join(repr(p) for p in postcodes)}))) {{
  pc <- c({", ".join(repr(p) for p in postcodes)})[i]
  rows <- input[input$postcode == pc, ]
  cat(paste(pc, rows$date, sprintf("%.17g", predict(fit(i), newdata = rows))), sep = "\\n")
}}
"""
    out = subprocess.run(["Rscript", "-e", script], check=True, capture_output=True, text=True).stdout.split()
    return {(out[i], out[i + 1]): float(out[i + 2]) for i in range(0, len(out), 3)}


def test_models_are_read_as_slices_of_range_files(tmp_path: Path):
    """Every compression saveRDS writes, at any offset of a file; a slice past the end of its file or in a file
    that is gone fails its postcode with a reason, and nothing else."""
    ro = r_session._r()
    rows = input_rows(POSTCODES[:6])
    (tmp_path / "input.csv").write_text(rows)
    ro.r(FIT + f"""
    compressions <- list(TRUE, "bzip2", "xz", FALSE)
    parts <- lapply(1:4, function(i) {{
      f <- tempfile(); saveRDS(fit(i), f, compress = compressions[[i]])
      readBin(f, "raw", file.size(f))
    }})
    filler <- as.raw(1:37)
    writeBin(c(filler, parts[[1]], parts[[2]], filler), "{tmp_path}/range-a.bin")
    writeBin(c(parts[[3]], parts[[4]]), "{tmp_path}/range-b.bin")
    sizes <- as.numeric(lengths(parts))
    sliced <- list(
      files = c(rep("{tmp_path}/range-a.bin", 2), rep("{tmp_path}/range-b.bin", 3), "{tmp_path}/gone.bin"),
      offsets = c(37, 37 + sizes[1], 0, sizes[3], sizes[3] + sizes[4] - 5),
      sizes = c(sizes, 10, 10))
    sliced$offsets <- c(sliced$offsets, 0)
    load_input("{tmp_path}/input.csv", {"c(" + ", ".join(repr(p) for p in POSTCODES[:6]) + ")"})
    .scoring$horizon <- 0
    chunk <- score_chunk({"c(" + ", ".join(repr(p) for p in POSTCODES[:6]) + ")"}, sliced$files, sliced$offsets,
                         sliced$sizes)
    """)
    chunk = ro.r("chunk")
    failures = r_session.named_strings(chunk.rx2("failures"))
    assert set(failures) == {POSTCODES[4], POSTCODES[5]}, failures
    assert all(reason.startswith("cannot read model") for reason in failures.values()), failures
    assert "ends before the model" in failures[POSTCODES[4]]
    results = chunk.rx2("results")
    got = {(pc, str(d)): v for pc, d, v in zip(results.rx2("postcode"), ro.r["format"](results.rx2("date")),
                                               results.rx2("volume"), strict=True)}
    expected = expected_volumes(POSTCODES[:4], rows)
    assert got.keys() == expected.keys()
    assert max(abs(got[k] - v) / abs(v) for k, v in expected.items()) < 1e-12


def test_ready_ranges_go_to_the_nodes_in_batches_bounded_per_core(tmp_path: Path, monkeypatch):
    folder = tmp_path / "models"
    folder.mkdir()
    saves = "; ".join(f'saveRDS(fit({i + 1}), "{folder}/{pc}.rds")' for i, pc in enumerate(POSTCODES))
    subprocess.run(["Rscript", "-e", FIT + saves], check=True)
    blobs = MemoryBlobStore()
    register_version(ModelStore(blobs), "parcels", "v1", folder)
    rows = input_rows(POSTCODES)
    blobs.write_bytes("input", "in.csv", rows.encode())
    job = parse_job({"model": "parcels", "version": "v1", "input": {"container": "input", "blob": "in.csv"},
                     "postcodes": None, "output": {"container": "results", "prefix": "out/"}, "horizon": DAYS})

    batches: list[int] = []
    real_call = r_session.call

    def counting_call(function: str, *args):
        if function == "score_batch_isolated":
            batches.append(len(args[0]))
        return real_call(function, *args)

    monkeypatch.setattr(r_session, "call", counting_call)
    monkeypatch.setattr(worker, "BATCH_PER_CORE", 2)
    status = worker.run_shard(job, blobs, tmp_path / "work", cores=2)

    assert status.failed == {} and status.scored == sorted(POSTCODES)
    assert sum(batches) == len(POSTCODES) and max(batches) <= 2 * 2, batches
    assert len(list((tmp_path / "work" / "models").iterdir())) == 1  # one pack range, one file
    written = list(csv.DictReader(io.StringIO(blobs.read_bytes("results", "out/results.csv").decode())))
    expected = expected_volumes(POSTCODES, rows)
    assert len(written) == len(expected)
    got = {(r["postcode"], r["date"]): float(r["volume"]) for r in written}
    assert max(abs(got[k] - v) / abs(v) for k, v in expected.items()) < 1e-12
