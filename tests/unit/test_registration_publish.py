"""The app's half of a registration on an in-memory store: the container's staged output is verified, then
published into `models` (manifest last, only if absent); tampered or concurrent outputs are refused and leave
nothing in `models`. The staged output is written here as the container lays it out (no R needed).

Staging is writable by every container (any model's code), so the app publishes only the manifest whose sha256
the registration container printed in its own log; the structural checks also hold for a manifest it vouched
for (a hostile upload's own models run in that container)."""

from __future__ import annotations

import pytest
from support.unit_data import sha, vouched
from support.unit_data import stage_built_version as stage

from client_api.registration import registration_command, registration_request
from client_api.registration_publish import PublishRefused, delete_staged, publish_staged
from scoring.modelstore import MANIFEST, ModelStore

REG = "reg-0123456789abcdef0123"
OUT = f"staging/{REG}/out/"




def test_a_verified_version_is_published_under_its_own_folder_and_reads_back(mem):
    stage(mem, OUT)
    published = publish_staged(mem, OUT, "models", REG, "parcels", "v1", champion=True,
                               manifest_sha256=vouched(mem, OUT))
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
    # Vouched for as it is now: the structural checks alone must refuse it.
    with pytest.raises(PublishRefused, match=reason.replace("(", r"\(").replace(".", r"\.")):
        publish_staged(mem, OUT, "models", REG, "parcels", "v1", champion=True, manifest_sha256=vouched(mem, OUT))
    assert mem.names("models") == []


def rewrite_consistently(mem):
    """What a scoring container could do to staging after the check: new pack bytes and a manifest whose
    sha256s all match them."""
    evil = b"EVIL"
    mem.write_bytes("staging", f"{REG}/out/packs/00001.bin", evil)
    manifest = mem.read_json("staging", f"{REG}/out/{MANIFEST}")
    manifest["packs"][1].update(size=len(evil), sha256=sha(evil))
    manifest["models"]["8003"].update(length=len(evil), sha256=sha(evil))
    mem.write_json("staging", f"{REG}/out/{MANIFEST}", manifest)


def rewrite_manifest_only(mem):
    manifest = mem.read_json("staging", f"{REG}/out/{MANIFEST}")
    manifest["models"]["8001"]["model_class"] = "lm"  # any byte
    mem.write_json("staging", f"{REG}/out/{MANIFEST}", manifest)


@pytest.mark.parametrize("rewrite", [rewrite_consistently, rewrite_manifest_only])
def test_a_version_rewritten_in_staging_after_its_check_never_reaches_models(mem, rewrite):
    stage(mem, OUT)
    verified = vouched(mem, OUT)  # what the registration container printed in its log
    rewrite(mem)
    with pytest.raises(PublishRefused, match="not the one the registration container verified"):
        publish_staged(mem, OUT, "models", REG, "parcels", "v1", champion=True, manifest_sha256=verified)
    assert mem.names("models") == []


def test_a_missing_staged_manifest_is_refused(mem):
    stage(mem, OUT)
    verified = vouched(mem, OUT)
    mem.delete("staging", f"{REG}/out/{MANIFEST}")
    with pytest.raises(PublishRefused, match="wrote no manifest.json"):
        publish_staged(mem, OUT, "models", REG, "parcels", "v1", champion=False, manifest_sha256=verified)
    assert mem.names("models") == []


def test_a_second_registration_of_the_same_version_is_refused_and_the_first_is_untouched(mem):
    stage(mem, OUT)
    first = publish_staged(mem, OUT, "models", REG, "parcels", "v1", champion=False, manifest_sha256=vouched(mem, OUT))
    other = "reg-ffffffffffffffffffff"
    stage(mem, out=f"staging/{other}/out/", scorer=b"s <- 2")
    with pytest.raises(PublishRefused, match="version exists"):
        publish_staged(mem, f"staging/{other}/out/", "models", other, "parcels", "v1", champion=True,
                       manifest_sha256=vouched(mem, f"staging/{other}/out/"))
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
    publish_staged(mem, OUT, "models", REG, "parcels", "v1", champion=False, manifest_sha256=vouched(mem, OUT))
    winner = mem.read_bytes("models", "parcels/v1/manifest.json")
    with pytest.raises(PublishRefused, match="version exists.*registered concurrently"):
        publish_staged(mem, f"staging/{other}/out/", "models", other, "parcels", "v1", champion=False,
                       manifest_sha256=vouched(mem, f"staging/{other}/out/"))
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
    # It reads the upload where no container may write, and writes in staging only.
    assert flags["--from-blob"] == f"uploads/{request.id}/upload.bin"
    for flag in ("--result-blob", "--output"):
        assert flags[flag].startswith(f"staging/{request.id}/"), (flag, flags[flag])


# ----------------------------------------------------------------- finish_registration: the log is the witness


@pytest.fixture
def finishing(mem, monkeypatch):
    """finish_registration on the in-memory store: an upload in `uploads`, a built version in staging."""
    from support.unit_data import make_settings

    import client_api.registration as registration

    monkeypatch.setattr(registration, "settings", lambda: make_settings())
    monkeypatch.setattr(registration, "storage", lambda: mem)
    request = registration_request("parcels", "v1", champion=True)
    for blob in (request.staged, request.result):
        container, _, name = blob.partition("/")
        mem.ensure_container(container)
    mem.write_bytes("uploads", f"{request.id}/upload.bin", b"the archive")
    stage(mem, request.output)
    return request


def finish(request, result: dict | None, logs: str | None):
    import client_api.registration as registration
    from client_api.registration import ContainerWait, FinishRequest, finish_registration
    from pipeline.payloads import ShardState

    blobs = registration.storage()
    if result is not None:
        container, _, name = request.result.partition("/")
        blobs.write_json(container, name, result)
    if logs is not None:
        blobs.write_bytes("results", request.logs, logs.encode())
    return finish_registration(FinishRequest(request=request, waited=ContainerWait(ShardState.EXITED, exit_code=0)))


def built(request, digest: str) -> dict:
    return {"ok": True, "model": "parcels", "version": "v1", "models": 3, "output": request.output,
            "manifest_sha256": digest}


def test_a_version_its_container_vouched_for_is_published_and_everything_staged_removed(mem, finishing):
    from scoring.staged import verified_line

    line = verified_line(built(finishing, vouched(mem, finishing.output)))
    outcome = finish(finishing, built(finishing, "ignored"), f"R says hello\n{line}\nbye\n")
    assert outcome.state == "registered", outcome
    assert outcome.details["models"] == 3 and "manifest_sha256" not in outcome.details
    assert ModelStore(mem).read_manifest("parcels", "v1").postcodes == ["8001", "8002", "8003"]
    assert mem.names("uploads") == [] and mem.names("staging") == []


def test_success_claimed_only_in_staging_publishes_nothing(mem, finishing):
    """result.json lies in staging, which any container may write: without the log's word nothing is published."""
    outcome = finish(finishing, built(finishing, vouched(mem, finishing.output)), "no verified line here\n")
    assert outcome.state == "failed" and "does not vouch for its output" in outcome.error, outcome
    assert mem.names("models") == [] and mem.names("uploads") == [] and mem.names("staging") == []


def test_a_version_rewritten_after_its_container_vouched_for_it_is_refused(mem, finishing):
    from scoring.staged import verified_line

    line = verified_line(built(finishing, vouched(mem, finishing.output)))
    manifest = mem.read_json("staging", finishing.output.partition("/")[2] + MANIFEST)
    manifest["r_version"] = "9.9.9"
    mem.write_json("staging", finishing.output.partition("/")[2] + MANIFEST, manifest)
    outcome = finish(finishing, None, line + "\n")
    assert outcome.state == "refused" and "not the one the registration container verified" in outcome.error
    assert mem.names("models") == []


def test_the_log_line_is_read_for_this_output_only_and_the_last_one_counts():
    from scoring.staged import verified_from_logs, verified_line

    mine, other = "staging/reg-a/out/", "staging/reg-b/out/"
    first = verified_line({"ok": True, "output": mine, "manifest_sha256": "1" * 64})
    last = verified_line({"ok": True, "output": mine, "manifest_sha256": "2" * 64})
    theirs = verified_line({"ok": True, "output": other, "manifest_sha256": "3" * 64})
    assert verified_from_logs(f"{first}\n{last}\n{theirs}\n", mine)["manifest_sha256"] == "2" * 64
    assert verified_from_logs(theirs, mine) is None
    assert verified_from_logs("scoring register: verified {not json", mine) is None
    assert verified_from_logs(verified_line({"ok": False, "output": mine, "manifest_sha256": "1"}), mine) is None
    assert verified_from_logs(verified_line({"ok": True, "output": mine}), mine) is None
    assert verified_from_logs("", mine) is None
