"""python -m devenv.aci_standin --state-dir DIR [--host 127.0.0.1] [--port 0]"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from devenv.aci_standin.server import serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devenv.aci_standin", description=__doc__)
    parser.add_argument("--state-dir", type=Path, required=True,
                        help="CA, endpoint file and container groups live here (reused on restart)")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    parser.add_argument("--port", type=int, default=0,
                        help="0: the previous port in STATE_DIR if free, else any free port")
    args = parser.parse_args(argv)
    serve(args.state_dir, args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
