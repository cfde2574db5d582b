"""Uploaded model versions are hostile input: scoring.staged must refuse what could escape or explode."""

from __future__ import annotations

import io
import tarfile
import zipfile

import pytest

from scoring.staged import ArchiveError, archive_members, check_members, unpack


def tar_of(files: dict[str, bytes], mode: str = "w:gz") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=mode) as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return out.getvalue()


def zip_of(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return out.getvalue()


@pytest.mark.parametrize("pack", [tar_of, lambda f: tar_of(f, "w"), zip_of])
@pytest.mark.parametrize("on_disk", [False, True])
def test_tar_tgz_and_zip_unpack_to_the_same_files(pack, on_disk, tmp_path):
    files = {"1000.rds": b"a" * 10, "./20000.rds": b"b", "scorer.R": b"score <- function(m, d) 1",
             "training_end.csv": b"postcode,training_end,step\n1000,2026-11-30,1 week\n"}
    source = pack(files)
    if on_disk:  # the registration container unpacks a downloaded file
        (tmp_path / "upload.bin").write_bytes(source)
        source = tmp_path / "upload.bin"
    folder = unpack(source, tmp_path / "v")
    assert sorted(p.name for p in folder.iterdir()) == ["1000.rds", "20000.rds", "scorer.R", "training_end.csv"]
    assert (folder / "1000.rds").read_bytes() == b"a" * 10


@pytest.mark.parametrize("files, words", [
    ({"../1000.rds": b"x"}, "top level"),
    ({"/etc/1000.rds": b"x"}, "top level"),
    ({"sub/1000.rds": b"x"}, "top level"),
    ({"1000.rds": b"x", "notes.txt": b"x"}, "notes.txt"),
    ({"12.rds": b"x"}, "12.rds"),
    ({"scorer.R": b"x"}, "no models"),
])
def test_bad_members_are_refused_with_their_names(files, words):
    for pack in (tar_of, zip_of):
        with pytest.raises(ArchiveError, match=words.replace(".", r"\.")):
            check_members(archive_members(pack(files)))


def test_links_duplicates_and_garbage_are_refused():
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as t:
        info = tarfile.TarInfo("1000.rds")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        t.addfile(info)
    with pytest.raises(ArchiveError, match="not a regular file"):
        archive_members(out.getvalue())
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as t:
        for _ in range(2):
            info = tarfile.TarInfo("1000.rds")
            info.size = 1
            t.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(ArchiveError, match="more than once"):
        check_members(archive_members(out.getvalue()))
    with pytest.raises(ArchiveError, match="not a tar"):
        archive_members(b"hello world " * 100)
    with pytest.raises(ArchiveError, match="no models"):  # zero blocks: a valid, empty tar
        check_members(archive_members(b"\x00" * 1024))


def test_unpacked_size_is_bounded_by_what_is_written_not_what_is_declared(tmp_path):
    bomb = zip_of({"1000.rds": b"\x00" * 2_000_000})  # compresses to a few kB
    assert len(bomb) < 20_000
    with pytest.raises(ArchiveError, match="unpacks to 2000000 bytes"):
        check_members(archive_members(bomb), max_unpacked=1_000_000)
    # A zip whose header under-declares the size: the bytes actually written are counted.
    lying = bytearray(bomb)
    central = lying.rfind(b"PK\x01\x02")
    lying[central + 24:central + 28] = (10).to_bytes(4, "little")  # uncompressed size in the central directory
    with pytest.raises((ArchiveError, zipfile.BadZipFile)):
        unpack(bytes(lying), tmp_path / "v", max_unpacked=1_000_000)
