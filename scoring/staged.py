"""A model version uploaded as one archive: a tar (optionally gzip-compressed) or zip of `<postcode>.rds`
files, an optional `scorer.R` and an optional `training_end.csv` (time-series training ends and steps), all
at the top level.

The Functions app checks the member names at the door (`check_members`) and stages the archive in Blob
Storage; the registration container unpacks it (`unpack`) and checks and builds it with the image's own R
(`register_staged`) into its own staging prefix; the app then copies it into `models`. Archives are hostile
input: links, folders, absolute or `..` paths, duplicate names and
more unpacked bytes than allowed are refused, and unpacking counts the bytes it actually writes (a zip's
declared sizes can lie).
"""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .blobstore import BlobStore
from .modelstore import SCORER, TRAINING_END, ModelStore, sha256
from .names import is_valid_postcode, postcode_pattern
from .registration import build_version

MAX_UNPACKED_BYTES = 4 * 1024**3
MAX_MEMBERS = 100_000
COPY_CHUNK = 1024 * 1024


class ArchiveError(ValueError):
    """The archive cannot be a model version; the message says why."""


@dataclass(frozen=True)
class Member:
    name: str
    size: int


Source = bytes | Path  # the archive in memory (a request body) or in a file (downloaded)


def _open(source: Source) -> BinaryIO:
    return io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")  # noqa: SIM115


def _kind(source: Source) -> str:
    with _open(source) as f:
        magic = f.read(4)
    if magic in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    try:
        with _open(source) as f, tarfile.open(fileobj=f, mode="r:*"):
            return "tar"
    except (tarfile.TarError, EOFError, OSError):
        raise ArchiveError("the upload is not a tar, tar.gz or zip archive") from None


def _clean_name(raw: str) -> str:
    name = raw[2:] if raw.startswith("./") else raw
    if not name or "/" in name or "\\" in name or name in (".", "..") or "\x00" in name:
        raise ArchiveError(f"archive member {raw!r}: only files at the top level (no folders, no paths)")
    return name


def archive_members(source: Source) -> list[Member]:
    """The regular files of the archive; anything else (links, devices, nested paths) is refused."""
    members: list[Member] = []
    if _kind(source) == "zip":
        try:
            with _open(source) as f, zipfile.ZipFile(f) as z:
                for info in z.infolist():
                    if info.is_dir() and info.filename.rstrip("/") in ("", "."):
                        continue
                    if info.is_dir() or (info.external_attr >> 16) & 0o170000 == 0o120000:
                        raise ArchiveError(f"archive member {info.filename!r} is a folder or link; only files")
                    members.append(Member(_clean_name(info.filename), info.file_size))
        except zipfile.BadZipFile as e:
            raise ArchiveError(f"the zip archive is unreadable: {e}") from None
    else:
        try:
            with _open(source) as f, tarfile.open(fileobj=f, mode="r:*") as t:
                for info in t:
                    if info.isdir() and info.name.rstrip("/") in ("", "."):
                        continue
                    if not info.isfile():
                        raise ArchiveError(f"archive member {info.name!r} is not a regular file")
                    members.append(Member(_clean_name(info.name), info.size))
        except (tarfile.TarError, EOFError, OSError) as e:
            raise ArchiveError(f"the tar archive is unreadable: {e}") from None
    return members


def check_members(members: list[Member], max_unpacked: int = MAX_UNPACKED_BYTES) -> int:
    """Refuse anything but `<postcode>.rds` files, one optional scorer.R and training_end.csv; returns the
    number of models."""
    if len(members) > MAX_MEMBERS:
        raise ArchiveError(f"the archive has {len(members)} files; at most {MAX_MEMBERS}")
    names = [m.name for m in members]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ArchiveError(f"the archive holds {duplicates[0]} more than once")
    pattern = postcode_pattern()
    bad = [n for n in names
           if n not in (SCORER, TRAINING_END) and not (n.endswith(".rds") and is_valid_postcode(n[:-4], pattern))]
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise ArchiveError(f"{len(bad)} file(s) are not <postcode>.rds (postcodes match {pattern.pattern}) "
                           f", {SCORER} or {TRAINING_END}: {shown}")
    models = sum(1 for n in names if n.endswith(".rds"))
    if not models:
        raise ArchiveError("the archive holds no models: expected one <postcode>.rds per postcode")
    total = sum(m.size for m in members)
    if total > max_unpacked:
        raise ArchiveError(f"the archive unpacks to {total} bytes; at most {max_unpacked}")
    return models


def unpack(source: Source, dest: Path, max_unpacked: int = MAX_UNPACKED_BYTES) -> Path:
    """Check, then write each member to dest, counting the bytes really written."""
    check_members(archive_members(source), max_unpacked)
    dest.mkdir(parents=True, exist_ok=True)
    written = 0

    def copy(name: str, source: io.BufferedIOBase) -> None:
        nonlocal written
        with open(dest / _clean_name(name), "wb") as out:
            while chunk := source.read(COPY_CHUNK):
                written += len(chunk)
                if written > max_unpacked:
                    raise ArchiveError(f"the archive unpacks to more than {max_unpacked} bytes")
                out.write(chunk)

    if _kind(source) == "zip":
        with _open(source) as f, zipfile.ZipFile(f) as z:
            for info in z.infolist():
                if not info.is_dir():
                    with z.open(info) as member:
                        copy(info.filename, member)
    else:
        with _open(source) as f, tarfile.open(fileobj=f, mode="r:*") as t:
            for info in t:
                if info.isfile():
                    copy(info.name, t.extractfile(info))
    return dest


def register_staged(blobs: BlobStore, model: str, version: str, staged: str, output: str,
                    **options) -> dict:
    """Check the archive at `staged` (<container>/<path>) and build the version under `output`
    (<container>/<prefix>/ in staging): packs, scorer.R, manifest. Nothing is written to the models container:
    the worker identity running this may not, and the app copies the checked version there afterwards."""
    container, _, name = staged.partition("/")
    out_container, _, out_prefix = output.partition("/")
    if not out_container or not out_prefix.endswith("/"):
        raise ValueError(f"--output {output!r}: expected <container>/<prefix>/")
    with tempfile.TemporaryDirectory(prefix="staged-") as tmp:
        archive = Path(tmp) / "upload.bin"
        blobs.download_to_file(container, name, str(archive))
        folder = unpack(archive, Path(tmp) / "version")
        manifest = build_version(ModelStore(blobs, out_container), out_prefix, model, version, folder, **options)
    return {"ok": True, "model": model, "version": version, "models": len(manifest.models),
            "packs": len(manifest.packs), "slimmed": sum(e.slimmed for e in manifest.models.values()),
            "r_version": manifest.r_version, "r_packages": manifest.r_packages, "created": manifest.created,
            "output": output, "manifest_sha256": sha256(manifest.encoded())}


# The registration container's outcome, vouched for where no other container can write: its own log. Its
# output lies in staging, which every scoring container (any model's code) may write, so the app publishes
# only a staged manifest whose sha256 this line names (and the manifest names each file's sha256).
VERIFIED = "scoring register: verified "


def verified_line(result: dict) -> str:
    return VERIFIED + json.dumps(result, sort_keys=True)


def verified_from_logs(logs: str, output: str) -> dict | None:
    """The outcome the registration container printed last for `output`, or None if its log holds none."""
    for line in reversed(logs.splitlines()):
        if not line.startswith(VERIFIED):
            continue
        try:
            result = json.loads(line[len(VERIFIED):])
        except ValueError:
            continue
        if isinstance(result, dict) and result.get("ok") is True and result.get("output") == output \
                and isinstance(result.get("manifest_sha256"), str):
            return result
    return None


def write_result(blobs: BlobStore, result_blob: str, result: dict) -> None:
    container, _, name = result_blob.partition("/")
    blobs.write_bytes(container, name, json.dumps(result).encode(), content_type="application/json")
