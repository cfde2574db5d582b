"""Blob Storage as the worker identity sees it in Azure, for tests on Azurite (which has no RBAC).

The rights come from the role assignments infra/*.bicep grants the worker identity (tests/test_infra.py reads
them): Storage Blob Data Reader on a container = read it; Storage Blob Data Contributor = read and write it;
nothing else. A call outside them raises WorkerDenied, as Azure would answer 403 AuthorizationPermissionMismatch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# BlobStore methods that only read; every other method that names a container is taken as a write.
READS = frozenset({"read_bytes", "read_versioned", "read_json", "read_json_versioned", "download_to_file",
                   "stream", "info", "exists", "list", "uncommitted_blocks"})
ROLE_RIGHTS = {"Storage Blob Data Reader": {"read"}, "Storage Blob Data Contributor": {"read", "write"}}


class WorkerDenied(PermissionError):
    """What Azure would refuse the worker identity."""


def worker_rights(assignments: set[tuple[str, str, str, str]], containers: dict[str, str]) -> dict[str, set[str]]:
    """container name -> {"read", "write"} from (identity, role, scope type, scope symbol) role assignments."""
    rights: dict[str, set[str]] = {}
    for identity, role, scope_type, symbol in assignments:
        if identity != "workerIdentity" or role not in ROLE_RIGHTS:
            continue
        assert scope_type.endswith("/containers") and symbol.endswith("Container"), (role, symbol)
        rights.setdefault(containers[symbol.removesuffix("Container")], set()).update(ROLE_RIGHTS[role])
    return rights


class WorkerScopedBlobs:
    """Wraps a BlobStore; each call naming a container is checked against the worker's rights first."""

    def __init__(self, inner: Any, rights: dict[str, set[str]]):
        self._inner, self._rights = inner, rights
        self.denied: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr) or name.startswith("_"):
            return attr
        need = "read" if name in READS else "write"

        def checked(container: str, *args: Any, **kwargs: Any) -> Any:
            if need not in self._rights.get(container, set()):
                self.denied.append(f"{name} {container}")
                raise WorkerDenied(f"the worker identity may not {need} container {container!r} ({name})")
            return attr(container, *args, **kwargs)

        return checked if isinstance(attr, Callable) else attr
