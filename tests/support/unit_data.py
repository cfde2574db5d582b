"""Data for unit tests: settings from the documented defaults, a model version written without R, input CSVs."""

from __future__ import annotations

import hashlib

from pipeline.settings import Settings
from scoring.modelstore import MANIFEST, Manifest, ModelEntry, alias_blob, version_prefix
from support.memory_blobs import MemoryBlobStore


def make_settings(**overrides: str) -> Settings:
    """The documented defaults, with a scoring image, and any overrides (app-setting names)."""
    return Settings.from_env({"SCORING_IMAGE": "scoringacr.azurecr.io/r-scoring:1.4.2", **overrides})


def put_version(blobs: MemoryBlobStore, model: str, version: str, postcodes: list[str], *,
                r_version: str = "4.2.2", packages: dict[str, str] | None = None, champion: bool = False,
                missing_packs: bool = False) -> Manifest:
    """A registered model version as the model store lays it out (two packs), written directly: no R."""
    prefix = version_prefix(model, version)
    models = {pc: ModelEntry(blob=f"packs/{i % 2:05d}.bin", offset=0, length=1, sha256="0" * 64,
                             source_sha256="0" * 64, model_class="glm", slimmed=True)
              for i, pc in enumerate(sorted(postcodes))}
    manifest = Manifest(model=model, version=version, created="2026-11-20T00:00:00Z", r_version=r_version,
                        r_packages=packages or {}, models=models)
    if not missing_packs:
        for blob in {e.blob for e in models.values()}:
            blobs.write_bytes("models", prefix + blob, b"x")
    blobs.write_json("models", prefix + MANIFEST, manifest.to_json())
    if champion:
        blobs.write_json("models", alias_blob(model), {"version": version, "updated": "2026-11-20T00:00:00Z"})
    return manifest


def input_csv(rows: dict[str, list[str]]) -> bytes:
    """postcode -> dates, as the input CSV (postcode,date,temp)."""
    lines = ["postcode,date,temp"] + [f"{pc},{day},10.5" for pc, days in rows.items() for day in days]
    return ("\n".join(lines) + "\n").encode()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stage_built_version(blobs, out: str, model: str = "parcels", version: str = "v1", scorer: bytes | None = b"s <- 1"):
    """A built version under `out`, as scoring.registration.build_version writes it: packs, scorer, manifest."""
    container, _, prefix = out.partition("/")
    blobs.ensure_container(container)
    packs = {"packs/00000.bin": b"AAAABBB", "packs/00001.bin": b"CC"}
    models = {"8001": ModelEntry("packs/00000.bin", 0, 4, sha(b"AAAA"), sha(b"a"), "glm", True),
              "8002": ModelEntry("packs/00000.bin", 4, 3, sha(b"BBB"), sha(b"b"), "glm", False),
              "8003": ModelEntry("packs/00001.bin", 0, 2, sha(b"CC"), sha(b"c"), "lm", True)}
    manifest = Manifest(model=model, version=version, created="2026-11-23T04:00:00Z", r_version="4.2.2",
                        r_packages={}, models=models,
                        packs=[{"blob": b, "size": len(d), "sha256": sha(d)} for b, d in packs.items()])
    for name, data in packs.items():
        blobs.write_bytes(container, prefix + name, data)
    if scorer is not None:
        blobs.write_bytes(container, prefix + "scorer.R", scorer)
        manifest.scorer, manifest.scorer_sha256 = "scorer.R", sha(scorer)
    blobs.write_bytes(container, prefix + MANIFEST, manifest.encoded())
    return manifest


def vouched(blobs, out: str) -> str:
    """The sha256 a registration container would print for the manifest now staged under `out`."""
    container, _, prefix = out.partition("/")
    return sha(blobs.read_bytes(container, prefix + MANIFEST))
