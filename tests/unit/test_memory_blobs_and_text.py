"""The in-memory BlobStore keeps BlobStore's interface and contract; one-line errors; timestamps."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime

import pytest
from support.memory_blobs import MemoryBlobStore

from scoring.blobstore import BlobChanged, BlobExists, BlobNotFound, BlobStore
from scoring.errors import one_line, typed_one_line
from scoring.timestamps import SECONDS_FORMAT, iso_or_none, now_micros, now_seconds, parse_iso


def public_methods(cls) -> dict[str, inspect.Signature]:
    return {name: inspect.signature(member) for name, member in inspect.getmembers(cls, inspect.isfunction)
            if not name.startswith("_")}


def test_the_fake_has_every_blobstore_method_with_the_same_signature():
    real = public_methods(BlobStore)
    fake = public_methods(MemoryBlobStore)
    assert {name: str(sig) for name, sig in real.items()} == {name: str(fake[name]) for name in real}


def test_the_fake_keeps_the_contract(tmp_path):
    blobs = MemoryBlobStore()
    with pytest.raises(BlobNotFound, match="blob c/a does not exist"):
        blobs.read_bytes("c", "a")
    first = blobs.write_bytes("c", "a", b"0123456789")
    assert blobs.read_bytes("c", "a", offset=2, length=3) == b"234"
    with pytest.raises(BlobExists):
        blobs.write_bytes("c", "a", b"x", overwrite=False)
    second = blobs.write_bytes("c", "a", b"new")
    assert second != first and blobs.read_versioned("c", "a") == (b"new", second)
    with pytest.raises(BlobChanged):
        blobs.download_to_file("c", "a", str(tmp_path / "f"), etag=first)
    assert blobs.download_to_file("c", "a", str(tmp_path / "f"), etag=second).size == 3
    blobs.write_bytes("c", "b/x", b"1")
    assert [b.name for b in blobs.list("c", "b/")] == ["b/x"] and list(blobs.list("missing")) == []
    assert blobs.delete("c", "a") and not blobs.delete("c", "a") and not blobs.exists("c", "a")
    blobs.write_bytes("c", "j", b"{")
    with pytest.raises(ValueError, match="blob c/j is not valid JSON"):
        blobs.read_json("c", "j")


@pytest.mark.parametrize("error, text, typed", [
    (ValueError("bad\nTraceback ..."), "bad", "ValueError: bad"),
    (KeyError(), "KeyError", "KeyError: KeyError"),
    (RuntimeError("  spaced  "), "spaced", "RuntimeError: spaced"),
    (OSError("\n\nsecond line first"), "second line first", "OSError: second line first"),
])
def test_errors_become_one_line(error, text, typed):
    assert one_line(error) == text and typed_one_line(error) == typed


def test_timestamps():
    moment = datetime(2026, 11, 23, 6, 0, 41, 123456, tzinfo=UTC)
    assert moment.strftime(SECONDS_FORMAT) == "2026-11-23T06:00:41Z"
    assert datetime.strptime(now_seconds(), SECONDS_FORMAT)  # parses back with the one format
    assert now_micros().endswith("Z") and len(now_micros()) == len("2026-11-23T06:00:41.123456Z")
    assert parse_iso("2026-11-23T06:00:41Z") == moment.replace(microsecond=0)
    assert parse_iso("2026-11-23T06:00:41") == moment.replace(microsecond=0)  # naive is UTC
    assert parse_iso("2026-11-23T07:00:41+01:00") == moment.replace(microsecond=0)
    assert iso_or_none(moment) == "2026-11-23T06:00:41.123456+00:00" and iso_or_none(None) is None
    assert iso_or_none("already text") == "already text"
