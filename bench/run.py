"""`make bench` / `make bench-scale`: the scoring worker and the whole local pipeline against a bare Rscript loop.

    python bench/run.py [--postcodes 3000] [--horizon 60] [--repeats 3] [--no-generic]
    python bench/run.py --scale          # 30,000 postcodes: rscript and e2e only (~15 min with 3 repeats)

Trains the sample glm models once (cached under bench/out/), starts the local stack (Azurite, the ARM stand-in,
the Durable dev host), registers the models once, then runs, interleaved (A B C D, A B C D, ... so that drift
on a shared machine hits every variant alike):
  worker   `python -m scoring run` scoring every postcode: manifest, model download, R, results upload;
  rscript  `Rscript` looping readRDS + predict(type = "response") over the .rds files on local disk, then
           writing one CSV;
  e2e      POST /api/runs to the dev host, plan, one ACI container group (ARM stand-in, real SDK over HTTPS)
           running the worker, poll, logs, delete, publish; until the client sees the run completed;
  generic  the worker with the shared-design path switched off (SCORING_SHARED_DESIGN=0): predict() per postcode.
Prints every repeat, the medians with their spread, the worker's phases, the pipeline's steps and peak memory;
ratios are per repeat (variant / rscript of the same repeat), then their median. Last lines:
`worker_vs_rscript <ratio>` and `e2e_vs_rscript <ratio>`; with --scale, `functions_peak_mb <MB>` and
`e2e30k_vs_rscript <ratio>`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from datetime import date, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.measure import cpu_seconds, high_water_kb, run_measured, spread  # noqa: E402
from bench.pipeline_steps import STEPS, pipeline_steps  # noqa: E402
from devenv.samples import train_sample_models  # noqa: E402
from devenv.stack import LocalStack, start_stack  # noqa: E402
from pipeline import naming  # noqa: E402
from scoring.modelstore import ModelStore  # noqa: E402
from scoring.registration import register_version  # noqa: E402

OUT = REPO / "bench" / "out"
TRAINED = 3000  # larger cases reuse these models (replicated_models)
TRAIN_START = "2026-11-23"  # the cached models' training ends the day before; inputs are re-dated to tomorrow
HOLIDAYS = {"01-01", "05-01", "08-01", "12-25", "12-26"}  # as sample/train_models.R's holidays()

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


def trained_models(postcodes: int, horizon: int) -> tuple[Path, Path]:
    """Sample glm models fitted by sample/train_models.R, and their input (cached)."""
    folder = OUT / f"glm-{postcodes}"
    trained_input = OUT / f"input-{postcodes}-{horizon}.csv"
    marker = OUT / f"glm-{postcodes}.complete"
    if not marker.exists() or not trained_input.exists():
        print(f"training {postcodes} sample glm models (once; cached in {folder}) ...", flush=True)
        train_sample_models(folder, postcodes, "glm", trained_input, TRAIN_START, horizon)
        marker.touch()
    return folder, trained_input


def slim_copies(folder: Path) -> Path:
    """What registration stores for each model (its slim copy, by the registration's own R code), cached."""
    slim = folder.with_name(folder.name + "-slim")
    marker = slim.with_name(slim.name + ".complete")
    if not marker.exists():
        from scoring import r_session

        slim.mkdir(exist_ok=True)
        files = sorted(folder.glob("*.rds"))
        outcomes = r_session.call("inspect_models", [str(f) for f in files], [str(slim / f.name) for f in files], True)
        for f, outcome in zip(files, outcomes, strict=True):
            if not str(outcome).endswith("|TRUE"):  # not slimmed: registration stores the file as it is
                shutil.copyfile(f, slim / f.name)
        marker.touch()
    return slim


def replicated_models(postcodes: int, horizon: int) -> tuple[Path, Path]:
    """More postcodes than TRAINED: each trained model serves several postcodes (hard links, so the set builds
    in seconds); every postcode is still registered, downloaded, loaded and scored on its own. A sibling
    folder `<folder>-slim` links each postcode to the slim copy registration makes of its model: registering
    those skips re-checking the same 3,000 models ten times over (hours on a busy 2-core machine)."""
    base, base_input = trained_models(TRAINED, horizon)
    base_slim = slim_copies(base)
    folder = OUT / f"glm-{postcodes}-replicated"
    replicated_input = OUT / f"input-{postcodes}-{horizon}.csv"
    marker = OUT / f"glm-{postcodes}-replicated-slim.complete"
    if marker.exists() and replicated_input.exists():
        return folder, replicated_input
    print(f"building {postcodes} postcodes from the {TRAINED} trained models (once; cached in {folder}) ...",
          flush=True)
    slim = folder.with_name(folder.name + "-slim")
    folder.mkdir(parents=True, exist_ok=True)
    slim.mkdir(parents=True, exist_ok=True)
    sources = sorted(base.glob("*.rds"))
    rows: dict[str, list[str]] = {}
    with base_input.open() as src:
        header = src.readline()
        for line in src:
            pc, rest = line.split(",", 1)
            rows.setdefault(pc, []).append(rest)
    with replicated_input.open("w") as dst:
        dst.write(header)
        for i in range(postcodes):
            pc, source = f"{10000 + i}", sources[i % len(sources)]
            for target, origin in ((folder / f"{pc}.rds", source), (slim / f"{pc}.rds", base_slim / source.name)):
                if not target.exists():
                    os.link(origin, target)
            dst.writelines(f"{pc},{rest}" for rest in rows[source.stem])
    marker.touch()
    return folder, replicated_input


def sample_models(postcodes: int, horizon: int) -> tuple[Path, Path]:
    """The models, and their input re-dated to start tomorrow (a run refuses dates in the past)."""
    folder, trained_input = (trained_models if postcodes <= TRAINED else replicated_models)(postcodes, horizon)
    start = date.today() + timedelta(days=1)
    shift = start - date.fromisoformat(TRAIN_START)
    dated = OUT / f"input-{postcodes}-{horizon}-{start.isoformat()}.csv"
    if not dated.exists():
        with trained_input.open() as src, dated.open("w") as dst:
            header = src.readline()
            assert header.strip() == "postcode,date,holiday", header
            dst.write(header)
            for line in src:
                postcode, day, _ = line.rstrip("\n").split(",")
                moved = date.fromisoformat(day) + shift
                dst.write(f"{postcode},{moved.isoformat()},{int(moved.strftime('%m-%d') in HOLIDAYS)}\n")
    return folder, dated


def service_pids(stack: LocalStack) -> dict[str, int]:
    return {"functions": stack.host.process.pid, "arm_standin": stack.standin.process.pid,
            "azurite": stack.azurite.process.pid}


def e2e_run(stack: LocalStack, horizon: int, postcodes: int) -> tuple[float, dict[str, float], dict]:
    """One run through the pipeline: (seconds from HTTP start to the client seeing it completed, steps and the
    CPU seconds each local service spent, the shard's own status)."""
    cpu_before = {name: cpu_seconds(pid) for name, pid in service_pids(stack).items()}
    posted, t0 = time.time(), time.perf_counter()
    r = stack.post("/api/runs", {"input": "bench/input.csv", "horizon": horizon})
    r.raise_for_status()
    run_id = r.json()["id"]
    view = stack.wait_for_run(run_id, timeout=3600)
    elapsed, seen = time.perf_counter() - t0, time.time()
    assert view["state"] == "completed" and view["rows"] == postcodes * horizon, view
    steps = pipeline_steps(stack.root / "durable", run_id, posted, seen)
    steps.update({f"cpu_{name}": cpu_seconds(pid) - cpu_before[name] for name, pid in service_pids(stack).items()})
    # Shards write to the staging container (the worker's identity writes nowhere else).
    status = stack.blobs.read_json(stack.settings["STAGING_CONTAINER"], naming.staging_prefix(run_id, 0, 1)
                                   + "status.json")
    return elapsed, steps, status


def print_phases(label: str, statuses: list[dict]) -> None:
    keys = list(statuses[0]["timings"])
    phases = {k: statistics.median(s["timings"][k] for s in statuses) for k in keys}
    print(f"{label}: " + "  ".join(f"{k} {v:.2f}" for k, v in phases.items()) + " s (cumulative, medians)"
          + f"; shared-design postcodes {statuses[-1].get('shared_design', 'n/a')}")


def print_steps(all_steps: list[dict[str, float]]) -> None:
    med = {k: statistics.median(s[k] for s in all_steps) for k in (*STEPS, "polls")}
    print("pipeline steps (s, medians): " + "  ".join(f"{k} {med[k]:.2f}" for k in STEPS)
          + f"  [{med['polls']:.0f} polls]")
    overhead = sum(med[k] for k in STEPS) - med["worker"]
    print(f"pipeline overhead (all steps but the worker): {overhead:.2f} s")
    cpu = {k: statistics.median(s[k] for s in all_steps) for k in all_steps[0] if k.startswith("cpu_")}
    print("CPU seconds per run of the local services: " + "  ".join(f"{k[4:]} {v:.2f}" for k, v in cpu.items()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postcodes", type=int, default=3000)
    parser.add_argument("--horizon", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-generic", action="store_true", help="skip the worker without the shared design")
    parser.add_argument("--scale", action="store_true", help="30,000 postcodes, rscript and e2e only")
    args = parser.parse_args()
    if args.scale:
        args.postcodes, args.no_generic = 30000, True
    OUT.mkdir(parents=True, exist_ok=True)
    models, input_csv = sample_models(args.postcodes, args.horizon)
    size_mb = sum(p.stat().st_size for p in models.glob("*.rds")) / 1e6
    print(f"models: {args.postcodes} glm .rds files, {size_mb:.0f} MB; horizon {args.horizon} days; "
          f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}", flush=True)

    # One container group with both cores: on a 2-core machine a second group would only add a start-up.
    stack = start_stack(OUT / f"stack-{args.postcodes}", {"MAX_PARALLEL_GROUPS": "1", "CONTAINER_CPU": "2",
                                        "MIN_SHARD_SIZE": str(args.postcodes)},
                        host_args=["--blob-poll-interval", "86400"])
    try:
        t0 = time.perf_counter()
        # Beyond the trained models, register the slim copies registration made of them (replicated_models).
        stored = models.with_name(models.name + "-slim") if args.postcodes > TRAINED else models
        manifest = register_version(ModelStore(stack.blobs), "parcels", "v1", stored, champion=True)
        print(f"register {stored.name}: {time.perf_counter() - t0:.1f} s ({len(manifest.packs)} packs, "
              f"{sum(p['size'] for p in manifest.packs) / 1e6:.1f} MB stored, "
              f"{sum(e.slimmed for e in manifest.models.values())} slimmed)", flush=True)
        stack.blobs.write_bytes("input", "bench/input.csv", input_csv.read_bytes())
        job = {"model": "parcels", "version": "champion", "input": {"container": "input", "blob": "bench/input.csv"},
               "postcodes": None, "output": {"container": "results", "prefix": "bench/"}, "horizon": args.horizon}
        env = dict(os.environ, SCORING_STORAGE_CONNECTION_STRING=stack.azurite.connection_string,
                   SCORING_JOB=json.dumps(job))
        worker_cmd = [sys.executable, "-m", "scoring", "run"]
        script = OUT / f"bare_loop-{args.postcodes}.R"
        script.write_text(BARE_LOOP_R)
        bare_csv = OUT / f"bare_loop-{args.postcodes}.csv"
        rscript_cmd = ["Rscript", str(script), str(models), str(input_csv), str(bare_csv)]

        times: dict[str, list[float]] = {"worker": [], "rscript": [], "e2e": [], "generic": []}
        cpu: dict[str, list[float]] = {"worker": [], "rscript": [], "generic": []}
        worker_mb: list[float] = []
        statuses: list[dict] = []
        generic_statuses: list[dict] = []
        e2e_statuses: list[dict] = []
        all_steps: list[dict[str, float]] = []
        for i in range(args.repeats):
            line = []
            if not args.scale:
                m = run_measured(worker_cmd, REPO, env)
                times["worker"].append(m.seconds)
                cpu["worker"].append(m.cpu_seconds)
                worker_mb.append(m.peak_mb)
                statuses.append(stack.blobs.read_json("results", "bench/status.json"))
                assert statuses[-1]["rows"] == args.postcodes * args.horizon and not statuses[-1]["failed"]
                line.append(f"worker {m.seconds:.2f} s")
            m = run_measured(rscript_cmd, REPO)
            times["rscript"].append(m.seconds)
            cpu["rscript"].append(m.cpu_seconds)
            line.append(f"rscript {m.seconds:.2f} s")
            elapsed, steps, status = e2e_run(stack, args.horizon, args.postcodes)
            times["e2e"].append(elapsed)
            all_steps.append(steps)
            e2e_statuses.append(status)
            line.append(f"e2e {elapsed:.2f} s")
            if not args.no_generic:
                m = run_measured(worker_cmd, REPO, {**env, "SCORING_SHARED_DESIGN": "0"})
                times["generic"].append(m.seconds)
                cpu["generic"].append(m.cpu_seconds)
                generic_statuses.append(stack.blobs.read_json("results", "bench/status.json"))
                line.append(f"generic {m.seconds:.2f} s")
            print(f"repeat {i + 1}/{args.repeats}: " + "  ".join(line) + f"  (load {os.getloadavg()[0]:.1f})",
                  flush=True)
        functions_mb = high_water_kb(stack.host.process.pid) / 1024
        assert stack.standin.groups() == []
    finally:
        stack.stop()

    ratios = {k: [v / r for v, r in zip(times[k], times["rscript"], strict=False)]
              for k in ("worker", "e2e", "generic")}
    for k in ("rscript", "worker", "generic", "e2e"):
        if times[k]:
            print(f"{k:8s} seconds: {spread(times[k])}")
    for k in ("rscript", "worker", "generic"):
        if cpu[k]:
            print(f"{k:8s} CPU seconds (process and its R nodes): {spread(cpu[k])}")
    if statuses:
        print_phases("worker phases", statuses)
        print(f"worker peak RSS (python + R nodes): {spread(worker_mb)} MB")
    if generic_statuses:
        print_phases("generic worker phases", generic_statuses)
    print_phases("worker phases inside e2e", e2e_statuses)
    print_steps(all_steps)
    print(f"functions_peak_mb {functions_mb:.0f}  (dev host process, the Functions app; VmHWM)")
    for k in ("generic", "worker", "e2e"):
        if ratios[k]:
            print(f"{k}_vs_rscript per repeat: {spread(ratios[k])}")
    if args.scale:
        print(f"e2e30k_vs_rscript {statistics.median(ratios['e2e']):.3f}")
        return
    if ratios["generic"]:
        print(f"generic_vs_rscript {statistics.median(ratios['generic']):.3f}")
    print(f"worker_vs_rscript {statistics.median(ratios['worker']):.3f}")
    print(f"e2e_vs_rscript {statistics.median(ratios['e2e']):.3f}")


if __name__ == "__main__":
    main()
