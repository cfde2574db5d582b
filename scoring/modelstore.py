"""Versioned models in Blob Storage.

Layout, in the models container:
    <model>/<version>/manifest.json      written last: a version exists once its manifest does
    <model>/<version>/packs/NNNNN.bin    models concatenated, ~250 a pack (few requests, not one per model)
    <model>/<version>/scorer.R           optional: the version's own score(model, newdata)
    <model>/champion.json                the alias scheduled runs use: {"version": ..., "updated": ...}

The manifest maps each postcode to its bytes (pack blob, offset, length, sha256), and records the R version,
the R packages the models need and when the version was created. `profiles` lists the distinct model
profiles (class, packages to load, formula packages to attach, input prototype; see R/model_profile.R); each
model entry names its profile and, for time-series models, the date its training data ends.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path

from .blobstore import BlobExists, BlobNotFound, BlobStore
from .names import check_model_name, check_version, is_valid_postcode, postcode_pattern

MANIFEST = "manifest.json"
SCORER = "scorer.R"
TRAINING_END = "training_end.csv"  # optional: postcode,training_end (YYYY-MM-DD) for time-series models
NOT_DAILY_FREQUENCIES = (4, 12, 52)  # quarterly, monthly, weekly series: no date alignment (R/model_profile.R)
CHAMPION = "champion"
PACK_MAX_MODELS = 250
PACK_MAX_BYTES = 16 * 1024 * 1024


DATES_ASSUMED = ("no training end date: these time-series forecasts start the day after training ended and are "
                 "labelled with the input's dates, which is assumed, not checked (register with --training-end "
                 "or training_end.csv)")


class ModelStoreError(ValueError):
    """A registration or lookup that cannot proceed; the message says why."""


class VersionNotFound(ModelStoreError, LookupError):
    pass


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

    @classmethod
    def from_json(cls, d: dict) -> Manifest:
        try:
            models = {pc: ModelEntry(**e) for pc, e in d["models"].items()}
            return cls(model=d["model"], version=d["version"], created=d["created"], r_version=d["r_version"],
                       r_packages=dict(d["r_packages"]), models=models, scorer=d.get("scorer"),
                       scorer_sha256=d.get("scorer_sha256"), packs=list(d.get("packs", [])),
                       profiles=list(d.get("profiles", [])))
        except (KeyError, TypeError) as e:
            raise ModelStoreError(f"manifest is malformed: {e!r}") from None

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
        try:
            alias = self.blobs.read_json(self.container, alias_blob(model))
        except BlobNotFound:
            raise VersionNotFound(f"model {model!r} has no champion version: register one with --champion") from None
        return check_version(alias.get("version"))

    def read_manifest(self, model: str, version: str) -> Manifest:
        name = version_prefix(model, version) + MANIFEST
        try:
            manifest = Manifest.from_json(self.blobs.read_json(self.container, name))
        except BlobNotFound:
            raise VersionNotFound(f"model {model!r} has no version {version!r}") from None
        return manifest

    def versions(self, model: str) -> list[str]:
        prefix = f"{check_model_name(model)}/"
        found = {b.name[len(prefix):-len("/" + MANIFEST)] for b in self.blobs.list(self.container, prefix)
                 if b.name.endswith("/" + MANIFEST)}
        return sorted(found)

    def set_alias(self, model: str, version: str, alias: str = CHAMPION) -> None:
        self.read_manifest(model, version)  # refuse to point an alias at nothing
        self.blobs.write_json(self.container, alias_blob(model, alias),
                              {"version": version, "updated": _now()})

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

    def register(self, model: str, version: str, folder: Path, champion: bool = False,
                 check_models: bool = True, slim: bool = True, extra_packages: tuple[str, ...] = (),
                 training_end: str | None = None) -> Manifest:
        """Upload a folder of <postcode>.rds (and optional scorer.R, training_end.csv) as a new version.

        `training_end` (YYYY-MM-DD) is the last training day of every time-series model in the folder;
        training_end.csv gives it per postcode. Either wins over what the model itself says."""
        check_model_name(model)
        check_version(version)
        files, scorer = scan_model_folder(folder)
        given_ends = read_training_ends(folder, files, training_end)
        prefix = version_prefix(model, version)
        if self.blobs.exists(self.container, prefix + MANIFEST):
            raise ModelStoreError(f"model {model!r} already has version {version!r}; versions are immutable, "
                                  "register a new one")
        with tempfile.TemporaryDirectory(prefix="register-") as tmp:
            stored, classes, r_version, packages, profiles = _inspect(files, scorer, Path(tmp), check_models,
                                                                     slim, extra_packages)
            models, packs = self._upload_packs(prefix, files, stored, classes)
        distinct, models = _attach_profiles(models, profiles, given_ends)
        manifest = Manifest(model=model, version=version, created=_now(), r_version=r_version,
                            r_packages=packages, models=models, packs=packs, profiles=distinct)
        if scorer is not None:
            data = scorer.read_bytes()
            self.blobs.write_bytes(self.container, prefix + SCORER, data, content_type="text/plain")
            manifest.scorer, manifest.scorer_sha256 = SCORER, sha256(data)
        self.blobs.ensure_container(self.container)
        try:
            self.blobs.write_json(self.container, prefix + MANIFEST, manifest.to_json(), overwrite=False)
        except BlobExists:
            raise ModelStoreError(f"model {model!r} version {version!r} was registered concurrently") from None
        if champion:
            self.set_alias(model, version)
        return manifest

    def _upload_packs(self, prefix: str, files: dict[str, Path], stored: dict[str, Path],
                      classes: dict[str, tuple[str, bool]]) -> tuple[dict[str, ModelEntry], list[dict]]:
        models: dict[str, ModelEntry] = {}
        packs: list[tuple[str, bytes]] = []
        chunk: list[bytes] = []
        size = 0
        for postcode in sorted(files):
            data = stored[postcode].read_bytes()
            source = data if stored[postcode] == files[postcode] else files[postcode].read_bytes()
            blob = f"packs/{len(packs):05d}.bin"
            models[postcode] = ModelEntry(blob=blob, offset=size, length=len(data), sha256=sha256(data),
                                          source_sha256=sha256(source), model_class=classes[postcode][0],
                                          slimmed=classes[postcode][1])
            chunk.append(data)
            size += len(data)
            if len(chunk) >= PACK_MAX_MODELS or size >= PACK_MAX_BYTES:
                packs.append((blob, b"".join(chunk)))
                chunk, size = [], 0
        if chunk:
            packs.append((f"packs/{len(packs):05d}.bin", b"".join(chunk)))
        self.blobs.ensure_container(self.container)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda p: self.blobs.write_bytes(self.container, prefix + p[0], p[1]), packs))
        return models, [{"blob": b, "size": len(d), "sha256": sha256(d)} for b, d in packs]


def scan_model_folder(folder: Path) -> tuple[dict[str, Path], Path | None]:
    """<postcode>.rds files and an optional scorer.R; anything else is refused with the reason."""
    if not folder.is_dir():
        raise ModelStoreError(f"{folder} is not a folder")
    files: dict[str, Path] = {}
    bad: list[str] = []
    scorer = None
    pattern = postcode_pattern()
    for path in sorted(folder.iterdir()):
        if path.name == SCORER:
            scorer = path
        elif path.name == TRAINING_END:
            continue
        elif path.suffix == ".rds" and path.is_file() and is_valid_postcode(path.stem, pattern):
            files[path.stem] = path
        else:
            bad.append(path.name)
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise ModelStoreError(f"{folder}: {len(bad)} file(s) are not <postcode>.rds (postcodes match "
                              f"{pattern.pattern}), scorer.R or {TRAINING_END}: {shown}")
    if not files:
        raise ModelStoreError(f"{folder} holds no models: expected one <postcode>.rds per postcode")
    return files, scorer


def _inspect(files: dict[str, Path], scorer: Path | None, tmp: Path, check_models: bool, slim: bool,
             extra_packages: tuple[str, ...]) -> tuple[dict[str, Path], dict[str, tuple[str, bool]], str, dict,
                                                       dict[str, dict]]:
    """Load every model in R: refuse unreadable ones, make slim copies, collect each model's profile and
    the R packages needed."""
    from . import r_session

    postcodes = sorted(files)
    if not check_models:
        return dict(files), {pc: ("unknown", False) for pc in postcodes}, r_session.r_version(), {}, {}
    slim_paths = [str(tmp / f"{pc}.rds") for pc in postcodes]
    result = r_session.call("inspect_models", [str(files[pc]) for pc in postcodes], slim_paths, slim)
    stored: dict[str, Path] = {}
    classes: dict[str, tuple[str, bool]] = {}
    profiles: dict[str, dict] = {}
    errors: list[str] = []
    for pc, slim_path, outcome in zip(postcodes, slim_paths, result, strict=True):
        kind, _, detail = str(outcome).partition("|")
        if kind == "error":
            errors.append(f"{pc}.rds: {detail}")
            continue
        slimmed_text, _, profile = detail.partition("|")
        slimmed = slimmed_text == "TRUE"
        classes[pc] = (kind, slimmed)
        profiles[pc] = json.loads(profile)
        stored[pc] = Path(slim_path) if slimmed else files[pc]
    if errors:
        raise ModelStoreError(f"{len(errors)} model(s) do not load in R: " + "; ".join(errors[:5]))
    scorer_packages = _scorer_packages(scorer.read_text()) if scorer else []
    model_packages = sorted({p for prof in profiles.values() for p in prof["packages"]})
    versions = r_session.call("package_versions", list(extra_packages) + scorer_packages + model_packages)
    packages = dict(str(v).split("=", 1) for v in versions)
    return stored, classes, r_session.r_version(), packages, profiles


def read_training_ends(folder: Path, files: dict[str, Path], default: str | None) -> dict[str, str]:
    """postcode -> last training day, from training_end.csv and/or the version-wide default; checked."""
    ends: dict[str, str] = {}
    if default is not None:
        ends = dict.fromkeys(files, _check_day(default, "--training-end"))
    path = folder / TRAINING_END
    if path.is_file():
        rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
        if not rows or [c.strip() for c in rows[0]] != ["postcode", "training_end"]:
            raise ModelStoreError(f"{path}: the header must be 'postcode,training_end'")
        for number, row in enumerate(rows[1:], start=2):
            if not row:
                continue
            if len(row) != 2 or row[0] not in files:
                raise ModelStoreError(f"{path} line {number}: {row!r} is not '<postcode of a model here>,YYYY-MM-DD'")
            ends[row[0]] = _check_day(row[1].strip(), f"{path} line {number}")
    return ends


def _check_day(text: str, where: str) -> str:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise ModelStoreError(f"{where}: training end {text!r} is not YYYY-MM-DD")
    try:
        date.fromisoformat(text)
    except ValueError:
        raise ModelStoreError(f"{where}: training end {text!r} is not a calendar date") from None
    return text


def _attach_profiles(models: dict[str, ModelEntry], profiles: dict[str, dict],
                     given_ends: dict[str, str]) -> tuple[list[dict], dict[str, ModelEntry]]:
    """Distinct profiles (thousands of models share a handful) and each entry's index and training end."""
    distinct: list[dict] = []
    index: dict[str, int] = {}
    out: dict[str, ModelEntry] = {}
    for pc, entry in models.items():
        profile = profiles.get(pc)
        if profile is None:
            out[pc] = entry
            continue
        shared = {k: v for k, v in profile.items() if k not in ("training_end", "training_end_source", "frequency")}
        for key in ("class", "packages", "attach"):  # R gives a bare string for a vector of one
            shared[key] = _as_list(shared.get(key))
        key = json.dumps(shared, sort_keys=True)
        if key not in index:
            index[key] = len(distinct)
            distinct.append(shared)
        end, source = profile.get("training_end"), profile.get("training_end_source")
        if shared.get("time_series") and pc in given_ends:
            if profile.get("frequency") in NOT_DAILY_FREQUENCIES:
                raise ModelStoreError(f"{pc}.rds: a training end is given for a series of frequency "
                                      f"{profile['frequency']:g}; dated forecasts need a daily series "
                                      "(one step = one day)")
            end, source = given_ends[pc], "registration"
        if not shared.get("time_series"):
            end, source = None, None
        out[pc] = replace(entry, profile=index[key], training_end=end, training_end_source=source)
    return distinct, out


def _as_list(value: object) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _scorer_packages(source: str) -> list[str]:
    found = re.findall(r"(?:library|require|requireNamespace)\(\s*['\"]?([A-Za-z][A-Za-z0-9.]*)", source)
    found += re.findall(r"\b([A-Za-z][A-Za-z0-9.]*):::?", source)
    return sorted(set(found))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
