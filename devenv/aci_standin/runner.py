"""Runs one "container" for the stand-in: `python -m devenv.aci_standin.runner GROUP_DIR -- cmd...`.

The stand-in starts this detached (its own session), so the process outlives a stand-in restart. All
that the stand-in needs to know later is in GROUP_DIR:
  output.log   stdout and stderr of the command
  runner.json  {"pid", "child_pid", "start_time"} once the command has started
  exit.json    {"exit_code", "finish_time"} once it has exited
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

# What a shell reports for a command that cannot be executed.
EXIT_CANNOT_EXECUTE = 127


def utc_now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def exit_code_of(returncode: int) -> int:
    """Killed by signal N shows as 128+N, as in a container."""
    return 128 - returncode if returncode < 0 else returncode


def run(group_dir: Path, command: list[str]) -> int:
    with open(group_dir / "output.log", "ab", buffering=0) as log:
        try:
            child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        except OSError as exc:
            start = utc_now()
            log.write(f"aci stand-in: cannot start {command[0]!r}: {exc}\n".encode())
            write_json_atomic(group_dir / "runner.json", {"pid": os.getpid(), "child_pid": None,
                                                          "start_time": start})
            write_json_atomic(group_dir / "exit.json", {"exit_code": EXIT_CANNOT_EXECUTE,
                                                        "finish_time": utc_now()})
            return EXIT_CANNOT_EXECUTE

        def forward(signum: int, _frame: FrameType | None) -> None:
            child.send_signal(signum)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        write_json_atomic(group_dir / "runner.json", {"pid": os.getpid(), "child_pid": child.pid,
                                                      "start_time": utc_now()})
        code = exit_code_of(child.wait())
    write_json_atomic(group_dir / "exit.json", {"exit_code": code, "finish_time": utc_now()})
    return code


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m devenv.aci_standin.runner GROUP_DIR -- command...", file=sys.stderr)
        return 2
    return run(Path(argv[0]), argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
