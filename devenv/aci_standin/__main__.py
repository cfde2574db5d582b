"""python -m devenv.aci_standin --state-dir DIR [--host 127.0.0.1] [--port 0] [--pull-seconds 0.5]"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from devenv.aci_standin.server import serve
from devenv.aci_standin.store import DEFAULT_PULL_SECONDS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devenv.aci_standin", description=__doc__)
    parser.add_argument("--state-dir", type=Path, required=True,
                        help="CA, endpoint file and container groups live here (reused on restart)")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    parser.add_argument("--port", type=int, default=0,
                        help="0: the previous port in STATE_DIR if free, else any free port")
    parser.add_argument("--pull-seconds", type=float, default=DEFAULT_PULL_SECONDS,
                        help="how long each new group's simulated image pull lasts (provisioning Pending/Creating)")
    args = parser.parse_args(argv)
    serve(args.state_dir, args.host, args.port, args.pull_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
