"""The app's half of a registration on an in-memory store: the container's staged output is verified, then
published into `models` (manifest last, only if absent); tampered or concurrent outputs are refused and leave
nothing in `models`. The staged output is written here as the container lays it out (no R needed)."""

from __future__ import annotations

import pytest
from support.unit_data import stage_built_version as stage

from client_api.registration import registration_command, registration_request
from client_api.registration_publish import PublishRefused, delete_staged, publish_staged
from scoring.modelstore import MANIFEST, ModelStore

REG = "reg-0123456789abcdef0123"
OUT = f"staging/{REG}/out/"




def test_a_verified_version_is_published_under_its_own_folder_and_reads_back(mem):
    stage(mem, OUT)
    published = publish_staged(mem, OUT, "models", REG, "parcels", "v1", champion=True)
    store = ModelStore(mem)
    manifest = store.read_manifest("parcels", "v1")
    assert manifest == published and manifest.postcodes == ["8001", "8002", "8003"]
    entry = manifest.models["8002"]
    assert entry.blob == f"packs/{REG}/00000.bin"
    assert store.read_pack_range(manifest, entry.blob, entry.offset, entry.offset + entry.length) == b"BBB"
    assert store.read_scorer(manifest) == b"s <- 1"
    assert store.resolve_version("parcels", "champion") == "v1"
    assert sorted(mem.names("models")) == sorted(["parcels/champion.json", "parcels/v1/manifest.json",
                                                  f"parcels/v1/packs/{REG}/00000.bin",
                                                  f"parcels/v1/packs/{REG}/00001.bin", f"parcels/v1/{REG}/scorer.R"])
    delete_staged(mem, OUT)
    assert mem.names("staging") == []


def tamper_pack(mem):
    mem.write_bytes("staging", f"{REG}/out/packs/00001.bin", b"CD")


def tamper_size(mem):
    mem.write_bytes("staging", f"{REG}/out/packs/00001.bin", b"CCC")


def tamper_extra(mem):
    mem.write_bytes("staging", f"{REG}/out/packs/00002.bin", b"evil")


def tamper_escape(mem):
    manifest = mem.read_json("staging", f"{REG}/out/{MANIFEST}")
    manifest["packs"][1]["blob"] = "../../other/v1/packs/00001.bin"
    mem.write_json("staging", f"{REG}/out/{MANIFEST}", manifest)


def tamper_scorer_path(mem):
    manifest = mem.read_json("staging", f"{REG}/out/{MANIFEST}")
    manifest["scorer"] = "../champion.json"
    mem.write_json("staging", f"{REG}/out/{MANIFEST}", manifest)


def tamper_model_range(mem):
    manifest = mem.read_json("staging", f"{REG}/out/{MANIFEST}")
    manifest["models"]["8003"]["length"] = 3
    mem.write_json("staging", f"{REG}/out/{MANIFEST}", manifest)


def tamper_other_version(mem):
    manifest = mem.read_json("staging", f"{REG}/out/{MANIFEST}")
    manifest["version"] = "v0"
    mem.write_json("staging", f"{REG}/out/{MANIFEST}", manifest)


@pytest.mark.parametrize(("tamper", "reason"), [
    (tamper_pack, "packs/00001.bin does not match the sha256"),
    (tamper_size, "packs/00001.bin has 3 bytes; its manifest says 2"),
    (tamper_extra, "files its manifest does not list: packs/00002.bin"),
    (tamper_escape, "names pack '../../other/v1/packs/00001.bin'"),
    (tamper_scorer_path, "names scorer '../champion.json'"),
    (tamper_model_range, "places model 8003 outside its pack"),
    (tamper_other_version, "describes parcels/v0, not parcels/v1"),
])
def test_a_tampered_staged_output_is_refused_and_nothing_reaches_models(mem, tamper, reason):
    stage(mem, OUT)
    tamper(mem)
    with pytest.raises(PublishRefused, match=reason.replace("(", r"\(").replace(".", r"\.")):
        publish_staged(mem, OUT, "models", REG, "parcels", "v1", champion=True)
    assert mem.names("models") == []


def test_a_missing_staged_manifest_is_refused(mem):
    stage(mem, OUT)
    mem.delete("staging", f"{REG}/out/{MANIFEST}")
    with pytest.raises(PublishRefused, match="wrote no manifest.json"):
        publish_staged(mem, OUT, "models", REG, "parcels", "v1", champion=False)
    assert mem.names("models") == []


def test_a_second_registration_of_the_same_version_is_refused_and_the_first_is_untouched(mem):
    stage(mem, OUT)
    first = publish_staged(mem, OUT, "models", REG, "parcels", "v1", champion=False)
    other = "reg-ffffffffffffffffffff"
    stage(mem, out=f"staging/{other}/out/", scorer=b"s <- 2")
    with pytest.raises(PublishRefused, match="version exists"):
        publish_staged(mem, f"staging/{other}/out/", "models", other, "parcels", "v1", champion=True)
    assert ModelStore(mem).read_manifest("parcels", "v1") == first
    assert not any(other in name for name in mem.names("models")) and not mem.exists("models", "parcels/champion.json")


def test_a_race_lost_at_the_conditional_manifest_create_is_refused_and_its_copies_removed(mem):
    """Both registrations passed the existence check; If-None-Match on the manifest decides."""
    stage(mem, OUT)
    other = "reg-ffffffffffffffffffff"
    stage(mem, out=f"staging/{other}/out/")

    class Racing(type(mem)):
        def exists(self, container, name):  # the other registration's manifest lands after this check
            return False if container == "models" else super().exists(container, name)

    mem.__class__ = Racing
    publish_staged(mem, OUT, "models", REG, "parcels", "v1", champion=False)
    winner = mem.read_bytes("models", "parcels/v1/manifest.json")
    with pytest.raises(PublishRefused, match="version exists.*registered concurrently"):
        publish_staged(mem, f"staging/{other}/out/", "models", other, "parcels", "v1", champion=False)
    assert mem.read_bytes("models", "parcels/v1/manifest.json") == winner
    assert not any(other in name for name in mem.names("models"))


def test_the_registration_container_never_targets_the_models_container(monkeypatch):
    from support.unit_data import make_settings

    import client_api.registration as registration

    monkeypatch.setattr(registration, "settings", lambda: make_settings())
    request = registration_request("parcels", "v1", champion=True)
    command = registration_command(request)
    assert "models" not in command and "--container" not in command and "--champion" not in command
    flags = {command[i]: command[i + 1] for i in range(len(command) - 1) if command[i].startswith("--")}
    for flag in ("--from-blob", "--result-blob", "--output"):
        assert flags[flag].startswith(f"staging/{request.id}/"), (flag, flags[flag])
