"""The Azure Blob Storage backend (real accounts or Azurite) over azure-storage-blob.

SDK exceptions are translated here, once: not found → BlobNotFound/ContainerNotFound,
already exists → Conflict, network, throttling, server and authentication failures →
StorageUnavailable (retryable). Messages never quote secrets: account keys, SAS
signatures and bearer tokens are redacted, and an SDK exception whose text holds one
is not chained (it would be printed in logged tracebacks).
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, BinaryIO, ClassVar
from urllib.parse import urlparse

from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobClient, BlobServiceClient, ContentSettings
from azure.storage.blob import BlobProperties as SdkBlobProperties

from core.errors import (
    BlobNotFound,
    Conflict,
    ContainerNotFound,
    GeoetlError,
    InvalidInput,
    InvalidSetting,
    StorageUnavailable,
)
from infrastructure.storage.base import BlobPage, BlobProperties, BlobStore, GdalPath, guess_content_type
from infrastructure.storage.names import show_name

STORAGE_SCOPE = "https://storage.azure.com/.default"
PUBLIC_SUFFIX = "blob.core.windows.net"
# What "UseDevelopmentStorage=true" means, spelled out so that GDAL understands it too.
DEVELOPMENT_STORAGE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
)
# Secrets that SDK, HTTP library and service messages may quote: account keys and SAS tokens (connection
# strings), SAS signatures (URLs), bearer tokens (headers) and request signatures (Azure's 403 details).
_SECRETS = (
    (re.compile(r"(?i)\b(sig|AccountKey|SharedAccessSignature|SharedAccessKey)=[^&;\s'\"<>]*"), r"<\1 redacted>"),
    (re.compile(r"(?i)\b(Bearer)\s+[^\s'\",;]+"), r"\1 <redacted>"),
    (re.compile(r"(?i)(signature found in the HTTP request )'[^']*'"), r"\1'<redacted>'"),
)


def redact(text: str) -> str:
    """``text`` with account keys, SAS signatures and tokens replaced by ``<redacted>``."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def _quotes_secret(exc: BaseException) -> bool:
    """Whether the text of ``exc``, or of an exception it chains, holds something ``redact`` removes."""
    current: BaseException | None = exc
    for _ in range(10):  # chains are short; never loop on a cycle
        if current is None:
            return False
        text = str(current)
        if redact(text) != text:
            return True
        current = current.__cause__ or current.__context__
    return False


def _utc(moment: datetime | None) -> datetime:
    if moment is None:
        return datetime.now(UTC)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _quoted(etag: str | None) -> str:
    """Etags as the HTTP header spells them; listings return them without quotes."""
    etag = etag or ""
    return etag if etag.startswith('"') else f'"{etag}"'


def _where(container: str, name: str | None) -> str:
    return f"container {container!r}" if name is None else f"blob {show_name(name)} in container {container!r}"


def translate_error(exc: AzureError, container: str, name: str | None = None) -> GeoetlError:
    """The core.errors exception for an SDK exception raised while working on a container or blob."""
    raw_code = getattr(exc, "error_code", None) or ""
    code = str(getattr(raw_code, "value", raw_code))  # a plain string or a StorageErrorCode
    status = getattr(exc, "status_code", None)
    details: dict[str, Any] = {"container": container, "blob": name, "azure_error_code": code or None}
    reason = getattr(exc, "reason", None) or type(exc).__name__
    if isinstance(exc, ResourceNotFoundError) or status == 404:
        if name is None or code == "ContainerNotFound":
            return ContainerNotFound(f"container {container!r} does not exist", **details)
        return BlobNotFound(f"blob {show_name(name)} not found in container {container!r}", **details)
    if isinstance(exc, ResourceExistsError):
        what = "it already exists" if code.endswith("AlreadyExists") else f"conflict ({code or reason})"
        return Conflict(f"cannot write {_where(container, name)}: {what}", **details)
    if isinstance(exc, ResourceModifiedError) or status in (409, 412):
        return Conflict(f"{_where(container, name)} was changed concurrently ({code or reason})", **details)
    if isinstance(exc, ClientAuthenticationError) or status in (401, 403):
        return StorageUnavailable(
            f"Azure Storage refused the credentials for {_where(container, name)} ({code or reason}): check the "
            "connection string, or the managed identity and its 'Storage Blob Data Contributor' role",
            **details,
        )
    if status == 400:
        return InvalidInput(f"Azure Storage rejected the request for {_where(container, name)} ({code})", **details)
    if isinstance(exc, HttpResponseError) and status is not None and status < 500 and status not in (408, 429):
        return GeoetlError(f"Azure Storage answered {status} for {_where(container, name)} ({code})", **details)
    message = redact(str(getattr(exc, "message", None) or exc)).strip().splitlines()
    reason = f"{reason}: {message[0][:300]}" if message and message[0] != reason else reason
    return StorageUnavailable(f"Azure Storage is unavailable for {_where(container, name)} ({reason})", **details)


def _account_from_url(account_url: str) -> str:
    host = urlparse(account_url).hostname or ""
    path = urlparse(account_url).path.strip("/")
    # Emulator-style URLs carry the account in the path: http://127.0.0.1:10000/devstoreaccount1
    return path.split("/")[0] if path else host.split(".")[0]


class AzureBlobStore(BlobStore):
    """Blob storage in an Azure Storage account (or Azurite)."""

    backend: ClassVar[str] = "azure"

    def __init__(
        self,
        service: BlobServiceClient,
        *,
        connection_string: str | None = None,
        credential: TokenCredential | None = None,
    ) -> None:
        self._service = service
        self._connection_string = connection_string
        self._credential = credential
        self.account_name: str = service.account_name or _account_from_url(service.url)

    def __repr__(self) -> str:
        url = self._service.url.split("?", 1)[0]  # without a SAS token
        return f"AzureBlobStore(account={self.account_name!r}, url={url!r})"

    @classmethod
    def from_connection_string(cls, connection_string: str, **client_options: Any) -> AzureBlobStore:
        """A store for a connection string (``UseDevelopmentStorage=true`` means Azurite on port 10000)."""
        if connection_string.strip().rstrip(";").lower() == "usedevelopmentstorage=true":
            connection_string = DEVELOPMENT_STORAGE
        try:
            service = BlobServiceClient.from_connection_string(connection_string, **client_options)
        except ValueError as exc:
            raise InvalidSetting(f"invalid Azure Storage connection string: {redact(str(exc))}") from None
        return cls(service, connection_string=connection_string)

    @classmethod
    def from_account(
        cls,
        account_name: str | None = None,
        account_url: str | None = None,
        *,
        client_id: str | None = None,
        credential: TokenCredential | None = None,
        **client_options: Any,
    ) -> AzureBlobStore:
        """A store using Entra ID: ManagedIdentityCredential(client_id) when given, else DefaultAzureCredential."""
        if not account_url and not account_name:
            raise InvalidSetting("an Azure Storage account name or account URL is required")
        url = account_url or f"https://{account_name}.{PUBLIC_SUFFIX}"
        if credential is None:  # one shared credential per client id and process
            from infrastructure.identity import get_credential

            credential = get_credential(client_id or None)
        service = BlobServiceClient(url, credential=credential, **client_options)
        store = cls(service, credential=credential)
        store.account_name = account_name or _account_from_url(url)
        return store

    def close(self) -> None:
        """Close the HTTP session of the SDK client."""
        self._service.close()

    @contextlib.contextmanager
    def _translate(self, container: str, name: str | None = None) -> Iterator[None]:
        try:
            yield
        except AzureError as exc:
            error = translate_error(exc, container, name)
            if _quotes_secret(exc):
                raise error from None
            raise error from exc

    def _blob(self, container: str, name: str) -> BlobClient:
        return self._service.get_blob_client(container, name)

    @staticmethod
    def _props(container: str, item: SdkBlobProperties) -> BlobProperties:
        content_type = item.content_settings.content_type if item.content_settings else None
        return BlobProperties(
            container, item.name, int(item.size or 0), content_type, _utc(item.last_modified), _quoted(item.etag)
        )

    # -- containers and listing ---------------------------------------------------------------

    def _ensure_container(self, container: str) -> None:
        with contextlib.suppress(ResourceExistsError):
            self._service.create_container(container)

    def _container_exists(self, container: str) -> bool:
        return bool(self._service.get_container_client(container).exists())

    def _list_blobs(self, container: str, prefix: str, page_size: int, token: str | None) -> BlobPage:
        client = self._service.get_container_client(container)
        listing = client.list_blobs(name_starts_with=prefix or None, results_per_page=page_size)
        pages = listing.by_page(continuation_token=token)
        items = tuple(self._props(container, item) for item in next(pages))
        return BlobPage(items, getattr(pages, "continuation_token", None) or None)

    # -- reading ------------------------------------------------------------------------------

    def _read_bytes(self, container: str, name: str) -> bytes:
        return self._blob(container, name).download_blob().readall()

    def _read_chunks(self, container: str, name: str) -> Iterator[bytes]:
        return self._blob(container, name).download_blob().chunks()

    def _properties(self, container: str, name: str) -> BlobProperties:
        try:
            item = self._blob(container, name).get_blob_properties()
        except ResourceNotFoundError as exc:
            if not getattr(exc, "error_code", None) and not self._container_exists(
                container
            ):  # HEAD answers carry no body
                raise ContainerNotFound(f"container {container!r} does not exist", container=container) from exc
            raise
        return self._props(container, item)

    def _exists(self, container: str, name: str) -> bool:
        return bool(self._blob(container, name).exists())

    def _gdal_path(self, container: str, name: str) -> GdalPath:
        path = f"/vsiaz/{container}/{name}"
        # GDAL keeps what it read from /vsiaz/ after the dataset is closed and would serve a stale
        # size and stale bytes once the blob is overwritten; this keeps its cache per open handle.
        config = {"CPL_VSIL_CURL_NON_CACHED": f"/vsiaz/{container}/"}
        if self._connection_string is not None:
            config["AZURE_STORAGE_CONNECTION_STRING"] = self._connection_string
            return GdalPath(path, config)
        assert self._credential is not None
        config["AZURE_STORAGE_ACCOUNT"] = self.account_name
        config["AZURE_STORAGE_ACCESS_TOKEN"] = self._credential.get_token(STORAGE_SCOPE).token
        endpoint = self._service.url.rstrip("/")
        if endpoint != f"https://{self.account_name}.{PUBLIC_SUFFIX}":
            config["CPL_AZURE_ENDPOINT"] = endpoint  # a private endpoint, another cloud or an emulator
        return GdalPath(path, config)

    def _url(self, container: str, name: str) -> str:
        return str(self._blob(container, name).url)

    def _set_access_tier(self, container: str, name: str, tier: str) -> bool:
        self._blob(container, name).set_standard_blob_tier(tier)
        return True

    # -- writing ------------------------------------------------------------------------------

    def _write(
        self,
        container: str,
        name: str,
        source: bytes | BinaryIO,
        length: int,
        content_type: str | None,
        overwrite: bool,
    ) -> BlobProperties:
        settings = ContentSettings(content_type=content_type or guess_content_type(name))
        result = self._blob(container, name).upload_blob(
            source, length=length, overwrite=overwrite, content_settings=settings
        )
        last_modified = result.get("last_modified")
        return BlobProperties(
            container, name, length, settings.content_type, _utc(last_modified), _quoted(result.get("etag"))
        )

    def _copy(self, container: str, source_name: str, target_name: str) -> BlobProperties:
        """A server-side Copy Blob in the same account (authorised by this client's own credentials), waited for:
        the target shows the old content until the copy commits."""
        source = self._blob(container, source_name)
        target = self._blob(container, target_name)
        source.get_blob_properties()  # BlobNotFound for a missing source, not a failed copy
        copy_id = target.start_copy_from_url(source.url)["copy_id"]
        delay = 0.05
        while True:
            item = target.get_blob_properties()
            copy = item.copy
            if copy is None or copy.id != copy_id or copy.status == "success":
                return self._props(container, item)
            if copy.status != "pending":
                raise StorageUnavailable(
                    f"copying blob {show_name(source_name)} to {show_name(target_name)} in {container!r} ended "
                    f"{copy.status}: {copy.status_description or 'no reason given'}",
                    container=container,
                    blob=target_name,
                )
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _delete(self, container: str, name: str) -> bool:
        try:
            self._blob(container, name).delete_blob(delete_snapshots="include")
        except ResourceNotFoundError as exc:
            if getattr(exc, "error_code", None) == "ContainerNotFound":
                raise
            return False
        return True
