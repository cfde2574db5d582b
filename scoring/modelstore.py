"""Versioned models in Blob Storage: the read side (manifests, the champion alias, model bytes).

Writing a new version is scoring.registration.

Layout, in the models container:
    <model>/<version>/manifest.json      written last: a version exists once its manifest does
    <model>/<version>/packs/NNNNN.bin    models concatenated, ~250 a pack (few requests, not one per model)
    <model>/<version>/scorer.R           optional: the version's own score(model, newdata)
A version published by the app after a server-side registration keeps its files in the registration's own
folders (packs/<registration id>/NNNNN.bin, <registration id>/scorer.R): two concurrent registrations of one
version never write the same blob, and the manifest (create-only) names the files of the one that won.
    <model>/champion.json                the alias scheduled runs use: {"version": ..., "updated": ...}

The manifest maps each postcode to its bytes (pack blob, offset, length, sha256), and records the R version,
the R packages the models need and when the version was created. `profiles` lists the distinct model
profiles (class, packages to load, formula packages to attach, input prototype; see R/model_profile.R); each
model entry names its profile and, for time-series models, the date its training data ends and its step
(scoring/steps.py).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import date

from .blobstore import BlobNotFound, BlobStore
from .names import SAFE_TOKEN, InvalidName, check_blob_path, check_model_name, check_version
from .steps import StepError, end_problem, parse_step
from .timestamps import now_seconds

MANIFEST = "manifest.json"
SCORER = "scorer.R"
CHAMPION = "champion"
TRAINING_END = "training_end.csv"  # optional: postcode,training_end[,step] for time-series models
DATES_ASSUMED = ("no training end date: these time-series forecasts start one step after training ended and are "
                 "labelled with the input's dates, which is assumed, not checked (register with --training-end "
                 "or training_end.csv)")


class ModelStoreError(ValueError):
    """A registration or lookup that cannot proceed; the message says why."""


class VersionNotFound(ModelStoreError, LookupError):
    pass


class CorruptStore(ModelStoreError):
    """A blob of the model store exists but cannot be used (not JSON, wrong shape, unsafe names).
    `blob` names it, so an operator knows what to repair."""

    def __init__(self, blob: str, problem: str):
        super().__init__(f"model store blob {blob} is corrupt: {problem}")
        self.blob = blob


@dataclass(frozen=True)
class ModelEntry:
    blob: str
    offset: int
    length: int
    sha256: str  # of the stored bytes
    source_sha256: str  # of the .rds file that was registered
    model_class: str
    slimmed: bool
    profile: int | None = None  # index into Manifest.profiles
    training_end: str | None = None  # time-series models: last training day (YYYY-MM-DD), if known
    training_end_source: str | None = None
    step: str | None = None  # time-series models: one step in calendar time ("1 week"); None: one day
    step_source: str | None = None


@dataclass
class Manifest:
    model: str
    version: str
    created: str
    r_version: str
    r_packages: dict[str, str]
    models: dict[str, ModelEntry]
    scorer: str | None = None
    scorer_sha256: str | None = None
    packs: list[dict] = field(default_factory=list)
    profiles: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        d = asdict(self)
        d["schema"] = 1
        assumed = self.dates_assumed()
        if assumed:
            d["dates_assumed"] = {"postcodes": len(assumed), "first": assumed[:10], "note": DATES_ASSUMED}
        return d

    def encoded(self) -> bytes:
        """The bytes stored as manifest.json; their sha256 is what a registration container vouches for."""
        return json.dumps(self.to_json(), indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, d: dict) -> Manifest:
        try:
            models = {pc: ModelEntry(**e) for pc, e in d["models"].items()}
            manifest = cls(model=d["model"], version=d["version"], created=d["created"], r_version=d["r_version"],
                           r_packages=dict(d["r_packages"]), models=models, scorer=d.get("scorer"),
                           scorer_sha256=d.get("scorer_sha256"), packs=list(d.get("packs", [])),
                           profiles=list(d.get("profiles", [])))
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            raise ModelStoreError(f"manifest is malformed: {type(e).__name__} {str(e)[:200]}") from None
        manifest.check_safe()
        return manifest

    def check_safe(self) -> None:
        """Every name here becomes a local file or blob path in the worker: refuse anything that could
        escape its folder, and sizes that are not sizes."""
        for pc, e in self.models.items():
            if not isinstance(pc, str) or not SAFE_TOKEN.fullmatch(pc) or ".." in pc:
                raise ModelStoreError(f"manifest lists an unsafe postcode {str(pc)[:40]!r}")
            try:
                check_blob_path(e.blob, "pack blob")
            except InvalidName as err:
                raise ModelStoreError(f"manifest entry {pc}: {err}") from None
            if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (e.offset, e.length)):
                raise ModelStoreError(f"manifest entry {pc}: offset and length must be non-negative integers")
            problem = _time_problem(e)
            if problem:
                raise ModelStoreError(f"manifest entry {pc}: {problem}")
        # scorer.R, or <registration>/scorer.R where a server-side registration published it (registration_publish).
        if self.scorer is not None and not (self.scorer == SCORER or (
                isinstance(self.scorer, str) and self.scorer.endswith("/" + SCORER)
                and SAFE_TOKEN.fullmatch(self.scorer.removesuffix("/" + SCORER)) and ".." not in self.scorer)):
            raise ModelStoreError(f"manifest names scorer {str(self.scorer)[:40]!r}; only {SCORER!r} or "
                                  f"<registration>/{SCORER} is allowed")

    @property
    def postcodes(self) -> list[str]:
        return sorted(self.models)

    def profile_of(self, postcode: str) -> dict | None:
        index = self.models[postcode].profile
        return self.profiles[index] if index is not None and 0 <= index < len(self.profiles) else None

    def dates_assumed(self) -> list[str]:
        """Time-series postcodes without a training end: their forecasts start where training ended,
        labelled with the input's dates (an assumption the manifest and run status state)."""
        return [pc for pc in self.postcodes
                if (self.profile_of(pc) or {}).get("time_series") and not self.models[pc].training_end]


def _time_problem(entry: ModelEntry) -> str | None:
    """Planning and the worker compute dates from these: a training end that is not a date, or a step that is
    not a step, is damage to report, not a crash."""
    if entry.training_end is not None:
        try:
            if not isinstance(entry.training_end, str) or len(entry.training_end) != 10:
                raise ValueError
            end = date.fromisoformat(entry.training_end)
        except ValueError:
            return f"training_end {str(entry.training_end)[:40]!r} is not YYYY-MM-DD"
    if entry.step is not None:
        try:
            step = parse_step(entry.step)
        except StepError as e:
            return str(e)
        if entry.training_end is not None:
            return end_problem(end, step)
    return None


def version_prefix(model: str, version: str) -> str:
    return f"{check_model_name(model)}/{check_version(version)}/"


def alias_blob(model: str, alias: str = CHAMPION) -> str:
    return f"{check_model_name(model)}/{alias}.json"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ModelStore:
    def __init__(self, blobs: BlobStore, container: str = "models"):
        self.blobs = blobs
        self.container = container

    def resolve_version(self, model: str, version: str) -> str:
        """A concrete version, or the one the `champion` alias names."""
        check_model_name(model)
        if version != CHAMPION:
            return check_version(version)
        where = f"{self.container}/{alias_blob(model)}"
        try:
            alias = self.blobs.read_json(self.container, alias_blob(model))
        except BlobNotFound:
            raise VersionNotFound(f"model {model!r} has no champion version: register one with --champion") from None
        except ValueError:
            raise CorruptStore(where, "not valid JSON") from None
        if not isinstance(alias, dict):
            raise CorruptStore(where, "not a JSON object")
        try:
            return check_version(alias.get("version"))
        except InvalidName as e:
            raise CorruptStore(where, f"it points to {e}") from None

    def read_manifest(self, model: str, version: str) -> Manifest:
        name = version_prefix(model, version) + MANIFEST
        where = f"{self.container}/{name}"
        try:
            manifest = Manifest.from_json(self.blobs.read_json(self.container, name))
        except BlobNotFound:
            raise VersionNotFound(f"model {model!r} has no version {version!r}") from None
        except CorruptStore:
            raise
        except ModelStoreError as e:
            raise CorruptStore(where, str(e)) from None
        except ValueError:
            raise CorruptStore(where, "not valid JSON") from None
        if (manifest.model, manifest.version) != (model, version):
            raise CorruptStore(where, f"it describes {manifest.model}/{manifest.version}, not {model}/{version}")
        return manifest

    def versions(self, model: str) -> list[str]:
        prefix = f"{check_model_name(model)}/"
        found = {b.name[len(prefix):-len("/" + MANIFEST)] for b in self.blobs.list(self.container, prefix)
                 if b.name.endswith("/" + MANIFEST)}
        return sorted(found)

    def set_alias(self, model: str, version: str, alias: str = CHAMPION) -> None:
        self.read_manifest(model, version)  # refuse to point an alias at nothing
        self.blobs.write_json(self.container, alias_blob(model, alias),
                              {"version": version, "updated": now_seconds()})

    def read_scorer(self, manifest: Manifest) -> bytes | None:
        if not manifest.scorer:
            return None
        data = self.blobs.read_bytes(self.container, version_prefix(manifest.model, manifest.version) + manifest.scorer)
        if sha256(data) != manifest.scorer_sha256:
            raise ModelStoreError(f"scorer.R of {manifest.model}/{manifest.version} does not match its sha256")
        return data

    def read_pack_range(self, manifest: Manifest, pack: str, start: int, end: int) -> bytes:
        return self.blobs.read_bytes(self.container, version_prefix(manifest.model, manifest.version) + pack,
                                     offset=start, length=end - start)

