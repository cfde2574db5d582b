"""pipeline.revisions.current_revision: the one way the HTTP routes, the dashboard and accuracy find a run's
published files (on the in-memory store: no Azurite needed)."""

from __future__ import annotations

import pytest

from pipeline.revisions import UnreadablePointer, current_revision


def test_nothing_is_published_without_a_pointer_whatever_files_lie_around(mem):
    assert current_revision(mem, "results", "run-none") is None
    mem.write_bytes("results", "runs/run-flat/_SUCCESS", b"2026-11-23T00:00:00Z")
    mem.write_bytes("results", "runs/run-flat/results.csv", b"postcode,date\n")
    assert current_revision(mem, "results", "run-flat") is None  # the layout is not the truth


def test_the_pointer_names_the_revision_whose_files_are_read(mem):
    etag = mem.write_json("results", "runs/run-rev/current.json",
                          {"revision": "run-rev-retry1", "published": "2026-11-23T05:00:00Z"})
    current = current_revision(mem, "results", "run-rev")
    assert (current.run_id, current.revision, current.published, current.etag) == \
        ("run-rev", "run-rev-retry1", "2026-11-23T05:00:00Z", etag)
    assert current.prefix == "runs/run-rev/revisions/run-rev-retry1/"
    assert current.results == current.prefix + "results.csv"
    assert current.manifest == current.prefix + "manifest.json"


@pytest.mark.parametrize(("pointer", "words"), [
    (b'{"revision": "../../etc", "published": "x"}', "runs/run-bad/current.json is corrupt"),
    (b'{"published": "x"}', "runs/run-bad/current.json is corrupt"),
    (b'["run-bad"]', "runs/run-bad/current.json is corrupt"),
    (b"{not json", "runs/run-bad/current.json is not valid JSON"),
])
def test_a_pointer_that_cannot_be_followed_is_refused_naming_the_blob(mem, pointer, words):
    mem.write_bytes("results", "runs/run-bad/current.json", pointer)
    with pytest.raises(UnreadablePointer, match=words):
        current_revision(mem, "results", "run-bad")
