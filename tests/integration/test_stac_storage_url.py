"""BlobStore.url: the href of a stored output (STAC assets), on the local backend and on Azurite."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from core.errors import InvalidBlobName
from infrastructure.storage.azure import AzureBlobStore
from infrastructure.storage.local import LocalBlobStore


def test_local_url_is_a_file_uri_of_the_blob(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "storage")
    store.ensure_container("silver")
    store.write_bytes("silver", "cogs/a b/x.tif", b"data")
    url = store.url("silver", "cogs/a b/x.tif")
    assert url.startswith("file:///") and "%20" in url
    assert Path(unquote(urlsplit(url).path)).read_bytes() == b"data"
    assert store.url("silver", "not/yet/there.tif").endswith("/silver/not/yet/there.tif")  # no I/O, no check
    with pytest.raises(InvalidBlobName):
        store.url("silver", "../escape.tif")


def test_azure_url_is_the_blob_url(azurite_connection_string: str) -> None:
    with AzureBlobStore.from_connection_string(azurite_connection_string) as store:
        store.ensure_container("silver")
        store.write_bytes("silver", "stac-url/x y.tif", b"azure data")
        url = store.url("silver", "stac-url/x y.tif")
        assert url.startswith("http://127.0.0.1:") and url.endswith("/silver/stac-url/x%20y.tif")
        with pytest.raises(InvalidBlobName):
            store.url("silver", "/absolute.tif")
