"""`make demo`: the daily scoring run, end to end, on this machine.

Starts Azurite, the ARM stand-in for ACI and the Durable dev host; trains and registers sample models;
uploads tomorrow's input; fires the daily timer; shows progress; prints a summary; shuts everything down.

    python -m devenv.demo [--postcodes 300] [--horizon 60] [--keep-running]

--keep-running (`make up`) leaves the stack up after the run until Ctrl-C, so that a person can open the
dashboard, watch runs, start new ones from the page and look at the results.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from devenv.azurite import REPO
from devenv.samples import train_sample_models
from devenv.stack import start_stack

DEMO_DIR = REPO / ".dev" / "demo"


def say(text: str) -> None:
    print(text, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postcodes", type=int, default=300)
    parser.add_argument("--horizon", type=int, default=60)
    parser.add_argument("--keep-running", action="store_true", help="keep the stack up until Ctrl-C")
    args = parser.parse_args()
    work = DEMO_DIR / "work"
    models, input_csv = work / "models", work / "input.csv"
    start_day = datetime.now(UTC).date() + timedelta(days=1)

    # Trained three days ago, scored from tomorrow: the ets models forecast 3 days further and publish only
    # the input's dates (each model records its training end).
    train_end = start_day - timedelta(days=4)
    say(f"1/6 training {args.postcodes} sample models (glm, every 10th ets) on data up to {train_end} ...")
    train_sample_models(models, args.postcodes, "mixed", input_csv, start_day, args.horizon, train_end=train_end)

    say("2/6 starting Azurite, the ARM stand-in for ACI and the Durable dev host ...")
    # The blob trigger would start a second run for the uploaded input; the demo shows the daily timer run.
    stack = start_stack(DEMO_DIR / "local", {"DEFAULT_HORIZON_DAYS": str(args.horizon)},
                        host_args=["--blob-poll-interval", "86400"])
    try:
        say(f"    host {stack.base_url}, ACI stand-in {stack.standin.endpoint}, Azurite :{stack.azurite.port}")
        say(f"    dashboard {stack.base_url}/api/dashboard  (open it to watch the run)")
        say("3/6 registering the models as parcels/v1 (champion) ...")
        env = {**os.environ, "SCORING_STORAGE_CONNECTION_STRING": stack.azurite.connection_string}
        subprocess.run([sys.executable, "-m", "scoring", "register", "--model", "parcels", "--version", "v1",
                        "--from", str(models), "--champion"], env=env, check=True, cwd=REPO)

        blob = f"{stack.settings['INPUT_PREFIX']}{start_day.isoformat()}.csv"
        say(f"4/6 uploading input {stack.settings['INPUT_CONTAINER']}/{blob} ...")
        stack.blobs.write_bytes(stack.settings["INPUT_CONTAINER"], blob, input_csv.read_bytes())

        say("5/6 firing the daily timer (POST /admin/functions/daily_scoring) ...")
        t0 = time.monotonic()
        stack.post("/admin/functions/daily_scoring", {"input": ""}).raise_for_status()
        run_id = f"daily-parcels-{datetime.now(UTC).date().isoformat()}"
        last = [""]

        def show(view: dict) -> None:
            p = view.get("progress") or {}
            line = (f"    {view['state']:<10} stage {p.get('stage', '?'):<10} shards {p.get('shards_done', 0)}/"
                    f"{p.get('shards_total', 0)} (running {p.get('shards_running', 0)})  postcodes scored "
                    f"{p.get('postcodes_scored', 0)}/{p.get('postcodes_total', 0)}, "
                    f"failed {p.get('postcodes_failed', 0)}")
            if line != last[0]:
                say(line)
                last[0] = line

        view = stack.wait_for_run(run_id, timeout=1800, on_progress=show)
        rc = summarise(stack, run_id, view, time.monotonic() - t0)
        if args.keep_running:
            say(f"the stack keeps running: dashboard {stack.base_url}/api/dashboard (input blob for a new run: "
                f"{blob}); Ctrl-C to stop")
            wait_for_interrupt()
        return rc
    finally:
        say("shutting down ...")
        stack.stop()


def wait_for_interrupt() -> None:
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


def summarise(stack, run_id: str, view: dict, elapsed: float) -> int:
    """Print the summary and copy the results locally; 0 when the run published and left no group."""
    say("6/6 summary")
    left = stack.standin.groups()
    if view["state"] not in ("completed", "completed_with_failures"):
        say(f"    run {run_id} ended {view['state']}: {json.dumps(view.get('errors'), indent=2)}")
        return 1
    local = DEMO_DIR / "results" / run_id
    local.mkdir(parents=True, exist_ok=True)
    for key in ("results", "manifest"):
        container, _, name = view[key].partition("/")
        (local / Path(name).name).write_bytes(stack.blobs.read_bytes(container, name))
    say(f"    run {run_id}: {view['state']} in {elapsed:.1f} s")
    say(f"    postcodes scored {view['postcodes_scored']}, failed {view['postcodes_failed_count']}, "
        f"rows {view['rows']}, shards {len(view['shards'])}")
    say(f"    results  {view['results']} (Azurite) -> copied to {local / 'results.csv'}")
    say(f"    manifest {view['manifest']} -> copied to {local / 'manifest.json'}")
    say(f"    time series: each ets model records its training end; forecasts cover the input's dates only; "
        f"warnings: {view.get('warnings') or 'none'}")
    say(f"    container groups left: {len(left)}")
    say(f"    dashboard {stack.base_url}/api/dashboard")
    return 0 if not left else 1


if __name__ == "__main__":
    sys.exit(main())
