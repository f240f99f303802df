"""The claim check: payloads too large for a database row, kept as blobs (core.ports.PayloadStore)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from infrastructure.storage.base import BlobStore


class BlobPayloads:
    """``storage`` is called on first use, so a process that never spills never opens the blob store."""

    def __init__(self, storage: Callable[[], BlobStore], container: str) -> None:
        self.storage_provider, self.container = storage, container

    @property
    def storage(self) -> BlobStore:
        return self.storage_provider()

    def put(self, key: str, data: bytes) -> dict[str, Any]:
        self.storage.write_bytes(self.container, key, data, content_type="application/json")
        return {"container": self.container, "blob_name": key, "size": len(data)}

    def get(self, reference: dict[str, Any]) -> bytes:
        return self.storage.read_bytes(str(reference["container"]), str(reference["blob_name"]))
