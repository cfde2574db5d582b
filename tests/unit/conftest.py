"""Unit-test fixtures: an in-memory BlobStore and settings from the documented defaults (tests/support/unit_data.py)."""

from __future__ import annotations

import pytest
from support.memory_blobs import MemoryBlobStore
from support.unit_data import make_settings

from pipeline.settings import Settings


@pytest.fixture
def mem() -> MemoryBlobStore:
    store = MemoryBlobStore()
    for container in ("models", "input", "results"):
        store.ensure_container(container)
    return store


@pytest.fixture
def settings() -> Settings:
    return make_settings()
