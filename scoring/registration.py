"""Registering a model version: check a folder of <postcode>.rds files in R, pack them, upload, then the manifest.

The manifest is written last and never overwritten: a version exists once its manifest does, and is immutable.
"""

from __future__ import annotations

import csv
import io
import json
import re
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import date
from pathlib import Path

from .blobstore import BlobExists
from .modelstore import (
    MANIFEST,
    SCORER,
    TRAINING_END,
    Manifest,
    ModelEntry,
    ModelStore,
    ModelStoreError,
    sha256,
    version_prefix,
)
from .names import check_model_name, check_version, is_valid_postcode, postcode_pattern
from .steps import StepError, end_problem, parse_step
from .timestamps import now_seconds

PACK_MAX_MODELS = 250
PACK_MAX_BYTES = 16 * 1024 * 1024


def register_version(store: ModelStore, model: str, version: str, folder: Path, champion: bool = False,
                     check_models: bool = True, slim: bool = True,
                     extra_packages: tuple[str, ...] = (), training_end: str | None = None,
                     step: str | None = None) -> Manifest:
    """Upload a folder of <postcode>.rds (and optional scorer.R, training_end.csv) as a new version, with
    direct access to the models container (the data scientists' CLI).

    `training_end` (YYYY-MM-DD) is the last training day of every time-series model in the folder and `step`
    its calendar step ("1 week"; scoring/steps.py); training_end.csv gives them per postcode (columns
    postcode,training_end[,step]). Either wins over what the model itself says."""
    prefix = version_prefix(model, version)
    if store.blobs.exists(store.container, prefix + MANIFEST):
        raise ModelStoreError(f"model {model!r} already has version {version!r}; versions are immutable, "
                              "register a new one")
    manifest = build_version(store, prefix, model, version, folder, check_models=check_models, slim=slim,
                             extra_packages=extra_packages, training_end=training_end, step=step, exclusive=True)
    if champion:
        store.set_alias(model, version)
    return manifest


def build_version(store: ModelStore, prefix: str, model: str, version: str, folder: Path,
                  check_models: bool = True, slim: bool = True, extra_packages: tuple[str, ...] = (),
                  training_end: str | None = None, exclusive: bool = False, step: str | None = None) -> Manifest:
    """Check the folder in R, write packs, scorer.R and finally the manifest under `prefix` of store.container.

    exclusive: the manifest is created only if absent (the models container); a registration container
    builds into its own staging prefix instead, and the app copies the version into `models` (the worker
    identity may not write there)."""
    check_model_name(model)
    check_version(version)
    files, scorer = scan_model_folder(folder)
    given_ends, given_steps = read_training_ends(folder, files, training_end, step)
    with tempfile.TemporaryDirectory(prefix="register-") as tmp:
        stored, classes, r_version, packages, profiles = _inspect(files, scorer, Path(tmp), check_models, slim,
                                                                 extra_packages)
        models, packs = _upload_packs(store, prefix, files, stored, classes)
    distinct, models = _attach_profiles(models, profiles, given_ends, given_steps)
    manifest = Manifest(model=model, version=version, created=now_seconds(), r_version=r_version,
                        r_packages=packages, models=models, packs=packs, profiles=distinct)
    if scorer is not None:
        data = scorer.read_bytes()
        store.blobs.write_bytes(store.container, prefix + SCORER, data, content_type="text/plain")
        manifest.scorer, manifest.scorer_sha256 = SCORER, sha256(data)
    store.blobs.ensure_container(store.container)
    try:
        store.blobs.write_bytes(store.container, prefix + MANIFEST, manifest.encoded(), overwrite=not exclusive,
                                content_type="application/json")
    except BlobExists:
        raise ModelStoreError(f"model {model!r} version {version!r} was registered concurrently") from None
    return manifest


def _upload_packs(store: ModelStore, prefix: str, files: dict[str, Path], stored: dict[str, Path],
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
    store.blobs.ensure_container(store.container)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda p: store.blobs.write_bytes(store.container, prefix + p[0], p[1]), packs))
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
    model_packages = sorted({p for prof in profiles.values() for p in _as_list(prof.get("packages"))})
    versions = r_session.call("package_versions", list(extra_packages) + scorer_packages + model_packages)
    packages = dict(str(v).split("=", 1) for v in versions)
    return stored, classes, r_session.r_version(), packages, profiles


def read_training_ends(folder: Path, files: dict[str, Path], default: str | None,
                       default_step: str | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """(postcode -> last training day, postcode -> step), from training_end.csv (an optional third column
    `step`; blank: the model's own) and/or the version-wide defaults; checked."""
    ends: dict[str, str] = {}
    steps: dict[str, str] = {}
    if default is not None:
        ends = dict.fromkeys(files, _check_day(default, "--training-end"))
    if default_step is not None:
        steps = dict.fromkeys(files, _check_step(default_step, "--step"))
    path = folder / TRAINING_END
    if path.is_file():
        rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
        header = [c.strip() for c in rows[0]] if rows else []
        if header not in (["postcode", "training_end"], ["postcode", "training_end", "step"]):
            raise ModelStoreError(f"{path}: the header must be 'postcode,training_end' or 'postcode,training_end,step'")
        for number, row in enumerate(rows[1:], start=2):
            if not row:
                continue
            if len(row) != len(header) or row[0] not in files:
                raise ModelStoreError(f"{path} line {number}: {row!r} is not '<postcode of a model here>,YYYY-MM-DD"
                                      + (",<step>'" if len(header) == 3 else "'"))
            ends[row[0]] = _check_day(row[1].strip(), f"{path} line {number}")
            if len(header) == 3 and row[2].strip():
                steps[row[0]] = _check_step(row[2], f"{path} line {number}")
    return ends, steps


def _check_step(text: str, where: str) -> str:
    try:
        return str(parse_step(text))
    except StepError as e:
        raise ModelStoreError(f"{where}: {e}") from None


def _check_day(text: str, where: str) -> str:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise ModelStoreError(f"{where}: training end {text!r} is not YYYY-MM-DD")
    try:
        date.fromisoformat(text)
    except ValueError:
        raise ModelStoreError(f"{where}: training end {text!r} is not a calendar date") from None
    return text


def _attach_profiles(models: dict[str, ModelEntry], profiles: dict[str, dict], given_ends: dict[str, str],
                     given_steps: dict[str, str]) -> tuple[list[dict], dict[str, ModelEntry]]:
    """Distinct profiles (thousands of models share a handful) and each entry's index, training end and step."""
    distinct: list[dict] = []
    index: dict[str, int] = {}
    out: dict[str, ModelEntry] = {}
    for pc, entry in models.items():
        profile = profiles.get(pc)
        if profile is None:
            out[pc] = entry
            continue
        shared = {k: v for k, v in profile.items()
                  if k not in ("training_end", "training_end_source", "frequency", "step", "step_source")}
        for key in ("class", "packages", "attach"):  # R gives a bare string for a vector of one
            shared[key] = _as_list(shared.get(key))
        key = json.dumps(shared, sort_keys=True)
        if key not in index:
            index[key] = len(distinct)
            distinct.append(shared)
        if not shared.get("time_series"):
            out[pc] = replace(entry, profile=index[key])
            continue
        end, source = profile.get("training_end"), profile.get("training_end_source")
        if pc in given_ends:
            end, source = given_ends[pc], "registration"
        step, step_source = _model_step(pc, profile, given_steps)
        if end is not None:
            if step is None:
                raise ModelStoreError(
                    f"{pc}.rds: a training end ({end}) is known but not the model's step: its series has frequency "
                    f"{profile.get('frequency')}, which names no calendar step; give it (attribute step, --step "
                    "or the step column of training_end.csv), e.g. '1 day', '1 week', '1 month'")
            problem = end_problem(date.fromisoformat(end), parse_step(step))
            if problem:
                raise ModelStoreError(f"{pc}.rds: {problem} ({source})")
        out[pc] = replace(entry, profile=index[key], training_end=end, training_end_source=source, step=step,
                          step_source=step_source)
    return distinct, out


def _model_step(pc: str, profile: dict, given_steps: dict[str, str]) -> tuple[str | None, str | None]:
    """(canonical step, where it came from): registration's, else what R read from the model, else None."""
    if pc in given_steps:
        return given_steps[pc], "registration"
    step = profile.get("step")
    if step is None:
        return None, None
    try:
        return str(parse_step(step)), profile.get("step_source")
    except StepError as e:
        raise ModelStoreError(f"{pc}.rds: {e} ({profile.get('step_source')})") from None


def _as_list(value: object) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _scorer_packages(source: str) -> list[str]:
    found = re.findall(r"(?:library|require|requireNamespace)\(\s*['\"]?([A-Za-z][A-Za-z0-9.]*)", source)
    found += re.findall(r"\b([A-Za-z][A-Za-z0-9.]*):::?", source)
    return sorted(set(found))
