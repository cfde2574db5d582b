"""Publishing a version the registration container built in staging: the app's half of a registration.

The container runs under the worker identity, which may read `models` and `uploads` but only write
`staging`, so it builds the version (packs, scorer.R, manifest) under its own staging prefix. Every scoring
container runs under that identity too, so anything in staging may have been rewritten since the
registration container checked it: the container prints the sha256 of the manifest it built as the last line
of its log (scoring.staged.verified_line), which only it can write and the app keeps in `results`. The app
publishes only a staged manifest with exactly that sha256, and verifies what it copies against it: only the
files the manifest lists, each with the sha256 and size the manifest states, names confined to the version
(no `..`, no absolute paths, nothing outside the prefix), and no extra staged file. Each file is checked in
the very bytes that are then written to `models`, so nothing changes between the check and the copy. Packs are
copied under a folder named after the registration, so two concurrent registrations of the same version never
write the same blob; the manifest is written last with a conditional create (If-None-Match: *): the first one
wins, the other is refused with "version exists" and its copied packs are removed. The version therefore
appears at once, complete, and is never overwritten.
"""

from __future__ import annotations

import dataclasses
import json
import re

from scoring.blobstore import BlobExists, BlobStore
from scoring.modelstore import (
    MANIFEST,
    SCORER,
    Manifest,
    ModelStore,
    ModelStoreError,
    sha256,
    version_prefix,
)

PACK_NAME = re.compile(r"packs/[0-9]{5}\.bin")


class PublishRefused(ValueError):
    """The staged version cannot be published; the message says why."""


def check_staged_manifest(blobs: BlobStore, output: str, model: str, version: str,
                          manifest_sha256: str) -> tuple[Manifest, dict[str, str]]:
    """The staged manifest, if it is the one whose sha256 the registration container vouched for, and
    {file: sha256} of the files it lists, after every check that needs no file content: names confined to
    the version, no extra or missing file, sizes, model ranges inside packs."""
    container, _, prefix = output.partition("/")
    staged = {b.name[len(prefix):]: b.size for b in blobs.list(container, prefix)}
    if MANIFEST not in staged:
        raise PublishRefused(f"the registration wrote no {MANIFEST} under {output}")
    data = blobs.read_bytes(container, prefix + MANIFEST)
    if sha256(data) != manifest_sha256:
        raise PublishRefused(f"the staged {MANIFEST} is not the one the registration container verified "
                             "(changed in staging since)")
    try:
        manifest = Manifest.from_json(json.loads(data))
    except (ValueError, ModelStoreError) as e:
        raise PublishRefused(f"the staged manifest is unreadable: {e}") from None
    if (manifest.model, manifest.version) != (model, version):
        raise PublishRefused(f"the staged manifest describes {manifest.model}/{manifest.version}, "
                             f"not {model}/{version}")
    expected: dict[str, str] = {}
    sizes: dict[str, int] = {}
    for pack in manifest.packs:
        name = str(pack.get("blob", ""))
        if not PACK_NAME.fullmatch(name):
            raise PublishRefused(f"the staged manifest names pack {name!r}; only packs/NNNNN.bin inside "
                                 "the version")
        expected[name], sizes[name] = str(pack.get("sha256", "")), int(pack.get("size", -1))
    if manifest.scorer is not None:
        if manifest.scorer != SCORER:
            raise PublishRefused(f"the staged manifest names scorer {manifest.scorer!r}; only {SCORER}")
        expected[SCORER] = str(manifest.scorer_sha256)
    extra = sorted(set(staged) - set(expected) - {MANIFEST})
    if extra:
        raise PublishRefused(f"the staged output holds files its manifest does not list: {', '.join(extra[:5])}")
    missing = sorted(set(expected) - set(staged))
    if missing:
        raise PublishRefused(f"the staged output lacks files its manifest lists: {', '.join(missing[:5])}")
    for name, size in sizes.items():
        if size != staged[name]:
            raise PublishRefused(f"staged {name} has {staged[name]} bytes; its manifest says {size}")
    for postcode, entry in manifest.models.items():
        if entry.blob not in sizes or entry.offset < 0 or entry.length < 0 \
                or entry.offset + entry.length > sizes[entry.blob]:
            raise PublishRefused(f"the staged manifest places model {postcode} outside its pack")
    return manifest, expected


def _verified(blobs: BlobStore, output: str, manifest: Manifest, name: str, digest: str) -> bytes:
    """One staged file, checked against its sha256 and, for a pack, each model's slice against its own."""
    container, _, prefix = output.partition("/")
    content = blobs.read_bytes(container, prefix + name)
    if sha256(content) != digest:
        raise PublishRefused(f"staged {name} does not match the sha256 in its manifest")
    for postcode, entry in manifest.models.items():
        if entry.blob == name and sha256(content[entry.offset:entry.offset + entry.length]) != entry.sha256:
            raise PublishRefused(f"model {postcode} in staged {name} does not match its sha256")
    return content


def publish_staged(blobs: BlobStore, output: str, models_container: str, registration_id: str, model: str,
                   version: str, champion: bool, manifest_sha256: str) -> Manifest:
    """Copy the verified staged version into models/<model>/<version>/, manifest last and only if absent.
    manifest_sha256: of the manifest the registration container built (from its log, never from staging).

    One file in memory at a time (packs are at most ~16 MB); on any refusal or error the files already
    copied are removed, so nothing but a complete version with its manifest is ever left in `models`."""
    manifest, expected = check_staged_manifest(blobs, output, model, version, manifest_sha256)
    target = version_prefix(model, version)
    if blobs.exists(models_container, target + MANIFEST):
        raise PublishRefused(f"version exists: model {model!r} already has version {version!r}; versions are "
                             "immutable, register a new one")
    # packs/ stays the packs' folder (planning lists it); the registration's folder keeps concurrent ones apart
    renamed = {name: f"packs/{registration_id}/{name.removeprefix('packs/')}" if name != SCORER
               else f"{registration_id}/{SCORER}" for name in expected}
    blobs.ensure_container(models_container)
    written: list[str] = []
    try:
        for name, digest in expected.items():
            blobs.write_bytes(models_container, target + renamed[name],
                              _verified(blobs, output, manifest, name, digest))
            written.append(target + renamed[name])
        manifest.packs = [{**p, "blob": renamed[p["blob"]]} for p in manifest.packs]
        manifest.models = {pc: dataclasses.replace(e, blob=renamed[e.blob]) for pc, e in manifest.models.items()}
        if manifest.scorer:
            manifest.scorer = renamed[SCORER]
        try:
            blobs.write_json(models_container, target + MANIFEST, manifest.to_json(), overwrite=False)
        except BlobExists:
            raise PublishRefused(f"version exists: model {model!r} version {version!r} was registered "
                                 "concurrently") from None
    except BaseException:
        for name in written:
            blobs.delete(models_container, name)
        raise
    if champion:
        ModelStore(blobs, models_container).set_alias(model, version)
    return manifest


def delete_staged(blobs: BlobStore, output: str) -> None:
    container, _, prefix = output.partition("/")
    for blob in list(blobs.list(container, prefix)):
        blobs.delete(container, blob.name)
