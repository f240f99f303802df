"""``storage://<container>/<path>`` URLs: how a query names files in the project's storage.

The path may hold DuckDB glob patterns (``*``, ``**``, ``?``, ``[...]``). A URL is checked
with the blob-name rules (no ``..``, no absolute paths, no backslashes, no control
characters) and the container with Azure's, then mapped to what DuckDB opens:

* local backend: the file under the storage root (``<root>/<container>/<path>``), the
  container folder being the only folder DuckDB may read (``allowed_directories``);
* azure backend: ``az://<container>/<path>``, read by DuckDB's azure extension with a
  secret made from the store's connection string or an Entra ID access token.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from core.errors import InvalidInput
from infrastructure.storage import BlobStore
from infrastructure.storage.names import show_name, validate_blob_name, validate_container_name

SCHEME = "storage://"
GLOB_CHARACTERS = frozenset("*?[")
# GdalPath.config keys of the Azure backend (what the duckdb secret is made from).
_CONNECTION_STRING = "AZURE_STORAGE_CONNECTION_STRING"
_ACCOUNT = "AZURE_STORAGE_ACCOUNT"
_TOKEN = "AZURE_STORAGE_ACCESS_TOKEN"  # noqa: S105 - the name of a config key
_ENDPOINT = "CPL_AZURE_ENDPOINT"


@dataclass(frozen=True)
class StorageUrl:
    """A checked ``storage://`` URL."""

    container: str
    path: str

    @property
    def url(self) -> str:
        return f"{SCHEME}{self.container}/{self.path}"

    @property
    def is_glob(self) -> bool:
        return any(char in GLOB_CHARACTERS for char in self.path)


def is_storage_url(text: str) -> bool:
    return text.lower().startswith(SCHEME)


def parse_storage_url(text: str) -> StorageUrl:
    """The container and path of ``storage://<container>/<path>``; InvalidInput naming the problem otherwise."""
    if not is_storage_url(text):
        raise InvalidInput(
            f"{show_name(text)} is not a storage URL: files are read only as 'storage://<container>/<path>'"
        )
    rest = text[len(SCHEME) :]
    container, slash, path = rest.partition("/")
    if not slash or not path:
        raise InvalidInput(f"storage URL {show_name(text)} names no file: use 'storage://<container>/<path>'")
    try:
        validate_container_name(container)
        validate_blob_name(path, writing=False)
    except InvalidInput as exc:
        raise InvalidInput(f"storage URL {show_name(text)}: {exc}") from None
    return StorageUrl(container, path)


@dataclass(frozen=True)
class AzureAccess:
    """What DuckDB's azure extension needs for the store's account (secret values: never log)."""

    connection_string: str | None = None
    account_name: str | None = None
    access_token: str | None = None
    endpoint: str | None = None

    def __repr__(self) -> str:
        return f"AzureAccess(account_name={self.account_name!r}, <secrets hidden>)"


@dataclass(frozen=True)
class Mapping:
    """How the URLs of one query are opened: the rewritten location per URL, the folders DuckDB may read."""

    backend: Literal["local", "azure"]
    paths: dict[str, str]
    folders: dict[str, str]  # allowed folder (ending in '/') -> its container
    azure: AzureAccess | None = None

    @property
    def allowed_directories(self) -> list[str]:
        return sorted(self.folders)

    def to_storage_url(self, text: str) -> str:
        """``text`` with the mapped folders written back as storage URLs (for error messages)."""
        for folder in sorted(self.folders, key=len, reverse=True):
            text = text.replace(folder, f"{SCHEME}{self.folders[folder]}/")
        return text


def map_urls(urls: list[StorageUrl], storage: BlobStore) -> Mapping:
    """Map every URL of a query to the location DuckDB opens, for the store's backend."""
    if storage.backend == "local":
        return _map_local(urls, storage)
    if storage.backend == "azure":
        return _map_azure(urls, storage)
    raise InvalidInput(f"duckdb_query cannot read from the {storage.backend!r} storage backend")


def _map_local(urls: list[StorageUrl], storage: BlobStore) -> Mapping:
    paths: dict[str, str] = {}
    folders: dict[str, str] = {}
    for url in urls:
        if not storage.container_exists(url.container):
            raise InvalidInput(f"container {url.container!r} of {url.url!r} does not exist")
        # gdal_path resolves the name and refuses one that leaves the container (a symbolic link, say)
        mapped = storage.gdal_path(url.container, url.path).path
        folder = os.path.realpath(mapped[: len(mapped) - len(url.path)])
        paths[url.url] = os.path.join(folder, url.path)
        folders[folder.rstrip("/") + "/"] = url.container
    return Mapping("local", paths, folders)


def _map_azure(urls: list[StorageUrl], storage: BlobStore) -> Mapping:
    paths: dict[str, str] = {}
    folders: dict[str, str] = {}
    access: AzureAccess | None = None
    for url in urls:
        config = storage.gdal_path(url.container, url.path).config
        if access is None:
            access = AzureAccess(
                connection_string=config.get(_CONNECTION_STRING),
                account_name=config.get(_ACCOUNT),
                access_token=config.get(_TOKEN),
                endpoint=config.get(_ENDPOINT),
            )
        paths[url.url] = f"az://{url.container}/{url.path}"
        folders[f"az://{url.container}/"] = url.container
    return Mapping("azure", paths, folders, access)
