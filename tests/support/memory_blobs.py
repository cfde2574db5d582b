"""An in-memory stand-in for scoring.blobstore.BlobStore, for unit tests of code that takes the store as a parameter.

It keeps the contract the production code relies on: missing blobs raise BlobNotFound, overwrite=False on an
existing blob raises BlobExists, a download pinned to an ETag raises BlobChanged after a write, every write gets
a new ETag and a later last-modified time, list() is sorted by name and filtered by prefix, and a missing container
lists nothing. tests/unit/test_memory_blobs.py keeps its public methods in step with BlobStore's.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta

from scoring.blobstore import BlobChanged, BlobExists, BlobInfo, BlobNotFound

EPOCH = datetime(2026, 11, 23, 6, 0, 0, tzinfo=UTC)


class MemoryBlobStore:
    def __init__(self) -> None:
        self.blobs: dict[tuple[str, str], tuple[bytes, str, datetime, str]] = {}  # data, etag, modified, type
        self.containers: set[str] = set()
        self.blocks: dict[tuple[str, str], dict[int, bytes]] = {}  # uncommitted blocks, by part index
        self._writes = 0

    # ------------------------------------------------------------------ the BlobStore interface

    def ensure_container(self, container: str) -> None:
        self.containers.add(container)

    def read_bytes(self, container: str, name: str, offset: int | None = None, length: int | None = None) -> bytes:
        data = self._get(container, name)[0]
        if offset is None:
            return data
        return data[offset:] if length is None else data[offset:offset + length]

    def read_versioned(self, container: str, name: str) -> tuple[bytes, str]:
        data, etag, _, _ = self._get(container, name)
        return data, etag

    def read_json(self, container: str, name: str) -> dict:
        try:
            return json.loads(self.read_bytes(container, name))
        except ValueError as e:
            raise ValueError(f"blob {container}/{name} is not valid JSON: {e}") from None

    def download_to_file(self, container: str, name: str, path: str, etag: str = "") -> BlobInfo:
        data, current, _, _ = self._get(container, name)
        if etag and etag != current:
            raise BlobChanged(f"blob {container}/{name} changed: it is no longer version {etag}")
        with open(path, "wb") as f:
            f.write(data)
        return self._info(container, name)

    def write_bytes(self, container: str, name: str, data: bytes, overwrite: bool = True,
                    content_type: str = "application/octet-stream") -> str:
        if not overwrite and (container, name) in self.blobs:
            raise BlobExists(f"blob {container}/{name} already exists")
        self._writes += 1
        etag = f"0x8DD{self._writes:012X}"
        self.containers.add(container)
        self.blobs[(container, name)] = (bytes(data), etag, EPOCH + timedelta(seconds=self._writes), content_type)
        return etag

    def write_json(self, container: str, name: str, value: object, overwrite: bool = True) -> str:
        data = json.dumps(value, indent=2, sort_keys=True).encode()
        return self.write_bytes(container, name, data, overwrite, "application/json")

    def upload_file(self, container: str, name: str, path: str, content_type: str = "text/csv") -> str:
        with open(path, "rb") as f:
            return self.write_bytes(container, name, f.read(), content_type=content_type)

    def write_json_if(self, container: str, name: str, value: object, etag: str | None) -> str:
        current = self.blobs.get((container, name))
        if (etag is None and current is not None) or (etag is not None and (current is None or current[1] != etag)):
            raise BlobChanged(f"blob {container}/{name} was changed by someone else")
        return self.write_json(container, name, value)

    def read_json_versioned(self, container: str, name: str) -> tuple[dict, str] | None:
        if (container, name) not in self.blobs:
            return None
        return self.read_json(container, name), self.blobs[(container, name)][1]

    def stream(self, container: str, name: str, chunk_bytes: int | None = None,
               etag: str | None = None) -> Iterator[bytes]:
        data, current = self._get(container, name)[:2]
        if etag is not None and current != etag:
            raise BlobChanged(f"blob {container}/{name} changed since it was read (ETag {current}, not {etag})")
        step = chunk_bytes or 1 << 20
        for offset in range(0, len(data), step):
            yield data[offset:offset + step]

    def upload_stream(self, container: str, name: str, chunks: Iterator[bytes], content_type: str = "text/csv") -> str:
        return self.write_bytes(container, name, b"".join(chunks), content_type=content_type)

    def info(self, container: str, name: str) -> BlobInfo | None:
        return self._info(container, name) if (container, name) in self.blobs else None

    def exists(self, container: str, name: str) -> bool:
        return (container, name) in self.blobs

    def list(self, container: str, prefix: str = "") -> Iterator[BlobInfo]:
        for c, name in sorted(self.blobs):
            if c == container and name.startswith(prefix):
                yield self._info(c, name)

    def delete(self, container: str, name: str) -> bool:
        return self.blobs.pop((container, name), None) is not None

    def stage_block(self, container: str, name: str, index: int, data: bytes) -> None:
        self.blocks.setdefault((container, name), {})[index] = bytes(data)

    def uncommitted_blocks(self, container: str, name: str) -> dict[int, int]:
        return {i: len(d) for i, d in self.blocks.get((container, name), {}).items()}

    def commit_blocks(self, container: str, name: str, parts: Iterable[int],
                      content_type: str = "application/octet-stream") -> str:
        staged = self.blocks.get((container, name), {})
        data = b"".join(staged[i] for i in parts)  # KeyError, as Azure refuses a block it does not have
        del self.blocks[(container, name)]
        return self.write_bytes(container, name, data, content_type=content_type)

    # ------------------------------------------------------------------ for tests

    def text(self, container: str, name: str) -> str:
        return self.read_bytes(container, name).decode()

    def names(self, container: str, prefix: str = "") -> list[str]:
        return [b.name for b in self.list(container, prefix)]

    def _get(self, container: str, name: str) -> tuple[bytes, str, datetime, str]:
        try:
            return self.blobs[(container, name)]
        except KeyError:
            raise BlobNotFound(f"blob {container}/{name} does not exist") from None

    def _info(self, container: str, name: str) -> BlobInfo:
        data, etag, modified, _ = self.blobs[(container, name)]
        return BlobInfo(name, etag, len(data), modified.isoformat())
