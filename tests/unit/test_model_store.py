"""The model store's read side and the registration checks that need no R, on an in-memory store."""

from __future__ import annotations

import hashlib

import pytest
from support.unit_data import put_version

from scoring.modelstore import ModelStore, ModelStoreError, VersionNotFound, version_prefix
from scoring.registration import _scorer_packages, register_version, scan_model_folder


def test_champion_resolves_through_its_alias(mem):
    store = ModelStore(mem)
    put_version(mem, "parcels", "v1", ["8001"])
    put_version(mem, "parcels", "v2", ["8001"], champion=True)
    assert store.resolve_version("parcels", "champion") == "v2"
    assert store.resolve_version("parcels", "v1") == "v1"
    assert store.versions("parcels") == ["v1", "v2"]
    store.set_alias("parcels", "v1")
    assert store.resolve_version("parcels", "champion") == "v1"


def test_an_alias_cannot_point_at_a_version_that_does_not_exist(mem):
    with pytest.raises(VersionNotFound, match="model 'parcels' has no version 'v9'"):
        ModelStore(mem).set_alias("parcels", "v9")
    assert not mem.exists("models", "parcels/champion.json")


def test_a_malformed_manifest_is_named(mem):
    mem.write_json("models", version_prefix("parcels", "v1") + "manifest.json", {"model": "parcels"})
    with pytest.raises(ModelStoreError, match="manifest is malformed"):
        ModelStore(mem).read_manifest("parcels", "v1")


def test_a_scorer_that_does_not_match_its_sha256_is_refused(mem):
    manifest = put_version(mem, "parcels", "v1", ["8001"])
    manifest.scorer, manifest.scorer_sha256 = "scorer.R", hashlib.sha256(b"score <- 1").hexdigest()
    mem.write_bytes("models", "parcels/v1/scorer.R", b"score <- 2")
    with pytest.raises(ModelStoreError, match="scorer.R of parcels/v1 does not match its sha256"):
        ModelStore(mem).read_scorer(manifest)
    mem.write_bytes("models", "parcels/v1/scorer.R", b"score <- 1")
    assert ModelStore(mem).read_scorer(manifest) == b"score <- 1"


def test_pack_ranges_read_exactly_the_bytes_asked_for(mem):
    manifest = put_version(mem, "parcels", "v1", ["8001"])
    mem.write_bytes("models", "parcels/v1/packs/00000.bin", b"aaaBBBBcc")
    assert ModelStore(mem).read_pack_range(manifest, "packs/00000.bin", 3, 7) == b"BBBB"


def test_a_model_folder_holds_postcode_models_and_an_optional_scorer(tmp_path):
    for name in ("8001.rds", "8002.rds", "scorer.R"):
        (tmp_path / name).write_bytes(b"x")
    files, scorer = scan_model_folder(tmp_path)
    assert sorted(files) == ["8001", "8002"] and scorer == tmp_path / "scorer.R"


def test_anything_else_in_a_model_folder_is_listed(tmp_path):
    for name in ("8001.rds", "notes.txt", "80x1.rds", "8002.RDS", "a.rds", "b.rds", "c.rds"):
        (tmp_path / name).write_bytes(b"x")
    with pytest.raises(ModelStoreError) as e:
        scan_model_folder(tmp_path)
    assert "6 file(s) are not <postcode>.rds" in str(e.value) and "and 1 more" in str(e.value)


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing", "is not a folder"),
    (lambda p: p, "holds no models"),
])
def test_an_empty_or_missing_folder_is_refused(tmp_path, make, message):
    with pytest.raises(ModelStoreError, match=message):
        scan_model_folder(make(tmp_path))


def test_registering_an_existing_version_is_refused_before_any_upload(mem, tmp_path):
    put_version(mem, "parcels", "v1", ["8001"])
    (tmp_path / "8001.rds").write_bytes(b"x")
    before = set(mem.blobs)
    with pytest.raises(ModelStoreError, match="already has version 'v1'; versions are immutable"):
        register_version(ModelStore(mem), "parcels", "v1", tmp_path)
    assert set(mem.blobs) == before


def test_the_packages_a_scorer_uses_are_found():
    source = 'library(forecast)\nrequire("ranger")\nx <- data.table::fread(f)\nrequireNamespace(\'mgcv\')\n'
    assert _scorer_packages(source) == ["data.table", "forecast", "mgcv", "ranger"]


@pytest.mark.parametrize("scorer, ok", [("scorer.R", True), ("reg-0123456789ab/scorer.R", True),
                                        ("../scorer.R", False), ("a/b/scorer.R", False), ("other.R", False),
                                        ("../x/scorer.R", False)])
def test_a_manifest_names_its_scorer_only_at_the_version_or_under_one_registration_folder(scorer, ok):
    from scoring.modelstore import Manifest
    manifest = Manifest(model="parcels", version="v1", created="", r_version="4.2.2", r_packages={}, models={},
                        scorer=scorer, scorer_sha256="0" * 64)
    if ok:
        manifest.check_safe()
    else:
        with pytest.raises(ModelStoreError, match="scorer"):
            manifest.check_safe()


@pytest.mark.parametrize("fields, says", [
    ({"training_end": "2026-11-30", "step": "1 week"}, None),
    ({"training_end": "2026-01-31", "step": "1 month"}, None),
    ({"training_end": "2026-11-30"}, None),  # a manifest from before steps: one day
    ({"training_end": "30.11.2026", "step": "1 day"}, "training_end '30.11.2026' is not YYYY-MM-DD"),
    ({"training_end": 20261130}, "training_end '20261130' is not YYYY-MM-DD"),
    ({"training_end": "2026-11-30", "step": "fortnight"}, "step 'fortnight' is not"),
    ({"training_end": "2026-01-30", "step": "1 month"}, "training end 2026-01-30 with a step of 1 month: use a day"),
])
def test_a_manifest_entrys_training_end_and_step_are_checked_when_read(mem, fields, says):
    """Planning and the worker compute dates from them: damage is a named corrupt store, not a crash."""
    manifest = put_version(mem, "parcels", "v1", ["8001"]).to_json()
    manifest["models"]["8001"].update(fields)
    mem.write_json("models", version_prefix("parcels", "v1") + "manifest.json", manifest)
    if says is None:
        entry = ModelStore(mem).read_manifest("parcels", "v1").models["8001"]
        assert (entry.training_end, entry.step) == (fields["training_end"], fields.get("step"))
    else:
        with pytest.raises(ModelStoreError, match=f"manifest.json is corrupt: manifest entry 8001: {says}"):
            ModelStore(mem).read_manifest("parcels", "v1")
