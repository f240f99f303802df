"""The blob storage interface shared by the local and Azure backends.

``BlobStore`` validates every container and blob name before any I/O, then calls
the backend's ``_``-prefixed hooks inside the backend's error translation, so
callers only ever see ``core.errors`` exceptions for storage failures.
"""

from __future__ import annotations

import contextlib
import mimetypes
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, ClassVar, Self

from core.errors import InvalidInput
from infrastructure.storage.names import (
    validate_blob_name,
    validate_blob_prefix,
    validate_container_name,
    validate_page_size,
)

DEFAULT_CONTENT_TYPE = "application/octet-stream"
ACCESS_TIERS = {"hot": "Hot", "cool": "Cool", "cold": "Cold", "archive": "Archive"}
CHUNK_SIZE = 4 * 1024 * 1024


@dataclass(frozen=True)
class BlobProperties:
    """What a backend knows about one blob; ``last_modified`` is tz-aware UTC."""

    container: str
    name: str
    size: int
    content_type: str | None
    last_modified: datetime
    etag: str


@dataclass(frozen=True)
class BlobPage:
    """One page of a listing; pass ``continuation_token`` back for the next page (None: last page)."""

    items: tuple[BlobProperties, ...]
    continuation_token: str | None


@dataclass(frozen=True)
class GdalPath:
    """A path GDAL can open, used as ``with rasterio.Env(**config): rasterio.open(path)``."""

    path: str
    config: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"GdalPath(path={self.path!r}, config=<{len(self.config)} options hidden>)"


def guess_content_type(name: str) -> str:
    """The content type implied by the blob name's extension, else application/octet-stream."""
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return guessed or DEFAULT_CONTENT_TYPE


def normalize_tier(tier: str) -> str:
    """The Azure spelling of an access tier name (Hot, Cool, Cold, Archive), case-insensitively."""
    if not isinstance(tier, str) or tier.lower() not in ACCESS_TIERS:
        raise InvalidInput(f"invalid access tier {tier!r}: use one of {', '.join(ACCESS_TIERS.values())}")
    return ACCESS_TIERS[tier.lower()]


class BlobStore(ABC):
    """Containers of named blobs; every public method validates names before any I/O."""

    backend: ClassVar[str]

    # -- public API ---------------------------------------------------------------------------

    def ensure_container(self, container: str) -> None:
        """Create the container if it does not exist (idempotent)."""
        validate_container_name(container)
        with self._translate(container):
            self._ensure_container(container)

    def container_exists(self, container: str) -> bool:
        """Whether the container exists."""
        validate_container_name(container)
        with self._translate(container):
            return self._container_exists(container)

    def list_blobs(
        self, container: str, prefix: str = "", *, page_size: int = 1000, continuation_token: str | None = None
    ) -> BlobPage:
        """One page of blobs whose names start with ``prefix``, in name order (Azure's: by UTF-16 code units)."""
        validate_container_name(container)
        validate_blob_prefix(prefix)
        validate_page_size(page_size)
        if continuation_token is not None and not isinstance(continuation_token, str):
            raise InvalidInput("the continuation token must be a string from a previous page")
        with self._translate(container):
            return self._list_blobs(container, prefix, page_size, continuation_token or None)

    def iter_blobs(self, container: str, prefix: str = "", *, page_size: int = 1000) -> Iterator[BlobProperties]:
        """Every blob whose name starts with ``prefix``, in name order, fetched page by page."""
        validate_container_name(container)  # now, not at the first next()
        validate_blob_prefix(prefix)
        validate_page_size(page_size)
        return self._iter_pages(container, prefix, page_size)

    def _iter_pages(self, container: str, prefix: str, page_size: int) -> Iterator[BlobProperties]:
        token: str | None = None
        while True:
            page = self.list_blobs(container, prefix, page_size=page_size, continuation_token=token)
            yield from page.items
            token = page.continuation_token
            if token is None:
                return

    def read_bytes(self, container: str, name: str) -> bytes:
        """The whole content of a blob."""
        self._validate(container, name)
        with self._translate(container, name):
            return self._read_bytes(container, name)

    def write_bytes(
        self, container: str, name: str, data: bytes, *, content_type: str | None = None, overwrite: bool = True
    ) -> BlobProperties:
        """Store ``data`` atomically; with ``overwrite=False`` an existing blob raises Conflict."""
        self._validate(container, name, writing=True)
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"data must be bytes, not {type(data).__name__}")
        payload = bytes(data)
        with self._translate(container, name):
            return self._write(container, name, payload, len(payload), content_type, overwrite)

    def upload_file(
        self, container: str, name: str, path: Path, *, content_type: str | None = None, overwrite: bool = True
    ) -> BlobProperties:
        """Store a local file atomically; errors opening ``path`` itself are raised as OSError."""
        self._validate(container, name, writing=True)
        with open(path, "rb") as source:
            length = os.fstat(source.fileno()).st_size
            with self._translate(container, name):
                return self._write(container, name, source, length, content_type, overwrite)

    def download_file(self, container: str, name: str, path: Path) -> Path:
        """Copy a blob to ``path`` (parents created); ``path`` appears only once complete."""
        self._validate(container, name)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as target:
                self._copy_chunks(container, name, target)
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        return path

    def copy(self, container: str, source_name: str, target_name: str) -> BlobProperties:
        """Copy a blob to another name in the same container, replacing the target atomically (a reader sees
        the old or the whole new content); BlobNotFound when the source is missing. Server-side on Azure."""
        self._validate(container, source_name)
        self._validate(container, target_name, writing=True)
        if source_name == target_name:
            raise InvalidInput(f"cannot copy blob {source_name!r} onto itself")
        with self._translate(container, source_name):
            return self._copy(container, source_name, target_name)

    def delete(self, container: str, name: str) -> bool:
        """Delete a blob; False when it did not exist."""
        self._validate(container, name)
        with self._translate(container, name):
            return self._delete(container, name)

    def exists(self, container: str, name: str) -> bool:
        """Whether the blob exists (False also when the container does not)."""
        self._validate(container, name)
        with self._translate(container, name):
            return self._exists(container, name)

    def properties(self, container: str, name: str) -> BlobProperties:
        """Size, content type, modification time and etag of a blob; BlobNotFound when missing."""
        self._validate(container, name)
        with self._translate(container, name):
            return self._properties(container, name)

    def gdal_path(self, container: str, name: str) -> GdalPath:
        """Where GDAL finds this blob, and its config options (may hold secrets; tokens last ~1 h: get one per open)."""
        self._validate(container, name)
        with self._translate(container, name):
            return self._gdal_path(container, name)

    def url(self, container: str, name: str) -> str:
        """The blob's address for links (a STAC asset's href): a ``file://`` URI locally, the blob URL in Azure.
        No request is made and nothing says the blob exists."""
        self._validate(container, name)
        return self._url(container, name)

    def set_access_tier(self, container: str, name: str, tier: str) -> bool:
        """Move a blob to an access tier (e.g. Cool); False when the backend has no tiers."""
        self._validate(container, name)
        tier = normalize_tier(tier)
        with self._translate(container, name):
            return self._set_access_tier(container, name, tier)

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op unless the backend holds connections
        """Release network resources (nothing to do for the local backend)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- shared helpers -----------------------------------------------------------------------

    @staticmethod
    def _validate(container: str, name: str, writing: bool = False) -> None:
        """Names we write follow every rule; names we read (they may come from a listing) only the safety ones."""
        validate_container_name(container)
        validate_blob_name(name, writing=writing)

    def _copy_chunks(self, container: str, name: str, target: BinaryIO) -> None:
        """Write a blob's chunks to ``target``; only the storage side is translated."""
        with self._translate(container, name):
            chunks = self._read_chunks(container, name)
        try:
            while True:
                with self._translate(container, name):
                    chunk = next(chunks, None)
                if chunk is None:
                    return
                target.write(chunk)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    # -- backend hooks ------------------------------------------------------------------------

    @abstractmethod
    def _translate(self, container: str, name: str | None = None) -> contextlib.AbstractContextManager[None]:
        """A context that turns backend exceptions into core.errors exceptions."""

    @abstractmethod
    def _ensure_container(self, container: str) -> None: ...

    @abstractmethod
    def _container_exists(self, container: str) -> bool: ...

    @abstractmethod
    def _list_blobs(self, container: str, prefix: str, page_size: int, token: str | None) -> BlobPage: ...

    @abstractmethod
    def _read_bytes(self, container: str, name: str) -> bytes: ...

    @abstractmethod
    def _read_chunks(self, container: str, name: str) -> Iterator[bytes]:
        """The blob's content in chunks (a generator is fine: it is advanced inside ``_translate``)."""

    @abstractmethod
    def _write(
        self,
        container: str,
        name: str,
        source: bytes | BinaryIO,
        length: int,
        content_type: str | None,
        overwrite: bool,
    ) -> BlobProperties: ...

    @abstractmethod
    def _copy(self, container: str, source_name: str, target_name: str) -> BlobProperties: ...

    @abstractmethod
    def _delete(self, container: str, name: str) -> bool: ...

    @abstractmethod
    def _exists(self, container: str, name: str) -> bool: ...

    @abstractmethod
    def _properties(self, container: str, name: str) -> BlobProperties: ...

    @abstractmethod
    def _gdal_path(self, container: str, name: str) -> GdalPath: ...

    @abstractmethod
    def _set_access_tier(self, container: str, name: str, tier: str) -> bool: ...

    @abstractmethod
    def _url(self, container: str, name: str) -> str: ...
