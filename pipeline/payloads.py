"""Everything that crosses an orchestration boundary, typed: run requests, plans, shard inputs and outcomes,
attempts, activity requests and results, and the states they carry.

How they travel (azure-functions-durable 1.7 with azure-functions 1.24; the installed SDK sources are the
reference): `json.dumps(value, default=_serialize_custom_object)` turns an object with `to_json` into the envelope
{"__class__": <class name>, "__module__": <module>, "__data__": obj.to_json()} (azure/functions/_durable_functions.py)
and `json.loads(text, object_hook=_deserialize_custom_object)` imports that module and calls
`<class>.from_json(__data__)`. Activity inputs and results (ActivityTriggerConverter), sub-orchestration and
orchestration inputs (CallSubOrchestratorAction, client.start_new) and custom status
(OrchestratorState.to_json_string) go through these hooks, so the other side receives the class that was sent.
An orchestration's output does not: TaskOrchestrationExecutor checks it with a plain `json.dumps` and fails the
orchestration for any other object, so orchestrators return `payload.to_json()` and readers call `from_json`.
Our `to_json` returns plain JSON (nested payloads as dicts, enums as their values), so only the outer object
carries an envelope and `from_json` rebuilds the nested ones from the field types.

Readers outside the SDK (function_app reading the durable status API) get envelopes or plain JSON: `decode`.

No I/O and no Azure SDK here: the orchestrators import this module.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Self, TypeVar

ENVELOPE_KEYS = frozenset({"__class__", "__module__", "__data__"})
# The external event that cancels a run (raised by POST /api/runs/{id}/cancel) and, forwarded, its shards.
CANCEL_EVENT = "cancel"


class PayloadError(ValueError):
    """A payload that does not match its type; the message names the field."""


# ------------------------------------------------------------------------------------------------- states


class Trigger(enum.StrEnum):
    TIMER = "timer"
    BLOB = "blob"
    HTTP = "http"
    RETRY = "retry"


class Stage(enum.StrEnum):
    """Where a run is, in its custom status."""

    PLANNING = "planning"
    SCORING = "scoring"
    CANCELLING = "cancelling"
    PUBLISHING = "publishing"
    DONE = "done"


class ShardState(enum.StrEnum):
    """A container attempt's state, and a shard's (its last attempt's)."""

    SUCCEEDED = "succeeded"  # exit 0, status.json agrees: every postcode scored
    PARTIAL = "partial"  # exit 3, status.json agrees: some postcodes failed, each with its reason
    EXITED = "exited"  # the container ended with an exit code; becomes one of the above or FAILED
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    REJECTED = "rejected"  # its output failed publish's validation: left out, with the reason

    @property
    def ok(self) -> bool:
        """The shard produced results that may be published."""
        return self in (ShardState.SUCCEEDED, ShardState.PARTIAL)


class RunState(enum.StrEnum):
    """A run's state as GET /api/runs/{id} reports it."""

    RUNNING = "running"
    COMPLETED = "completed"
    COMPLETED_WITH_FAILURES = "completed_with_failures"
    FAILED = "failed"
    CANCELLED = "cancelled"


# -------------------------------------------------------------------------------------------- the mechanism


class Payload:
    """Base of every payload dataclass: to_json / from_json as the durable SDK calls them."""

    def to_json(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_json(cls, data: Any) -> Self:
        if isinstance(data, cls):
            return data
        if not isinstance(data, dict):
            raise PayloadError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
        hints = _type_hints(cls)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PayloadError(f"{cls.__name__}: unknown field(s) {', '.join(unknown)}")
        values = {}
        for f in dataclasses.fields(cls):
            if f.name in data:
                values[f.name] = _build(hints[f.name], data[f.name], f"{cls.__name__}.{f.name}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise PayloadError(f"{cls.__name__}: field {f.name!r} is missing")
        return cls(**values)


P = TypeVar("P", bound="Payload")


def decode(value: Any, cls: type[P]) -> P:
    """A payload as a reader of the durable status API gets it: the SDK's envelope (as a dict or JSON text),
    the plain JSON of the payload (instances started before payloads were typed), or the object itself."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise PayloadError(f"{cls.__name__}: not JSON") from None
    if isinstance(value, dict) and ENVELOPE_KEYS <= value.keys():
        if (value["__module__"], value["__class__"]) != (cls.__module__, cls.__name__):
            raise PayloadError(f"expected a {cls.__name__}, got {value['__module__']}.{value['__class__']}")
        value = value["__data__"]
    return cls.from_json(value)


def _plain(value: Any) -> Any:
    if isinstance(value, Payload):
        return value.to_json()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


_HINTS: dict[type, dict[str, Any]] = {}


def _type_hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _build(tp: Any, value: Any, where: str) -> Any:
    """`value` (plain JSON) as type `tp`; PayloadError naming `where` when it does not fit."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        options = typing.get_args(tp)
        if value is None:
            if type(None) in options:
                return None
            raise PayloadError(f"{where} must not be null")
        (inner,) = [o for o in options if o is not type(None)]  # only `X | None` is used
        return _build(inner, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise PayloadError(f"{where} must be a list, got {type(value).__name__}")
        (item,) = typing.get_args(tp)
        return [_build(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise PayloadError(f"{where} must be an object, got {type(value).__name__}")
        _, item = typing.get_args(tp)
        return {str(k): _build(item, v, f"{where}.{k}") for k, v in value.items()}
    if value is None:
        raise PayloadError(f"{where} must not be null")
    if isinstance(tp, type) and issubclass(tp, Payload):
        return tp.from_json(value)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            raise PayloadError(f"{where}: {value!r} is not one of {', '.join(m.value for m in tp)}") from None
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, bool) or not isinstance(value, tp):
        raise PayloadError(f"{where} must be {tp.__name__}, got {type(value).__name__}")
    return value


# ------------------------------------------------------------------------------------------- the payloads


@dataclass(frozen=True)
class RunRequest(Payload):
    """What a run is asked to do (the score_run orchestration's input), validated by run_requests."""

    model: str
    version: str
    input_blob: str  # a blob in the input container, or "latest" under the input prefix
    postcodes: list[str] | None
    horizon: int
    shard_size: int | None
    trigger: Trigger
    dry_run: bool = False
    retry_of: str | None = None  # a rerun of this run's failed postcodes, merged into its results
    input_etag: str = ""  # a retry scores the input version its run was published from, or nothing
    # A retry's postcodes by reference (slim history): the failed ones of this failures.json (container/path).
    postcodes_blob: str | None = None


@dataclass(frozen=True)
class Timing(Payload):
    """The waits and retries of a run, fixed when it is planned (the orchestrators read no settings)."""

    poll_seconds: float
    deadline_minutes: float
    provisioning_deadline_minutes: float
    retry_interval_seconds: float
    retry_attempts: int
    shard_attempts: int
    quota_waits: int
    poll_first_seconds: float = 0.0  # the first poll interval, doubling up to poll_seconds (0: poll_seconds)


@dataclass(frozen=True)
class InputRef(Payload):
    """The input blob, and the version (ETag) of it the run was planned on."""

    container: str
    blob: str
    etag: str


@dataclass(frozen=True)
class ContainerSize(Payload):
    image: str
    cpu: float
    memory_gb: float


@dataclass(frozen=True)
class Estimate(Payload):
    """Expected container time and price of a plan."""

    groups: int
    vcpu_seconds: float
    gb_seconds: float
    price_usd: float


@dataclass(frozen=True)
class ShardPlan(Payload):
    index: int
    postcodes: list[str]


@dataclass(frozen=True)
class PlanRequest(Payload):
    """The plan_run activity's input."""

    request: RunRequest
    run_id: str
    today: str  # the orchestration's (replay-safe) date, YYYY-MM-DD
    started: str = ""  # the orchestration's (replay-safe) time: a run restarted under the same id plans anew


@dataclass(frozen=True)
class ShardInput(Payload):
    """The score_shard orchestration's input. Its postcodes are in `postcodes_blob` (RESULTS_CONTAINER),
    read by the create activity: history holds the reference, never the list (slim history)."""

    run_id: str
    index: int
    postcodes: int  # how many
    postcodes_blob: str
    model: str
    version: str
    input: InputRef
    horizon: int
    timing: Timing
    ts_max_gap_days: int | None = None


@dataclass(frozen=True)
class Plan(Payload):
    """A run, planned: the resolved version and input, the shards, what failed before any container.
    In memory and in its blob only (pipeline/plan_store.py); what crosses the boundary is its RunPlan."""

    run_id: str
    model: str
    version: str
    model_packages: dict[str, str]
    input: InputRef
    horizon: int
    trigger: Trigger
    retry_of: str | None
    subset: bool  # a run of some postcodes only (never moves `latest`)
    postcodes_total: int
    failed: dict[str, str]  # postcode -> why it cannot be scored
    not_in_input: int
    parallel_groups: int
    container: ContainerSize
    estimate: Estimate
    shards: list[ShardPlan]
    timing: Timing
    # Where `latest` may move (pipeline/revisions.py): forward by input time, then plan time; champion runs only.
    input_time: str = ""
    planned_at: str = ""
    champion: bool = False
    ts_max_gap_days: int | None = None  # how long after a time-series model's training end its input may start
    warnings: list[str] = field(default_factory=list)  # e.g. time-series dates assumed (model_checks)



@dataclass(frozen=True)
class ShardRef(Payload):
    """A planned shard by reference: its postcodes are in `blob` (RESULTS_CONTAINER, pipeline/plan_store.py)."""

    index: int
    size: int
    first: str
    last: str
    blob: str


@dataclass(frozen=True)
class RunPlan(Payload):
    """plan_run's answer: the Plan without its postcode lists, which stay in blobs (pipeline/plan_store.py).
    Its size grows with shards, not postcodes, and so does every payload made from it (slim history)."""

    run_id: str
    model: str
    version: str
    input: InputRef
    horizon: int
    trigger: Trigger
    retry_of: str | None
    subset: bool
    postcodes_total: int
    failed: int  # postcodes that failed at planning (each with its reason in the plan blob)
    parallel_groups: int
    container: ContainerSize
    estimate: Estimate
    shards: list[ShardRef]
    timing: Timing
    plan_blob: str  # the full Plan's JSON in RESULTS_CONTAINER
    input_time: str = ""
    planned_at: str = ""
    champion: bool = False
    ts_max_gap_days: int | None = None
    warnings: list[str] = field(default_factory=list)

    def shard_input(self, shard: ShardRef) -> ShardInput:
        return ShardInput(run_id=self.run_id, index=shard.index, postcodes=shard.size, postcodes_blob=shard.blob,
                          model=self.model, version=self.version, input=self.input, horizon=self.horizon,
                          timing=self.timing, ts_max_gap_days=self.ts_max_gap_days)


@dataclass(frozen=True)
class GroupRequest(Payload):
    """The create_container_group activity's input: one attempt of one shard."""

    shard: ShardInput
    attempt: int
    group: str  # the container group's name
    output_prefix: str  # where the worker writes results.csv and status.json


@dataclass(frozen=True)
class CreateResult(Payload):
    """create_container_group's answer. Transient ARM errors are raised instead (and retried durably)."""

    ok: bool
    reason: str = ""
    code: str | None = None
    quota: bool = False  # the regional quota is full: waited out, not a failure of the group
    cancelled: bool = False  # set by the orchestrator: the run was cancelled during a quota wait


# Group states (properties.instanceView.state) after which nothing more happens under restart policy Never.
# Only read from an instance view: a GET early in provisioning carries none.
FINAL_GROUP_STATES = frozenset({"Succeeded", "Failed", "Stopped"})


@dataclass(frozen=True)
class ContainerState(Payload):
    """get_container_state's answer: the group's and its container's state, as ARM reports them."""

    group_state: str | None  # properties.instanceView.state; None while ARM shows no instance view
    provisioning_state: str | None
    state: str | None  # container instanceView.currentState.state: Waiting/Running/Terminated/...
    exit_code: int | None
    start_time: str | None  # ISO 8601
    finish_time: str | None
    detail: str | None  # detailStatus / latest event message

    @property
    def terminated(self) -> bool:
        """The container will not run (again): it exited, was stopped, or the group failed to deploy.

        Without an instance view only a Failed provisioning is final (a GET early in provisioning has no
        instance view yet, whatever its provisioning state). Unknown or in-between states count as not
        terminated; callers keep a deadline for those.
        """
        return (self.state == "Terminated" or self.group_state in FINAL_GROUP_STATES
                or self.provisioning_state == "Failed")

    @property
    def has_started(self) -> bool:
        """The container is running or has run (provisioning, image pull and waiting are behind it)."""
        return self.state in ("Running", "Terminated")


@dataclass(frozen=True)
class LogsRequest(Payload):
    """save_container_logs' input: keep this group's logs in this blob."""

    group: str
    blob: str


@dataclass(frozen=True)
class ShardReport(Payload):
    """read_shard_status' answer: the worker's status.json as counts, with where it was read (the postcodes
    scored and failed, with reasons, stay in `<output_prefix>status.json`; publish reads them there)."""

    output_prefix: str
    scored: int = 0
    failed: int = 0
    rows: int = 0
    exit_code: int | None = None
    error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    started: str | None = None
    finished: str | None = None
    cores: int | None = None

    @property
    def status_blob(self) -> str:
        return self.output_prefix + "status.json"


@dataclass
class Attempt(Payload):
    """One container group of a shard, from create to delete."""

    attempt: int
    group: str
    state: ShardState = ShardState.FAILED
    reason: str = ""
    quota_waits: int = 0
    permanent: bool = False  # retrying cannot help (e.g. InaccessibleImage)
    exit_code: int | None = None
    started: str | None = None  # the container's own start and finish (ISO 8601)
    finished: str | None = None
    billed_from: str | None = None  # the orchestration's clock: group created ... group deleted
    billed_to: str | None = None
    logs: str | None = None  # container/blob the logs were saved to
    logs_error: str | None = None
    deleted: bool | None = None
    delete_error: str | None = None
    budget_waits: int = 0  # waits for the shared vCPU budget (pipeline/admission.py)


@dataclass(frozen=True)
class ShardOutcome(Payload):
    """score_shard's output. It never raises: a failure is an outcome, with its reason."""

    index: int
    state: ShardState
    reason: str = ""
    status: ShardReport | None = None  # the last attempt's report, when it succeeded or was partial
    postcodes: int = 0
    attempts: list[Attempt] = field(default_factory=list)


@dataclass(frozen=True)
class Publication(Payload):
    """publish_run's input."""

    plan: RunPlan
    shards: list[ShardOutcome]


@dataclass(frozen=True)
class Published(Payload):
    """publish_run's answer."""

    results: str
    manifest: str
    rows: int
    postcodes_scored: int
    postcodes_failed_count: int
    failures: str  # container/path of the revision's failures.json (pipeline/failures.py)
    state: RunState
    cost: dict[str, float]
    revision: str = ""  # the revision this publish made current (pipeline/revisions.py)


@dataclass(frozen=True)
class FailuresWritten(Payload):
    """record_failures' answer, for a run that publishes nothing: where its failures are, and how many."""

    failures: str
    count: int


@dataclass(frozen=True)
class BudgetRequest(Payload):
    """acquire_vcpu's input: the container group that wants CONTAINER_CPU vCPU, and its run."""

    holder: str
    run: str


@dataclass(frozen=True)
class BudgetAnswer(Payload):
    """acquire_vcpu's answer."""

    granted: bool
    in_use: float
    quota: float


@dataclass(frozen=True)
class PublishFailed(Payload):
    """publish_run's answer when publishing cannot succeed (a permanent error: not retried)."""

    error: str


@dataclass
class Progress(Payload):
    """A running run's custom status (GET /api/runs/{id} shows it as `progress`)."""

    stage: Stage = Stage.PLANNING
    shards_total: int = 0
    shards_done: int = 0
    shards_running: int = 0
    postcodes_total: int = 0
    postcodes_scored: int = 0
    postcodes_failed: int = 0
    parallel_groups: int | None = None  # set once a full quota lowered it


@dataclass(frozen=True)
class ShardSummary(Payload):
    """A shard in the run's result: its outcome without the worker's report."""

    index: int
    state: ShardState
    reason: str
    attempts: list[Attempt]


@dataclass
class RunResult(Payload):
    """score_run's output."""

    run_id: str
    model: str
    trigger: Trigger
    state: RunState = RunState.FAILED
    errors: list[str] = field(default_factory=list)
    retry_of: str | None = None
    version: str | None = None
    input: InputRef | None = None
    shards_total: int = 0
    shards: list[ShardSummary] = field(default_factory=list)
    cleanup_errors: list[str] = field(default_factory=list)  # groups that could not be deleted
    postcodes_scored: int = 0
    postcodes_failed_count: int = 0
    failures: str | None = None  # container/path of the failed postcodes with reasons (pipeline/failures.py)
    # Runs from before slim history carry their failed postcodes here instead; new runs leave it empty.
    postcodes_failed: dict[str, str] = field(default_factory=dict)
    # Once published:
    results: str | None = None
    manifest: str | None = None
    rows: int | None = None
    cost: dict[str, float] | None = None
    warnings: list[str] | None = None  # set when the plan has some (e.g. time-series dates assumed)
