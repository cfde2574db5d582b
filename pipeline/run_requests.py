"""What a run is asked to do, validated at the door: every bad field gets a message naming it."""

from __future__ import annotations

import json

from scoring.names import InvalidName, check_blob_path, check_model_name, check_postcodes, check_version

from .payloads import RunRequest, Trigger
from .settings import Settings

MAX_BODY_BYTES = 256 * 1024
MAX_POSTCODES = 20_000
LATEST_INPUT = "latest"
FIELDS = {"model", "version", "input", "postcodes", "horizon", "shardSize", "dryRun"}


class RequestError(ValueError):
    def __init__(self, field: str, problem: str, status: int = 400):
        super().__init__(f"{field}: {problem}" if field else problem)
        self.field = field
        self.problem = problem
        self.status = status


def parse_run_body(body: bytes, settings: Settings) -> RunRequest:
    """POST /api/runs body -> RunRequest, or RequestError naming the field."""
    if len(body) > MAX_BODY_BYTES:
        raise RequestError("", f"request body is {len(body)} bytes; the limit is {MAX_BODY_BYTES}", status=413)
    try:
        raw = json.loads(body or b"{}")
    except ValueError as e:
        raise RequestError("body", f"malformed JSON ({e})") from None
    if not isinstance(raw, dict):
        raise RequestError("body", "must be a JSON object")
    unknown = sorted(set(raw) - FIELDS)
    if unknown:
        raise RequestError(unknown[0], f"unknown field; allowed: {', '.join(sorted(FIELDS))}")
    if "input" not in raw:
        raise RequestError("input", f"required: a blob in container '{settings.input_container}', or "
                                    f"'{LATEST_INPUT}'")
    return RunRequest(
        model=_field("model", raw.get("model", settings.default_model), check_model_name),
        version=_field("version", raw.get("version", "champion"), lambda v: check_version(v, allow_alias=True)),
        input_blob=_input_blob(raw["input"]),
        postcodes=_postcodes(raw.get("postcodes")),
        horizon=_int("horizon", raw.get("horizon", settings.default_horizon_days), 1, settings.max_horizon_days),
        shard_size=None if raw.get("shardSize") is None else _int("shardSize", raw["shardSize"], 1, MAX_POSTCODES),
        trigger=Trigger.HTTP,
        dry_run=_bool("dryRun", raw.get("dryRun", False)),
    )


def scheduled_request(settings: Settings, trigger: Trigger, input_blob: str = LATEST_INPUT) -> RunRequest:
    """The timer's and the blob event's run: the default model's champion on the given input."""
    return RunRequest(model=settings.default_model, version="champion", input_blob=_input_blob(input_blob),
                      postcodes=None, horizon=settings.default_horizon_days, shard_size=None, trigger=trigger)


def _field(name: str, value: object, check) -> str:
    try:
        return check(value)
    except InvalidName as e:
        raise RequestError(name, str(e)) from None


def _input_blob(value: object) -> str:
    if value == LATEST_INPUT:
        return value
    return _field("input", value, lambda v: check_blob_path(v, "input blob"))


def _postcodes(value: object) -> list[str] | None:
    if value is None:  # omitted: every postcode of the version
        return None
    return sorted(_field("postcodes", value, lambda v: check_postcodes(v, MAX_POSTCODES)))


def _int(name: str, value: object, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise RequestError(name, f"must be an integer, got {json.dumps(value)}")
    if not low <= value <= high:
        raise RequestError(name, f"{value} is out of range {low}..{high}")
    return value


def _bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise RequestError(name, f"must be true or false, got {json.dumps(value)}")
    return value
