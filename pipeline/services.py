"""Per-process clients built from the app settings (read once), shared by the activities."""

from __future__ import annotations

import threading
from functools import cache

# Imported here, at load time, on purpose: activities run on several threads at once, and two threads
# importing the HTTP stack for the first time can see a half-initialised module ("SSL module is not
# available").
import requests  # noqa: F401
import urllib3.util.ssl_  # noqa: F401
from azure.core.pipeline.transport import RequestsTransport  # noqa: F401

from scoring.blobstore import BlobStore

from .aci.client import ContainerGroups
from .settings import Settings

_lock = threading.Lock()


@cache
def settings() -> Settings:
    return Settings.from_env()


def storage() -> BlobStore:
    with _lock:
        return _storage()


def container_groups() -> ContainerGroups:
    with _lock:
        return _container_groups()


@cache
def _storage() -> BlobStore:
    s = settings()
    return BlobStore.connect(account_url=s.storage_account_url, connection_string=s.storage_connection_string,
                             client_id=s.app_identity_client_id or None)


@cache
def _container_groups() -> ContainerGroups:
    return ContainerGroups(settings())
