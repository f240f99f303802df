"""BlobStore.copy on both backends: the local filesystem and Azure (a real Azurite)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.errors import BlobNotFound, ContainerNotFound, InvalidBlobName, InvalidInput
from infrastructure.storage import AzureBlobStore, BlobStore, LocalBlobStore


@pytest.fixture(params=["local", "azure"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    if request.param == "local":
        blob_store: BlobStore = LocalBlobStore(tmp_path / "storage")
    else:
        blob_store = AzureBlobStore.from_connection_string(request.getfixturevalue("azurite_connection_string"))
    with blob_store:
        yield blob_store


@pytest.fixture
def container(store: BlobStore) -> str:
    name = f"t-{uuid.uuid4().hex[:20]}"
    store.ensure_container(name)
    return name


def test_copy_makes_an_independent_blob_with_the_same_content(store: BlobStore, container: str) -> None:
    payload = os.urandom(300_000)
    store.write_bytes(container, "runs/r1/a.tif", payload)
    copied = store.copy(container, "runs/r1/a.tif", "final/a.tif")
    assert copied.name == "final/a.tif" and copied.size == len(payload)
    assert store.read_bytes(container, "final/a.tif") == payload
    assert store.properties(container, "final/a.tif").size == len(payload)
    store.delete(container, "runs/r1/a.tif")  # the copy outlives its source
    assert store.read_bytes(container, "final/a.tif") == payload
    assert [blob.name for blob in store.iter_blobs(container)] == ["final/a.tif"]


def test_copy_replaces_an_existing_target(store: BlobStore, container: str) -> None:
    store.write_bytes(container, "final/a.tif", b"old content, longer than the new one")
    store.write_bytes(container, "staged/a.tif", b"new")
    store.copy(container, "staged/a.tif", "final/a.tif")
    assert store.read_bytes(container, "final/a.tif") == b"new"
    assert store.read_bytes(container, "staged/a.tif") == b"new"


def test_copy_of_a_missing_source_raises_blob_not_found_and_leaves_the_target(store: BlobStore, container: str) -> None:
    store.write_bytes(container, "final/a.tif", b"kept")
    with pytest.raises(BlobNotFound):
        store.copy(container, "staged/missing.tif", "final/a.tif")
    assert store.read_bytes(container, "final/a.tif") == b"kept"
    with pytest.raises(BlobNotFound):
        store.copy(container, "staged/missing.tif", "final/b.tif")
    assert not store.exists(container, "final/b.tif")


def test_copy_refuses_bad_names_itself_and_missing_containers(store: BlobStore, container: str) -> None:
    store.write_bytes(container, "a.tif", b"x")
    with pytest.raises(InvalidBlobName):
        store.copy(container, "a.tif", "../outside.tif")
    with pytest.raises(InvalidInput, match="onto itself"):
        store.copy(container, "a.tif", "a.tif")
    with pytest.raises(ContainerNotFound):
        store.copy(f"t-{uuid.uuid4().hex[:20]}", "a.tif", "b.tif")
    assert [blob.name for blob in store.iter_blobs(container)] == ["a.tif"]
