"""Per-process clients built from the app settings (read once)."""

from __future__ import annotations

from functools import cache

from scoring.blobstore import BlobStore

from .aci import ContainerGroups
from .settings import Settings


@cache
def settings() -> Settings:
    return Settings.from_env()


@cache
def storage() -> BlobStore:
    s = settings()
    return BlobStore.connect(account_url=s.storage_account_url, connection_string=s.storage_connection_string)


@cache
def container_groups() -> ContainerGroups:
    return ContainerGroups(settings())
