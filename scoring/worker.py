"""Score one shard: download the models (few range requests, in parallel), score in R, write the results.

Downloads overlap with scoring: the pack ranges downloaded by the time R is free become one batch, one rpy2 call,
which R fans out over every core (PSOCK nodes). A postcode that fails is reported with its reason; the others
are scored.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from . import r_session
from .blobstore import BlobChanged, BlobNotFound, BlobStore
from .errors import typed_one_line
from .exit_codes import EXIT_FATAL, EXIT_OK, EXIT_PARTIAL
from .job import Job
from .modelstore import Manifest, ModelStore, ModelStoreError, sha256
from .profiles import write_shard_profiles
from .secrets import scrub_json
from .timestamps import now_micros

DOWNLOAD_THREADS = 8
# Models per node and call: a node holds its part of a batch at once (~90 KB per slim glm and its rows; 1,000
# keep a node near 200 MB). Larger batches save little once past a few hundred.
BATCH_PER_CORE = 1000
log = logging.getLogger("scoring")


class FatalShardError(RuntimeError):
    """The shard cannot run; the message is the one-line reason."""


@dataclass
class ShardStatus:
    model: str
    version: str
    run_id: str
    shard: int
    started: str
    postcodes_requested: int = 0
    scored: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    rows: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    cores: int = 1
    shared_design: int = 0  # postcodes scored from a design shared with others (shared_design.R)
    input_etag: str = ""
    error: str = ""
    exit_code: int = EXIT_OK
    finished: str = ""

    def to_json(self) -> dict:
        return scrub_json(dict(self.__dict__))  # reasons can quote what model code read from the env


@dataclass(frozen=True)
class PackRange:
    blob: str
    start: int
    end: int
    postcodes: tuple[str, ...]


def plan_ranges(manifest: Manifest, postcodes: list[str]) -> list[PackRange]:
    """One range request per pack: from the first needed model to the end of the last one."""
    by_pack: dict[str, list[str]] = {}
    for pc in postcodes:
        by_pack.setdefault(manifest.models[pc].blob, []).append(pc)
    ranges = []
    for blob, pcs in sorted(by_pack.items()):
        entries = [manifest.models[pc] for pc in pcs]
        start = min(e.offset for e in entries)
        end = max(e.offset + e.length for e in entries)
        ranges.append(PackRange(blob, start, end, tuple(pcs)))
    return ranges


def run_shard(job: Job, blobs: BlobStore, workdir: Path, cores: int | None = None) -> ShardStatus:
    t0 = time.perf_counter()
    cores = cores or r_session.available_cores()
    status = ShardStatus(job.model, job.version, job.run_id, job.shard, now_micros(), cores=cores)
    store = ModelStore(blobs, job.models_container)
    model_dir = workdir / "models"
    model_dir.mkdir(parents=True, exist_ok=True)
    input_path = workdir / "input.csv"
    with ThreadPoolExecutor(DOWNLOAD_THREADS) as pool:
        # Storage work runs in threads while R spawns its nodes (rpy2 releases the GIL inside R).
        manifest_future = pool.submit(_read_manifest, store, job)
        input_future = pool.submit(blobs.download_to_file, job.input_container, job.input_blob, str(input_path),
                                   job.input_etag)
        r_session.call("spawn_isolated_nodes", cores, str(r_session.R_DIR / "score.R"))
        try:
            status.version, manifest = manifest_future.result()
            requested = list(job.postcodes) if job.postcodes is not None else manifest.postcodes
            status.postcodes_requested = len(requested)
            todo = [pc for pc in requested if pc in manifest.models]
            for pc in requested:
                if pc not in manifest.models:
                    status.failed[pc] = f"no model for this postcode in {job.model}/{status.version}"
            futures = [pool.submit(_fetch_range, store, manifest, r, model_dir) for r in plan_ranges(manifest, todo)]
            scorer_path = ""
            scorer = store.read_scorer(manifest)
            if scorer is not None:
                (workdir / "scorer.R").write_bytes(scorer)
                scorer_path = str(workdir / "scorer.R")
            try:
                status.input_etag = input_future.result().etag
            except BlobNotFound as e:
                raise FatalShardError(f"input data missing: {e}") from None
            except BlobChanged as e:
                raise FatalShardError(f"input data changed since the run was planned: {e}") from None
            status.timings["prepare"] = time.perf_counter() - t0
            try:
                # Before start_nodes: the profiles say which input columns to read as text. A scorer.R gets
                # the rows as they are, typed by nothing but the CSV reader.
                profiles = write_shard_profiles(manifest, [] if scorer_path else todo, workdir / "profiles.json",
                                                job.ts_max_gap_days)
                r_session.call("prepare_isolated_models", str(profiles), str(r_session.R_DIR / "model_aware.R"))
                r_session.call("start_isolated_nodes", str(r_session.R_DIR / "score.R"), str(input_path), todo,
                               scorer_path, job.horizon or 0)
            except r_session.RError as e:
                raise FatalShardError(str(e)) from None
            with_input = set(r_session.call("input_postcodes"))
            status.timings["r_start"] = time.perf_counter() - t0
            pending = set(futures)
            while pending:
                # Every range downloaded by now is one batch: fewer, larger calls to the nodes (and larger
                # shared designs) when storage is faster than scoring, overlap when it is not.
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                batch = []
                for future in done:
                    fetched, failed = future.result()
                    status.failed.update(failed)
                    for m in fetched:
                        if m.postcode in with_input:
                            batch.append(m)
                        else:
                            status.failed[m.postcode] = "no input rows for this postcode"
                step = BATCH_PER_CORE * cores
                for part in (batch[i:i + step] for i in range(0, len(batch), step)):
                    failures = r_session.call("score_batch_isolated", [m.postcode for m in part],
                                              [m.file for m in part], [m.offset for m in part],
                                              [m.size for m in part])
                    status.failed.update(r_session.named_strings(failures))
            status.timings["scored"] = time.perf_counter() - t0
            results_path = workdir / "results.csv"
            status.rows = int(r_session.call("write_results", str(results_path), job.model, status.version)[0])
            status.shared_design = int(r_session.call("shared_design_total")[0])
        finally:
            r_session.call("stop_nodes")
    blobs.upload_file(job.output_container, job.results_blob, str(results_path))
    status.scored = sorted(pc for pc in todo if pc not in status.failed)
    status.exit_code = EXIT_PARTIAL if status.failed else EXIT_OK
    status.timings["total"] = time.perf_counter() - t0
    status.finished = now_micros()
    blobs.write_json(job.output_container, job.status_blob, status.to_json())
    return status


def _read_manifest(store: ModelStore, job: Job) -> tuple[str, Manifest]:
    try:
        version = store.resolve_version(job.model, job.version)
        return version, store.read_manifest(job.model, version)
    except ModelStoreError as e:
        raise FatalShardError(str(e)) from None


@dataclass(frozen=True)
class FetchedModel:
    postcode: str
    file: str  # the downloaded pack range, one file for all its models
    offset: int
    size: int


def _fetch_range(store: ModelStore, manifest: Manifest, r: PackRange,
                 model_dir: Path) -> tuple[list[FetchedModel], dict[str, str]]:
    """Download one pack range to one file; verify each model's sha256. R reads the models as slices of
    that file (creating one file per model cost more than scoring a tenth of them)."""
    try:
        data = store.read_pack_range(manifest, r.blob, r.start, r.end)
    except Exception as e:  # noqa: BLE001 - any storage failure marks these postcodes, with the reason
        return [], {pc: f"model download failed: {typed_one_line(e)}" for pc in r.postcodes}
    path = model_dir / f"{r.blob.replace('/', '_')}-{r.start}.bin"
    path.write_bytes(data)
    fetched, failed = [], {}
    for pc in r.postcodes:
        e = manifest.models[pc]
        at = e.offset - r.start
        if at + e.length > len(data) or sha256(data[at:at + e.length]) != e.sha256:
            failed[pc] = f"model blob does not match its sha256 in the manifest ({e.blob}@{e.offset})"
            continue
        fetched.append(FetchedModel(pc, str(path), at, e.length))
    return fetched, failed


def write_failure_status(blobs: BlobStore, job: Job, reason: str, started: str) -> None:
    status = ShardStatus(job.model, job.version, job.run_id, job.shard, started, error=reason,
                         exit_code=EXIT_FATAL, finished=now_micros())
    blobs.write_json(job.output_container, job.status_blob, status.to_json())

