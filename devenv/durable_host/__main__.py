"""python -m devenv.durable_host --app function_app --port 7071 --state-dir DIR"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from pathlib import Path

from .host import REPO_ROOT, DevHost, load_settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devenv.durable_host", description=__doc__)
    parser.add_argument("--app", default="function_app", help="importable module exposing `app`")
    parser.add_argument("--app-dir", type=Path, default=REPO_ROOT, help="directory put on sys.path")
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument("--state-dir", type=Path, default=REPO_ROOT / ".dev" / "durable")
    parser.add_argument("--settings", type=Path, help="local.settings.json whose Values become app settings")
    parser.add_argument("--task-hub", default="TestHubName")
    parser.add_argument("--activity-workers", type=int, default=8)
    parser.add_argument("--blob-poll-interval", type=float, default=2.0, help="seconds between blob listings")
    parser.add_argument("--completions-per-episode", type=int, default=1,
                        help="opt-in batching of completions for big fan-outs (default 1, the safe rule)")
    parser.add_argument("--no-schedule", action="store_true", help="do not fire timer triggers on schedule")
    parser.add_argument("--function-key-env", metavar="NAME",
                        help="require the function key held in this environment variable on /api routes "
                             "(x-functions-key header or ?code=); a variable, so the key stays out of `ps`")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("azure").setLevel(logging.WARNING)
    if args.settings:
        load_settings(args.settings)
    host = DevHost(args.app, args.state_dir, args.port, app_dir=args.app_dir, task_hub=args.task_hub,
                   activity_workers=args.activity_workers, schedule_timers=not args.no_schedule,
                   blob_poll_interval=args.blob_poll_interval,
                   completions_per_episode=args.completions_per_episode,
                   function_key=os.environ.get(args.function_key_env, "") if args.function_key_env else "")
    if args.function_key_env and not host.http_functions.function_key:
        parser.error(f"--function-key-env {args.function_key_env}: that variable is not set or empty")
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    host.start()
    stopped.wait()
    logging.getLogger("devenv.durable_host").info("Stopping the dev host")
    host.stop()


if __name__ == "__main__":
    main()
