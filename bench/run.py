"""`make bench`: the scoring worker, end to end from Azurite, against a bare Rscript loop over the same models.

    python bench/run.py [--postcodes 3000] [--horizon 60] [--repeats 3]

Trains the sample glm models once (cached under bench/out/), registers them in a fresh Azurite, then times
(median of --repeats runs, wall clock of the whole process):
  worker   `python -m scoring run` scoring every postcode: manifest, model download, R, results upload;
  rscript  `Rscript` looping readRDS + predict(type = "response") over the .rds files on local disk, then
           writing one CSV.
  e2e      the whole local pipeline: POST /api/runs to the Durable dev host, plan, one ACI container group
           (ARM stand-in, real SDK over HTTPS) running the worker, logs, delete, publish; timed until the
           run's results are published.
Prints `worker_vs_rscript <ratio>`, then, as the last line, `e2e_vs_rscript <ratio>` (lower is better).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from devenv.azurite import start_azurite  # noqa: E402
from devenv.samples import train_sample_models  # noqa: E402
from devenv.stack import start_stack  # noqa: E402
from scoring.blobstore import BlobStore  # noqa: E402
from scoring.modelstore import ModelStore  # noqa: E402
from scoring.registration import register_version  # noqa: E402

OUT = REPO / "bench" / "out"
START = "2026-11-23"

BARE_LOOP_R = r"""
args <- commandArgs(trailingOnly = TRUE)
files <- list.files(args[1], pattern = "[.]rds$", full.names = TRUE)
input <- read.csv(args[2], colClasses = c(postcode = "character"))
input$date <- as.Date(input$date)
newdata <- split(input, input$postcode)
postcodes <- sub("[.]rds$", "", basename(files))
volumes <- vector("list", length(files))
for (i in seq_along(files)) {
  model <- readRDS(files[[i]])
  volumes[[i]] <- predict(model, newdata = newdata[[postcodes[[i]]]], type = "response")
}
rows <- vapply(volumes, length, integer(1))
out <- data.frame(postcode = rep(postcodes, rows), date = do.call(c, lapply(newdata[postcodes], `[[`, "date")),
                  volume = unlist(volumes, use.names = FALSE))
write.csv(out, args[3], row.names = FALSE)
"""


def timed(cmd: list[str], env: dict | None = None) -> float:
    t0 = time.perf_counter()
    result = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if result.returncode != 0:
        raise SystemExit(f"{cmd[:3]} failed ({result.returncode}): {result.stderr[-2000:]}")
    return elapsed


def sample_models(postcodes: int, horizon: int) -> tuple[Path, Path]:
    folder = OUT / f"glm-{postcodes}"
    input_csv = OUT / f"input-{postcodes}-{horizon}.csv"
    marker = OUT / f"glm-{postcodes}.complete"
    if not marker.exists() or not input_csv.exists():
        print(f"training {postcodes} sample glm models (once; cached in {folder}) ...", flush=True)
        train_sample_models(folder, postcodes, "glm", input_csv, START, horizon)
        marker.touch()
    return folder, input_csv


def pipeline(models: Path, input_csv: Path, args: argparse.Namespace) -> list[float]:
    """HTTP start to published results, through the dev host, the ARM stand-in and Azurite."""
    # One group with both cores: on a 2-core machine a second group would only add a second start-up.
    stack = start_stack(OUT / "stack", {"MAX_PARALLEL_GROUPS": "1", "CONTAINER_CPU": "2",
                                        "MIN_SHARD_SIZE": str(args.postcodes)},
                        host_args=["--blob-poll-interval", "86400"])
    try:
        register_version(ModelStore(stack.blobs), "parcels", "v1", models, champion=True)
        stack.blobs.write_bytes("input", "bench/input.csv", input_csv.read_bytes())
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            r = stack.post("/api/runs", {"input": "bench/input.csv", "horizon": args.horizon})
            r.raise_for_status()
            view = stack.wait_for_run(r.json()["id"], timeout=600)
            times.append(time.perf_counter() - t0)
            assert view["state"] == "completed" and view["rows"] == args.postcodes * args.horizon, view
        assert stack.standin.groups() == []
        return times
    finally:
        stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postcodes", type=int, default=3000)
    parser.add_argument("--horizon", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    models, input_csv = sample_models(args.postcodes, args.horizon)
    size_mb = sum(p.stat().st_size for p in models.glob("*.rds")) / 1e6
    print(f"models: {args.postcodes} glm .rds files, {size_mb:.0f} MB; horizon {args.horizon} days; "
          f"{os.cpu_count()} cores")

    azurite = start_azurite(log_file=OUT / "azurite.log")
    try:
        blobs = BlobStore.connect(connection_string=azurite.connection_string)
        for container in ("models", "input", "results"):
            blobs.ensure_container(container)
        t0 = time.perf_counter()
        manifest = register_version(ModelStore(blobs), "bench", "v1", models, champion=True)
        stored_mb = sum(p["size"] for p in manifest.packs) / 1e6
        print(f"register: {time.perf_counter() - t0:.2f} s ({len(manifest.packs)} packs, {stored_mb:.1f} MB stored, "
              f"{sum(e.slimmed for e in manifest.models.values())} slimmed)")
        blobs.write_bytes("input", "bench/input.csv", input_csv.read_bytes())
        job = {"model": "bench", "version": "champion", "input": {"container": "input", "blob": "bench/input.csv"},
               "postcodes": None, "output": {"container": "results", "prefix": "bench/"}, "horizon": args.horizon}
        env = dict(os.environ, SCORING_STORAGE_CONNECTION_STRING=azurite.connection_string,
                   SCORING_JOB=json.dumps(job))
        worker = [timed([sys.executable, "-m", "scoring", "run"], env) for _ in range(args.repeats)]
        status = blobs.read_json("results", "bench/status.json")
        assert status["rows"] == args.postcodes * args.horizon and not status["failed"], status["failed"]
    finally:
        azurite.stop()

    script = OUT / "bare_loop.R"
    script.write_text(BARE_LOOP_R)
    rscript = [timed(["Rscript", str(script), str(models), str(input_csv), str(OUT / "bare_loop.csv")])
               for _ in range(args.repeats)]

    e2e = pipeline(models, input_csv, args)
    w, r, e = statistics.median(worker), statistics.median(rscript), statistics.median(e2e)
    print(f"worker  (python -m scoring run, Azurite end to end): median {w:.2f} s of {[round(x, 2) for x in worker]}")
    print(f"  last run's own timings: {json.dumps({k: round(v, 2) for k, v in status['timings'].items()})}")
    print(f"rscript (bare readRDS + predict loop + write.csv):   median {r:.2f} s of {[round(x, 2) for x in rscript]}")
    print(f"e2e     (HTTP start -> results published):        median {e:.2f} s of {[round(x, 2) for x in e2e]}")
    print(f"worker_vs_rscript {w / r:.3f}")
    print(f"e2e_vs_rscript {e / r:.3f}")


if __name__ == "__main__":
    main()
