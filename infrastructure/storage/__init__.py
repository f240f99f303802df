"""Blob storage: one interface (``BlobStore``) over the local filesystem and Azure Blob Storage."""

from __future__ import annotations

from typing import Any

from core.errors import InvalidSetting
from core.settings import StorageSettings
from infrastructure.storage.azure import AzureBlobStore
from infrastructure.storage.base import BlobPage, BlobProperties, BlobStore, GdalPath, guess_content_type
from infrastructure.storage.local import LocalBlobStore
from infrastructure.storage.names import validate_blob_name, validate_blob_prefix, validate_container_name

__all__ = [
    "AzureBlobStore",
    "BlobPage",
    "BlobProperties",
    "BlobStore",
    "GdalPath",
    "LocalBlobStore",
    "create_blob_store",
    "guess_content_type",
    "validate_blob_name",
    "validate_blob_prefix",
    "validate_container_name",
]


def create_blob_store(settings: StorageSettings, credential_client_id: str | None = None) -> BlobStore:
    """The backend the settings choose; ``credential_client_id`` selects a user-assigned managed identity.

    Azure requests are retried ``azure_storage_max_retries`` times and each connection attempt and
    socket read waits at most ``azure_storage_timeout_seconds``, so an unreachable account fails in
    bounded time instead of hanging.
    """
    if settings.storage_backend == "local":
        return LocalBlobStore(settings.storage_local_root)
    client_options: dict[str, Any] = {
        "retry_total": settings.azure_storage_max_retries,
        "connection_timeout": settings.azure_storage_timeout_seconds,
        "read_timeout": settings.azure_storage_timeout_seconds,
    }
    secret = settings.azure_storage_connection_string
    connection_string = secret.get_secret_value().strip() if secret is not None else ""
    if connection_string:
        return AzureBlobStore.from_connection_string(connection_string, **client_options)
    if settings.azure_storage_account_name or settings.azure_storage_account_url:
        return AzureBlobStore.from_account(
            settings.azure_storage_account_name,
            settings.azure_storage_account_url,
            client_id=credential_client_id,
            **client_options,
        )
    raise InvalidSetting(
        "STORAGE_BACKEND=azure needs AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_ACCOUNT_NAME "
        "(or AZURE_STORAGE_ACCOUNT_URL)"
    )
