"""`python -m scoring`: the container's entrypoint (`run`) and the data scientists' CLI.

    python -m scoring run                       score the job in SCORING_JOB / SCORING_JOB_BLOB
    python -m scoring register --model M --version V --from DIR [--champion] [--training-end YYYY-MM-DD]
    python -m scoring register --model M --version V --from-blob C/ARCHIVE --result-blob C/RESULT.json
        --output C/PREFIX/
                                                (server-side registration of an uploaded version)
    python -m scoring champion --model M --version V
    python -m scoring versions --model M

Storage: SCORING_STORAGE_ACCOUNT_URL (managed identity / az login) or, for Azurite,
SCORING_STORAGE_CONNECTION_STRING. Exit codes of `run`: 0 all scored, 3 some postcodes failed (see the
shard's status.json), 2 the shard could not run (one-line reason on stderr), 1 an unexpected crash.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import one_line
from .exit_codes import EXIT_FATAL
from .names import InvalidName
from .output_scrub import scrub_process_output

if TYPE_CHECKING:
    from .blobstore import BlobStore

# The Azure SDK, R and the worker are imported where they are used: `run` forks its output scrubber first,
# and the process that stays behind to scrub should not hold them (scoring/output_scrub.py).


def connect_storage(env=os.environ) -> BlobStore:
    from .blobstore import BlobStore

    # AZURE_CLIENT_ID: in a container, the worker identity's client id (never the app's).
    return BlobStore.connect(account_url=env.get("SCORING_STORAGE_ACCOUNT_URL", ""),
                             connection_string=env.get("SCORING_STORAGE_CONNECTION_STRING", ""),
                             client_id=env.get("AZURE_CLIENT_ID") or None)


def command_run(_args: argparse.Namespace) -> int:
    from .job import JobError, job_from_environment
    from .timestamps import now_micros
    from .worker import FatalShardError, run_shard, write_failure_status

    started = now_micros()
    job = None
    try:
        blobs = connect_storage()
        job = job_from_environment(os.environ, blobs.read_bytes)
        with tempfile.TemporaryDirectory(prefix="scoring-") as tmp:
            status = run_shard(job, blobs, Path(tmp))
    except (FatalShardError, JobError, ValueError, LookupError, OSError) as e:
        reason = one_line(e)
        print(f"scoring: shard could not run: {reason}", file=sys.stderr)
        if job is not None:
            try:
                write_failure_status(blobs, job, reason, started)
            except Exception:  # noqa: BLE001 - storage may be what failed; stderr already has the reason
                pass
        return EXIT_FATAL
    except Exception as e:  # noqa: BLE001 - storage errors from the SDK (unreachable account, auth)
        if type(e).__module__.startswith("azure."):
            print(f"scoring: shard could not run: storage error: {one_line(e)}", file=sys.stderr)
            return EXIT_FATAL
        raise
    summary = {"scored": len(status.scored), "failed": len(status.failed), "rows": status.rows,
               "seconds": round(status.timings["total"], 3), "exit_code": status.exit_code}
    print(json.dumps(summary))
    for pc, reason in sorted(status.failed.items())[:20]:
        print(f"scoring: postcode {pc} failed: {reason}", file=sys.stderr)
    return status.exit_code


def command_register(args: argparse.Namespace) -> int:
    if args.from_blob:
        return command_register_staged(args)
    from .modelstore import ModelStore
    from .registration import register_version

    store = ModelStore(connect_storage(), args.container)
    manifest = register_version(store, args.model, args.version, Path(args.source), champion=args.champion,
                                check_models=not args.no_check, slim=not args.no_slim,
                                extra_packages=tuple(args.r_package), training_end=args.training_end,
                                step=args.step)
    slimmed = sum(e.slimmed for e in manifest.models.values())
    print(f"registered {args.model}/{args.version}: {len(manifest.models)} models in {len(manifest.packs)} "
          f"pack(s), {slimmed} slimmed for scoring, R {manifest.r_version}"
          + (", now champion" if args.champion else ""))
    assumed = manifest.dates_assumed()
    if assumed:
        print(f"note: {len(assumed)} time-series model(s) have no training end date, e.g. {assumed[0]}; "
              "their forecast dates will be assumed (pass --training-end or add training_end.csv)")
    return 0


def command_register_staged(args: argparse.Namespace) -> int:
    """Register an uploaded archive; the outcome (or the refusal, with why) goes to --result-blob."""
    from .modelstore import ModelStoreError
    from .staged import ArchiveError, register_staged, verified_line, write_result

    blobs = connect_storage()
    try:
        if not args.output:
            raise ValueError("--from-blob needs --output <container>/<prefix>/ (the registration's staging area)")
        if args.champion:  # the version is only built here; the app publishes it and moves the champion
            raise ValueError("--champion does not apply to --from-blob: the app promotes after publishing")
        result = register_staged(blobs, args.model, args.version, args.from_blob, args.output,
                                 check_models=not args.no_check, slim=not args.no_slim,
                                 extra_packages=tuple(args.r_package))
        code = 0
    except (ModelStoreError, InvalidName, ArchiveError, ValueError, LookupError) as e:
        result, code = {"ok": False, "error": one_line(e)}, 2
    except Exception as e:  # noqa: BLE001 - an error raised in R (rpy2) is a refusal too; its text says why
        if type(e).__module__.startswith("azure."):
            raise
        result, code = {"ok": False, "error": f"R: {one_line(e)}"}, 2
    if args.result_blob:
        write_result(blobs, args.result_blob, result)
    # Last: the app reads the verified digest from this container's log, which no other container can write.
    print(verified_line(result) if code == 0 else f"scoring register: {result['error']}",
          file=sys.stdout if code == 0 else sys.stderr, flush=True)
    return code


def command_champion(args: argparse.Namespace) -> int:
    from .modelstore import ModelStore

    ModelStore(connect_storage(), args.container).set_alias(args.model, args.version)
    print(f"{args.model}: champion is now {args.version}")
    return 0


def command_versions(args: argparse.Namespace) -> int:
    from .modelstore import ModelStore, ModelStoreError

    store = ModelStore(connect_storage(), args.container)
    try:
        champion = store.resolve_version(args.model, "champion")
    except ModelStoreError:
        champion = None
    for v in store.versions(args.model):
        print(v + ("  (champion)" if v == champion else ""))
    return 0


def main(argv: list[str] | None = None, own_process: bool = False) -> int:
    """`own_process`: this is the process's entry point (`python -m scoring`), so the container commands may
    fork their output scrubber. A caller inside another program (a test) must not fork it: the program's
    other threads would not exist in the child, and the caller would become the scrubber."""
    parser = argparse.ArgumentParser(prog="python -m scoring", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="score the job given in the environment (the container entrypoint)")
    reg = sub.add_parser("register", help="register a folder of <postcode>.rds files as a new model version")
    reg.add_argument("--model", required=True)
    reg.add_argument("--version", required=True)
    source = reg.add_mutually_exclusive_group(required=True)
    source.add_argument("--from", dest="source", help="folder of <postcode>.rds [+ scorer.R]")
    source.add_argument("--from-blob", help="<container>/<blob>: a tar/zip of <postcode>.rds [+ scorer.R]")
    reg.add_argument("--result-blob", help="<container>/<blob> to write the outcome to (with --from-blob)")
    reg.add_argument("--output", help="<container>/<prefix>/ to build the version in (with --from-blob); "
                                      "the app copies it into the models container")
    reg.add_argument("--champion", action="store_true", help="also make this version the champion")
    reg.add_argument("--r-package", action="append", default=[], help="an R package the models need")
    reg.add_argument("--training-end", metavar="YYYY-MM-DD",
                     help="last training day of the time-series models (training_end.csv sets it per postcode)")
    reg.add_argument("--step", metavar="STEP",
                     help="calendar step of the time-series models: '1 day', '2 days', '1 week', '1 month' "
                          "(default: from the series' frequency; training_end.csv's step column sets it per postcode)")
    reg.add_argument("--no-slim", action="store_true", help="store the .rds files exactly as given")
    reg.add_argument("--no-check", action="store_true",
                     help="skip loading each model in R (stores the files as given, unverified)")
    champ = sub.add_parser("champion", help="make a registered version the champion")
    champ.add_argument("--model", required=True)
    champ.add_argument("--version", required=True)
    ver = sub.add_parser("versions", help="list a model's versions")
    ver.add_argument("--model", required=True)
    for p in (reg, champ, ver):
        p.add_argument("--container", default=os.environ.get("MODELS_CONTAINER", "models"))
    args = parser.parse_args(argv)
    if own_process and (args.command == "run" or getattr(args, "from_blob", None)):  # the container commands run model
        scrub_process_output()  # code; all they write ends up in the container's logs. Returns in the child.
    logging.basicConfig(level=os.environ.get("SCORING_LOG_LEVEL", "WARNING"))
    if args.command == "run":
        return command_run(args)
    from .modelstore import ModelStoreError

    handler = {"register": command_register, "champion": command_champion, "versions": command_versions}
    try:
        return handler[args.command](args)
    except (ModelStoreError, InvalidName, ValueError) as e:
        print(f"scoring {args.command}: {one_line(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(own_process=True))
