"""The one module that talks to Azure Blob Storage (azure-storage-blob).

In Azure: an account URL and DefaultAzureCredential (managed identity). In development: Azurite through
a connection string. Both the scoring worker and the Functions app use this module.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobBlock, BlobServiceClient, ContentSettings, ExponentialRetry

# Many small requests dominate; a bigger pool lets download threads run without waiting for sockets.
_POOL_SIZE = 32
# The SDK default (15 s base, x3) makes an unreachable account look like a hang for ~80 s. Retries stay,
# shorter: ~1 s, 3 s, 5 s. The orchestration retries whole shards on top of this.
_STREAM_CHUNK = 1 << 20  # ranged reads of streamed blobs
_READ_BLOCK = 256 * 1024  # bytes per read of a response body (azure-storage-blob's own DATA_BLOCK_SIZE)
_RETRY = dict(initial_backoff=1, increment_base=2, retry_total=3, random_jitter_range=1)


class BlobNotFound(LookupError):
    pass


class BlobExists(FileExistsError):
    pass


class BlobChanged(RuntimeError):
    pass


@dataclass(frozen=True)
class BlobInfo:
    name: str
    etag: str
    size: int
    last_modified: str


class BlobStore:
    def __init__(self, service: BlobServiceClient):
        self._service = service

    @classmethod
    def connect(cls, account_url: str = "", connection_string: str = "", *, client_id: str | None = None) -> BlobStore:
        """Connection string (Azurite) when given, otherwise the account URL with managed identity.

        client_id: the user-assigned identity to use (the app's in the Functions app, AZURE_CLIENT_ID = the
        worker's in a container). Pass it: with several identities on a host, none is chosen by default.
        """
        import requests
        from azure.core.pipeline.transport import RequestsTransport

        session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=_POOL_SIZE, pool_maxsize=_POOL_SIZE)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        # The SDK reads responses 256 KiB at a time when it makes its transport; one made here would read
        # 4 KiB at a time (azure-core's default): 64x the Python iterations per download.
        transport = RequestsTransport(session=session, session_owner=False, connection_data_block_size=_READ_BLOCK)
        options = dict(transport=transport, retry_policy=ExponentialRetry(**_RETRY))
        if connection_string:
            return cls(BlobServiceClient.from_connection_string(connection_string, **options))
        if not account_url:
            raise ValueError("no storage configured: set an account URL (managed identity) or a connection string")
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential(managed_identity_client_id=client_id)
        return cls(BlobServiceClient(account_url, credential=credential, **options))

    def ensure_container(self, container: str) -> None:
        try:
            self._service.create_container(container)
        except ResourceExistsError:
            pass

    def _blob(self, container: str, name: str):
        return self._service.get_blob_client(container, name)

    def read_bytes(self, container: str, name: str, offset: int | None = None, length: int | None = None) -> bytes:
        try:
            return self._blob(container, name).download_blob(offset=offset, length=length).readall()
        except ResourceNotFoundError:
            raise BlobNotFound(f"blob {container}/{name} does not exist") from None

    def read_versioned(self, container: str, name: str) -> tuple[bytes, str]:
        """The blob's bytes and the ETag of exactly that version."""
        try:
            downloader = self._blob(container, name).download_blob()
        except ResourceNotFoundError:
            raise BlobNotFound(f"blob {container}/{name} does not exist") from None
        return downloader.readall(), downloader.properties.etag.strip('"')

    def read_json(self, container: str, name: str) -> dict:
        data = self.read_bytes(container, name)
        try:
            return json.loads(data)
        except ValueError as e:
            raise ValueError(f"blob {container}/{name} is not valid JSON: {e}") from None

    def download_to_file(self, container: str, name: str, path: str, etag: str = "") -> BlobInfo:
        """Download to a local file; returns the properties of the version that was read. With an etag,
        only that version is read (BlobChanged otherwise)."""
        condition = {"etag": f'"{etag}"', "match_condition": MatchConditions.IfNotModified} if etag else {}
        try:
            downloader = self._blob(container, name).download_blob(**condition)
        except ResourceNotFoundError:
            raise BlobNotFound(f"blob {container}/{name} does not exist") from None
        except ResourceModifiedError:
            raise BlobChanged(f"blob {container}/{name} changed: it is no longer version {etag}") from None
        with open(path, "wb") as f:
            downloader.readinto(f)
        p = downloader.properties
        return BlobInfo(name, p.etag.strip('"'), p.size, p.last_modified.isoformat())

    def write_bytes(self, container: str, name: str, data: bytes, overwrite: bool = True,
                    content_type: str = "application/octet-stream") -> str:
        """Write a blob; with overwrite=False an existing blob raises BlobExists. Returns the ETag."""
        try:
            r = self._blob(container, name).upload_blob(
                data, overwrite=overwrite, content_settings=ContentSettings(content_type=content_type),
                max_concurrency=4,
            )
        except ResourceExistsError:
            raise BlobExists(f"blob {container}/{name} already exists") from None
        return str(r.get("etag", "")).strip('"')

    def write_json(self, container: str, name: str, value: object, overwrite: bool = True) -> str:
        data = json.dumps(value, indent=2, sort_keys=True).encode()
        return self.write_bytes(container, name, data, overwrite, "application/json")

    def upload_file(self, container: str, name: str, path: str, content_type: str = "text/csv") -> str:
        with open(path, "rb") as f:
            r = self._blob(container, name).upload_blob(
                f, overwrite=True, content_settings=ContentSettings(content_type=content_type), max_concurrency=4
            )
        return str(r.get("etag", "")).strip('"')

    def write_json_if(self, container: str, name: str, value: object, etag: str | None) -> str:
        """A conditional write: only if the blob is still version `etag` (If-Match), or, with etag None,
        only if it does not exist (If-None-Match: *). BlobChanged otherwise. Returns the new ETag."""
        data = json.dumps(value, indent=2, sort_keys=True).encode()
        condition = ({"overwrite": True, "etag": f'"{etag}"', "match_condition": MatchConditions.IfNotModified}
                     if etag is not None else {"overwrite": False})
        try:
            r = self._blob(container, name).upload_blob(
                data, content_settings=ContentSettings(content_type="application/json"), **condition)
        except (ResourceModifiedError, ResourceExistsError):
            raise BlobChanged(f"blob {container}/{name} was changed by someone else") from None
        except ResourceNotFoundError:  # If-Match on a blob that has since been deleted
            raise BlobChanged(f"blob {container}/{name} was deleted by someone else") from None
        return str(r.get("etag", "")).strip('"')

    def read_json_versioned(self, container: str, name: str) -> tuple[dict, str] | None:
        """The JSON value and the ETag of exactly that version, or None if the blob does not exist."""
        try:
            data, etag = self.read_versioned(container, name)
        except BlobNotFound:
            return None
        try:
            return json.loads(data), etag
        except ValueError as e:
            raise ValueError(f"blob {container}/{name} is not valid JSON: {e}") from None

    def stream(self, container: str, name: str, chunk_bytes: int | None = None,
               etag: str | None = None) -> Iterator[bytes]:
        """The blob's bytes in ranged reads of chunk_bytes (the SDK's downloader would buffer its first
        32 MB get). Every range is read If-Match the first one's ETag (or `etag`, to read exactly a version
        read before): a blob that changes midway raises BlobChanged instead of mixing two versions."""
        chunk_bytes = chunk_bytes or _STREAM_CHUNK
        info = self.info(container, name)
        if info is None:
            raise BlobNotFound(f"blob {container}/{name} does not exist")
        if etag is not None and info.etag != etag:
            raise BlobChanged(f"blob {container}/{name} changed since it was read (ETag {info.etag}, not {etag})")
        condition = {"etag": f'"{info.etag}"', "match_condition": MatchConditions.IfNotModified}
        for offset in range(0, info.size, chunk_bytes):
            try:
                yield self._blob(container, name).download_blob(
                    offset=offset, length=min(chunk_bytes, info.size - offset), **condition).readall()
            except ResourceModifiedError:
                raise BlobChanged(f"blob {container}/{name} changed while it was read") from None

    def upload_stream(self, container: str, name: str, chunks: Iterator[bytes],
                      content_type: str = "text/csv") -> str:
        """Upload from an iterator of byte chunks: each staged as one block, then the list committed once
        (Put Block / Put Block List), so the blob is never whole in memory and appears complete or not at all."""
        from base64 import b64encode

        from azure.storage.blob import BlobBlock

        blob = self._blob(container, name)
        blocks = []
        for number, chunk in enumerate(chunks):
            if chunk:
                block_id = b64encode(f"{number:010d}".encode()).decode()
                blob.stage_block(block_id, chunk)
                blocks.append(BlobBlock(block_id=block_id))
        r = blob.commit_block_list(blocks, content_settings=ContentSettings(content_type=content_type))
        return str(r.get("etag", "")).strip('"')

    def info(self, container: str, name: str) -> BlobInfo | None:
        try:
            p = self._blob(container, name).get_blob_properties()
        except ResourceNotFoundError:
            return None
        return BlobInfo(name, p.etag.strip('"'), p.size, p.last_modified.isoformat())

    def exists(self, container: str, name: str) -> bool:
        return self.info(container, name) is not None

    def list(self, container: str, prefix: str = "") -> Iterator[BlobInfo]:
        try:
            for p in self._service.get_container_client(container).list_blobs(name_starts_with=prefix or None):
                yield BlobInfo(p.name, p.etag.strip('"'), p.size, p.last_modified.isoformat())
        except ResourceNotFoundError:
            return

    def delete(self, container: str, name: str) -> bool:
        try:
            self._blob(container, name).delete_blob()
            return True
        except ResourceNotFoundError:
            return False

    # Block uploads: an upload in parts (each a Put Block), made visible at once by a Put Block List.
    # Uncommitted blocks expire by themselves (Blob Storage drops them after a week).

    def stage_block(self, container: str, name: str, index: int, data: bytes) -> None:
        self._blob(container, name).stage_block(_block_id(index), data, length=len(data))

    def uncommitted_blocks(self, container: str, name: str) -> dict[int, int]:
        """Part index -> size of the blob's uncommitted blocks (of stage_block); {} if none."""
        try:
            _, uncommitted = self._blob(container, name).get_block_list("uncommitted")
        except ResourceNotFoundError:
            return {}
        return {int(b.id): b.size for b in uncommitted if str(b.id).isdigit()}

    def commit_blocks(self, container: str, name: str, parts: Iterable[int],
                      content_type: str = "application/octet-stream") -> str:
        """Make these parts, in this order, the blob's content; returns the ETag."""
        r = self._blob(container, name).commit_block_list([BlobBlock(_block_id(i)) for i in parts],
                                                          content_settings=ContentSettings(content_type=content_type))
        return str(r.get("etag", "")).strip('"')


def _block_id(index: int) -> str:
    """The SDK base64-encodes the id it is given; every id of a blob must have the same length."""
    return f"{index:06d}"
