"""The worker's job, as ACI gives it: environment variables, or a job-spec blob named by one.

    SCORING_JOB                 the job as JSON, or
    SCORING_JOB_BLOB            "<container>/<path>" of a JSON job spec (for shards with many postcodes)
    SCORING_STORAGE_CONNECTION_STRING   development (Azurite) only; passed as a secure value
    SCORING_STORAGE_ACCOUNT_URL         in Azure, with DefaultAzureCredential (AZURE_CLIENT_ID selects a
                                        user-assigned managed identity)

Job fields: model, version (a version or "champion"), input {container, blob, optional etag}, postcodes
(list, or null for every postcode of the version), output {container, prefix}, optional horizon (rows expected
per postcode), models_container (default "models") and ts_max_gap_days (how long after a time-series model's
training end its input may start).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from .names import InvalidName, check_blob_path, check_model_name, check_postcodes, check_prefix, check_version

KNOWN_FIELDS = {"model", "version", "input", "postcodes", "output", "horizon", "models_container", "run_id",
                "shard", "ts_max_gap_days"}


class JobError(ValueError):
    """The job cannot run; the message names the field and the problem."""


@dataclass(frozen=True)
class Job:
    model: str
    version: str
    input_container: str
    input_blob: str
    postcodes: tuple[str, ...] | None
    output_container: str
    output_prefix: str
    horizon: int | None = None
    models_container: str = "models"
    input_etag: str = ""  # the input version the run was planned on; any other version is refused
    run_id: str = ""
    shard: int = 0
    ts_max_gap_days: int | None = None

    @property
    def results_blob(self) -> str:
        return self.output_prefix + "results.csv"

    @property
    def status_blob(self) -> str:
        return self.output_prefix + "status.json"

    def to_json(self) -> dict:
        return {
            "model": self.model, "version": self.version,
            "input": {"container": self.input_container, "blob": self.input_blob, "etag": self.input_etag},
            "postcodes": list(self.postcodes) if self.postcodes is not None else None,
            "output": {"container": self.output_container, "prefix": self.output_prefix},
            "horizon": self.horizon, "models_container": self.models_container,
            "run_id": self.run_id, "shard": self.shard, "ts_max_gap_days": self.ts_max_gap_days,
        }


def parse_job(raw: object) -> Job:
    if isinstance(raw, str | bytes):
        try:
            raw = json.loads(raw)
        except ValueError as e:
            raise JobError(f"job spec is not valid JSON: {e}") from None
    if not isinstance(raw, dict):
        raise JobError("job spec must be a JSON object")
    unknown = set(raw) - KNOWN_FIELDS
    if unknown:
        raise JobError(f"job spec has unknown field(s): {', '.join(sorted(unknown))}")
    try:
        model = check_model_name(_required(raw, "model"))
        version = check_version(_required(raw, "version"), allow_alias=True)
        inp = _object(raw, "input")
        out = _object(raw, "output")
        postcodes = raw.get("postcodes")
        if postcodes is not None:  # null: every postcode of the version
            try:
                postcodes = tuple(check_postcodes(postcodes))
            except InvalidName as e:
                raise JobError(f"job field 'postcodes': {e}") from None
        horizon = raw.get("horizon")
        if horizon is not None and (not isinstance(horizon, int) or isinstance(horizon, bool) or horizon < 1):
            raise JobError(f"job field 'horizon' must be a positive integer, got {horizon!r}")
        gap = raw.get("ts_max_gap_days")
        if gap is not None and (not isinstance(gap, int) or isinstance(gap, bool) or gap < 0):
            raise JobError(f"job field 'ts_max_gap_days' must be a non-negative integer, got {gap!r}")
        return Job(
            model=model,
            version=version,
            input_container=_container(_required(inp, "container", "input.")),
            input_blob=check_blob_path(_required(inp, "blob", "input."), "input blob"),
            postcodes=postcodes,
            output_container=_container(_required(out, "container", "output.")),
            output_prefix=check_prefix(_required(out, "prefix", "output."), "output prefix"),
            horizon=horizon,
            models_container=_container(raw.get("models_container", "models")),
            input_etag=str(inp.get("etag") or ""),
            run_id=str(raw.get("run_id", "")),
            shard=int(raw.get("shard", 0)),
            ts_max_gap_days=gap,
        )
    except InvalidName as e:
        raise JobError(f"job spec: {e}") from None


def job_from_environment(env: Mapping[str, str], read_blob) -> Job:
    """SCORING_JOB wins; else SCORING_JOB_BLOB is read with read_blob(container, path) -> bytes."""
    if env.get("SCORING_JOB"):
        return parse_job(env["SCORING_JOB"])
    ref = env.get("SCORING_JOB_BLOB", "")
    if not ref:
        raise JobError("no job given: set SCORING_JOB (JSON) or SCORING_JOB_BLOB (<container>/<path>)")
    container, _, path = ref.partition("/")
    try:
        _container(container)
        check_blob_path(path, "job blob")
    except InvalidName as e:
        raise JobError(f"SCORING_JOB_BLOB: {e}") from None
    return parse_job(read_blob(container, path))


def _required(d: dict, key: str, where: str = "") -> object:
    if d.get(key) in (None, ""):
        raise JobError(f"job field '{where}{key}' is required")
    return d[key]


def _object(d: dict, key: str) -> dict:
    value = _required(d, key)
    if not isinstance(value, dict):
        raise JobError(f"job field '{key}' must be an object")
    return value


def _container(value: object) -> str:
    import re

    if not isinstance(value, str) or not re.fullmatch(r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]", value):
        raise JobError(f"invalid container name {value!r}: 3-63 lowercase letters, digits or single '-'")
    return value
