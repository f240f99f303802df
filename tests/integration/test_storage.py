"""One suite for both blob backends: the local filesystem and Azure (a real Azurite)."""

from __future__ import annotations

import dataclasses
import os
import random
import resource
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine

from core.errors import (
    BlobNotFound,
    Conflict,
    ContainerNotFound,
    InvalidBlobName,
    InvalidInput,
    StorageUnavailable,
)
from devstack.azurite import connection_string as azurite_connection_string_for
from devstack.azurite import free_port
from infrastructure.storage import (
    AzureBlobStore,
    BlobProperties,
    BlobStore,
    LocalBlobStore,
)

BACKENDS = ["local", "azure"]
TRANSFORM = Affine(0.25, 0.0, 10.0, 0.0, -0.25, 50.0)  # 0.25° pixels from 10°E 50°N


def _new_container() -> str:
    return f"t-{uuid.uuid4().hex[:20]}"


@pytest.fixture(params=BACKENDS)
def blob_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    """A store of each backend: local on tmp_path, Azure on the session's Azurite."""
    if request.param == "local":
        store: BlobStore = LocalBlobStore(tmp_path / "storage")
    else:
        store = AzureBlobStore.from_connection_string(request.getfixturevalue("azurite_connection_string"))
    with store:
        yield store


@pytest.fixture
def container(blob_store: BlobStore) -> str:
    """A fresh, uniquely named container in ``blob_store``."""
    name = _new_container()
    blob_store.ensure_container(name)
    return name


@pytest.fixture
def unreachable_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    """Local: a root that does not exist yet. Azure: an endpoint nothing listens on, no retries."""
    if request.param == "local":
        store: BlobStore = LocalBlobStore(tmp_path / "never-created")
    else:
        store = AzureBlobStore.from_connection_string(azurite_connection_string_for(free_port()), retry_total=0)
    with store:
        yield store


def _names(items: Any) -> list[str]:
    return [item.name for item in items]


def _write_many(store: BlobStore, container: str, names: list[str]) -> None:
    for name in names:
        store.write_bytes(container, name, name.encode())


def _make_geotiff(path: Path) -> np.ndarray:
    data = np.arange(256, dtype=np.uint8).reshape(16, 16)
    profile = {"driver": "GTiff", "width": 16, "height": 16, "count": 1, "dtype": "uint8", "crs": "EPSG:4326"}
    with rasterio.open(path, "w", transform=TRANSFORM, **profile) as dataset:
        dataset.write(data, 1)
    return data


# -- containers ---------------------------------------------------------------------------------


def test_ensure_container_is_idempotent(blob_store: BlobStore) -> None:
    name = _new_container()
    assert not blob_store.container_exists(name)
    blob_store.ensure_container(name)
    blob_store.write_bytes(name, "keep.txt", b"kept")
    blob_store.ensure_container(name)
    assert blob_store.container_exists(name)
    assert blob_store.read_bytes(name, "keep.txt") == b"kept"


# -- reading and writing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("plain.bin", b"\x00\x01\x02binary\xff"),
        ("empty.txt", b""),
        ("nested/deeper/still/blob.json", b'{"a": 1}'),
        ("unicode/ünï cødé 東京.txt", "héllo".encode()),
        ("big/random.bin", os.urandom(3 * 1024 * 1024 + 17)),
        ("s" * 255 + "/" + "é" * 127 + "x/" + "\U0001f30d" * 63, b"segments of 255, 255 and 252 UTF-8 bytes"),
    ],
)
def test_write_read_round_trip(blob_store: BlobStore, container: str, name: str, data: bytes) -> None:
    written = blob_store.write_bytes(container, name, data)
    assert (written.container, written.name, written.size) == (container, name, len(data))
    assert blob_store.read_bytes(container, name) == data


def test_properties(blob_store: BlobStore, container: str) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    written = blob_store.write_bytes(container, "meta/item.json", b'{"id": "x"}', content_type="application/json")
    props = blob_store.properties(container, "meta/item.json")
    assert props == written
    assert props.size == 11
    assert props.content_type == "application/json"
    assert props.last_modified.tzinfo is not None and props.last_modified.utcoffset() == timedelta(0)
    assert before <= props.last_modified <= datetime.now(UTC) + timedelta(seconds=5)
    assert props.etag.startswith('"') and props.etag.endswith('"') and len(props.etag) > 2
    [listed] = blob_store.list_blobs(container, "meta/").items
    assert listed == props  # listings and HEAD agree, etag quoting included

    time.sleep(0.01)
    rewritten = blob_store.write_bytes(container, "meta/item.json", b'{"id": "xy"}', content_type="application/json")
    assert rewritten.etag != props.etag
    assert blob_store.properties(container, "meta/item.json") == rewritten
    assert rewritten.size == 12


@pytest.mark.parametrize(
    ("name", "expected"),
    [("scene.tif", "image/tiff"), ("item.json", "application/json"), ("no-extension", "application/octet-stream")],
)
def test_content_type_is_guessed_from_the_name(blob_store: BlobStore, container: str, name: str, expected: str) -> None:
    assert blob_store.write_bytes(container, name, b"x").content_type == expected
    assert blob_store.properties(container, name).content_type == expected


def test_exists_and_delete(blob_store: BlobStore, container: str) -> None:
    assert not blob_store.exists(container, "a/b.txt")
    blob_store.write_bytes(container, "a/b.txt", b"1")
    assert blob_store.exists(container, "a/b.txt")
    assert not blob_store.exists(container, "a")  # a "folder" is not a blob
    assert blob_store.delete(container, "a/b.txt") is True
    assert not blob_store.exists(container, "a/b.txt")
    assert blob_store.delete(container, "a/b.txt") is False
    with pytest.raises(BlobNotFound):
        blob_store.read_bytes(container, "a/b.txt")


def test_delete_leaves_no_empty_folders(blob_store: BlobStore, container: str) -> None:
    blob_store.write_bytes(container, "x/y/z/deep.txt", b"1")
    blob_store.write_bytes(container, "x/keep.txt", b"2")
    assert blob_store.delete(container, "x/y/z/deep.txt")
    assert _names(blob_store.iter_blobs(container)) == ["x/keep.txt"]
    blob_store.write_bytes(container, "x/y", b"a blob where the folder was")  # needs x/y/ gone locally
    assert blob_store.read_bytes(container, "x/y") == b"a blob where the folder was"
    if isinstance(blob_store, LocalBlobStore):
        assert sorted(p.name for p in (blob_store.root / container / "x").iterdir()) == ["keep.txt", "y"]


# -- listing ------------------------------------------------------------------------------------

LISTED = ["a/1", "a/2", "a/sub/3", "ab", "b/1", "a-1", "a.txt", "B"]


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("", sorted(LISTED)),
        ("a/", ["a/1", "a/2", "a/sub/3"]),
        ("a", ["a-1", "a.txt", "a/1", "a/2", "a/sub/3", "ab"]),
        ("a/su", ["a/sub/3"]),
        ("a/sub/", ["a/sub/3"]),
        ("b", ["b/1"]),
        ("B", ["B"]),
        ("zzz", []),
    ],
)
def test_list_with_prefix(blob_store: BlobStore, container: str, prefix: str, expected: list[str]) -> None:
    _write_many(blob_store, container, LISTED)
    page = blob_store.list_blobs(container, prefix)
    assert _names(page.items) == expected
    assert page.continuation_token is None
    assert all(item.container == container and item.size == len(item.name) for item in page.items)


def _all_pages(store: BlobStore, container: str, prefix: str, page_size: int) -> list[list[str]]:
    pages: list[list[str]] = []
    token: str | None = None
    while True:
        page = store.list_blobs(container, prefix, page_size=page_size, continuation_token=token)
        pages.append(_names(page.items))
        token = page.continuation_token
        if token is None:
            return pages
        assert isinstance(token, str) and token
        assert len(pages) < 10_000, "paging does not end"


def test_paging(blob_store: BlobStore, container: str) -> None:
    names = [f"tiles/{i:03d}.bin" for i in range(25)]
    _write_many(blob_store, container, [*reversed(names), "other/x"])
    pages = _all_pages(blob_store, container, "tiles/", 10)
    assert [len(page) for page in pages] == [10, 10, 5]
    assert [name for page in pages for name in page] == names  # sorted, no duplicates, no gaps
    assert _names(blob_store.iter_blobs(container, "tiles/", page_size=7)) == names
    assert _names(blob_store.iter_blobs(container)) == ["other/x", *names]


def test_paging_exact_multiple_and_page_size_one(blob_store: BlobStore, container: str) -> None:
    names = [f"n{i:02d}" for i in range(6)]
    _write_many(blob_store, container, names)
    flat = [name for page in _all_pages(blob_store, container, "", 3) for name in page]
    assert flat == names
    assert [name for page in _all_pages(blob_store, container, "", 1) for name in page] == names
    assert blob_store.list_blobs(_new_container_in(blob_store), "").items == ()


def _new_container_in(store: BlobStore) -> str:
    name = _new_container()
    store.ensure_container(name)
    return name


# Names whose order is easy to get wrong. '/' sorts after ' ', '!', '#', '-' and '.' but before '0', ';'
# and letters, so the blobs of folder "a/" come between "a.b" and "a0", not where the folder name "a"
# would sort. Azure orders by UTF-16 code units: characters above U+FFFF come before U+E000-U+FFFF.
# No name is also a folder (the local backend cannot hold both "a" and "a/b").
ORDER_NAMES = [
    *["a b", "a!", "a#", "a-b", "a.b", "a/b-c", "a/b.c", "a/b/c", "a/b/d/e", "a/b0", "a/bc", "a/c"],
    *["a0", "a;b", "aB", "ab", "a~", "B", "Z/z", "_", "b", "b-", "b.x", "b0/x", "0-", "0/1", "00", "~"],
    *["é-x", "éa/x", "ü/ö", "東京.tif", "东京/a", "\ue000", "\uff21/b", "\U0001f30dx", "\U0001f30d/y", "\U0001f600"],
]


def _azure_order(names: list[str]) -> list[str]:
    return sorted(names, key=lambda name: name.encode("utf-16-be"))


def test_listing_order_and_paging_agree_with_azure(blob_store: BlobStore, container: str) -> None:
    assert not [name for name in ORDER_NAMES if any(other.startswith(name + "/") for other in ORDER_NAMES)]
    expected = _azure_order(ORDER_NAMES)
    below_e000 = [name for name in expected if all(ord(char) < 0xE000 for char in name)]
    assert below_e000 == sorted(below_e000)  # Python's sorted() order, as long as no name goes beyond U+DFFF
    assert expected.index("\U0001f30dx") < expected.index("\ue000") < expected.index("\uff21/b")
    shuffled = list(ORDER_NAMES)
    random.Random(7).shuffle(shuffled)
    _write_many(blob_store, container, shuffled)
    for page_size in (1, 2, 3, 7, len(expected), 5000):
        pages = _all_pages(blob_store, container, "", page_size)
        assert [name for page in pages for name in page] == expected, page_size  # each name once, in order
        assert all(len(page) == page_size for page in pages[:-1]) and len(pages[-1]) <= page_size
    for prefix in ("a", "a/", "a/b", "a/b/", "b", "0", "é", "\U0001f30d", "\uff21", "nothing"):
        flat = [name for page in _all_pages(blob_store, container, prefix, 2) for name in page]
        assert flat == [name for name in expected if name.startswith(prefix)], prefix


def test_listing_shows_blobs_being_written_never(blob_store: BlobStore, container: str) -> None:
    """A reader that lists and reads while a writer overwrites sees only whole versions."""
    versions = [bytes([65 + i]) * (1024 * 1024) for i in range(2)]
    blob_store.write_bytes(container, "hot/blob.bin", versions[0])
    stop = threading.Event()
    seen: list[bytes] = []
    failures: list[BaseException] = []

    def reader() -> None:
        try:
            while not stop.is_set():
                assert _names(blob_store.iter_blobs(container)) == ["hot/blob.bin"]
                seen.append(blob_store.read_bytes(container, "hot/blob.bin"))
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(12):
            blob_store.write_bytes(container, "hot/blob.bin", versions[i % 2])
    finally:
        stop.set()
        thread.join(30)
    assert not failures, failures
    assert seen and all(data in versions for data in seen)


# -- errors -------------------------------------------------------------------------------------


def test_overwrite_false_raises_conflict(blob_store: BlobStore, container: str, tmp_path: Path) -> None:
    blob_store.write_bytes(container, "once.txt", b"first", overwrite=False)
    with pytest.raises(Conflict, match=r"once\.txt"):
        blob_store.write_bytes(container, "once.txt", b"second", overwrite=False)
    source = tmp_path / "source.txt"
    source.write_bytes(b"third")
    with pytest.raises(Conflict):
        blob_store.upload_file(container, "once.txt", source, overwrite=False)
    assert blob_store.read_bytes(container, "once.txt") == b"first"
    assert _names(blob_store.iter_blobs(container)) == ["once.txt"]
    blob_store.write_bytes(container, "once.txt", b"forced")
    assert blob_store.read_bytes(container, "once.txt") == b"forced"


def test_missing_blob_raises_blob_not_found(blob_store: BlobStore, container: str, tmp_path: Path) -> None:
    calls: list[Callable[[], object]] = [
        lambda: blob_store.read_bytes(container, "missing/blob.tif"),
        lambda: blob_store.properties(container, "missing/blob.tif"),
        lambda: blob_store.download_file(container, "missing/blob.tif", tmp_path / "out.tif"),
        lambda: blob_store.set_access_tier(container, "missing/blob.tif", "Cool"),
    ]
    for call in calls:
        with pytest.raises(BlobNotFound) as info:
            call()
        assert container in info.value.message and "missing/blob.tif" in info.value.message
        assert not info.value.retryable
    assert blob_store.exists(container, "missing/blob.tif") is False
    assert blob_store.delete(container, "missing/blob.tif") is False
    assert not (tmp_path / "out.tif").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name != "storage"] == []


def test_missing_container_raises_container_not_found(blob_store: BlobStore, tmp_path: Path) -> None:
    missing = _new_container()
    calls: list[Callable[[], object]] = [
        lambda: blob_store.read_bytes(missing, "a.txt"),
        lambda: blob_store.properties(missing, "a.txt"),
        lambda: blob_store.list_blobs(missing),
        lambda: list(blob_store.iter_blobs(missing)),
        lambda: blob_store.write_bytes(missing, "a.txt", b"x"),
        lambda: blob_store.delete(missing, "a.txt"),
        lambda: blob_store.download_file(missing, "a.txt", tmp_path / "out.txt"),
    ]
    for call in calls:
        with pytest.raises(ContainerNotFound) as info:
            call()
        assert missing in info.value.message
    assert blob_store.exists(missing, "a.txt") is False
    assert blob_store.container_exists(missing) is False


def test_long_names_are_shortened_in_error_messages(blob_store: BlobStore, container: str) -> None:
    name = "/".join(["n" * 200] * 5)  # 1004 characters
    with pytest.raises(BlobNotFound) as missing:
        blob_store.read_bytes(container, name)
    blob_store.write_bytes(container, name, b"x")
    with pytest.raises(Conflict) as exists:
        blob_store.write_bytes(container, name, b"y", overwrite=False)
    for info in (missing, exists):
        assert len(info.value.message) < 300, info.value.message
        assert "n" * 100 not in info.value.message


BAD_BLOB = "../escape"
BAD_CONTAINER = "Bad_Container"


def _calls_with(store: BlobStore, container: str, name: str, path: Path) -> list[Callable[[], object]]:
    return [
        lambda: store.read_bytes(container, name),
        lambda: store.write_bytes(container, name, b"x"),
        lambda: store.upload_file(container, name, path),
        lambda: store.download_file(container, name, path.with_suffix(".out")),
        lambda: store.delete(container, name),
        lambda: store.exists(container, name),
        lambda: store.properties(container, name),
        lambda: store.gdal_path(container, name),
        lambda: store.set_access_tier(container, name, "Cool"),
    ]


@pytest.mark.parametrize("unreachable_store", BACKENDS, indirect=True)
def test_bad_names_are_rejected_before_any_io(unreachable_store: BlobStore, tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(b"payload")
    for call in _calls_with(unreachable_store, "good-container", BAD_BLOB, source):
        with pytest.raises(InvalidBlobName, match=r"'\.\.' path segment"):
            call()
    container_calls = _calls_with(unreachable_store, BAD_CONTAINER, "fine.txt", source)
    container_calls += [
        lambda: unreachable_store.ensure_container(BAD_CONTAINER),
        lambda: unreachable_store.container_exists(BAD_CONTAINER),
        lambda: unreachable_store.list_blobs(BAD_CONTAINER),
        lambda: unreachable_store.iter_blobs(BAD_CONTAINER),
    ]
    for call in container_calls:
        with pytest.raises(InvalidInput, match="invalid container name 'Bad_Container'"):
            call()
    with pytest.raises(InvalidBlobName, match="invalid blob prefix"):
        unreachable_store.iter_blobs("good-container", "/abs")
    with pytest.raises(InvalidInput, match="page size"):
        unreachable_store.list_blobs("good-container", page_size=0)
    assert not (tmp_path / "never-created").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["source.bin"]


@pytest.mark.parametrize("unreachable_store", BACKENDS, indirect=True)
def test_unreachable_storage(unreachable_store: BlobStore) -> None:
    if isinstance(unreachable_store, LocalBlobStore):
        with pytest.raises(ContainerNotFound):  # a missing root is simply an empty store
            unreachable_store.read_bytes("good-container", "a.txt")
        return
    with pytest.raises(StorageUnavailable, match="unavailable") as info:
        unreachable_store.read_bytes("good-container", "a.txt")
    assert info.value.retryable


def test_bad_names_on_a_working_store(blob_store: BlobStore, container: str) -> None:
    bad_names = ["", "a//b", "/abs", "C:/x", "a\\b", "a/./b", "dir/", "x\x00", "y" * 1025, "z" * 256, "ok/" + "é" * 128]
    bad_names += ["c1\x85", "bidi\u202etxt.exe", "zero\u200bwidth", "line\u2028", "para\u2029", "\ufeffbom"]
    for bad in bad_names:
        with pytest.raises(InvalidBlobName):
            blob_store.write_bytes(container, bad, b"x")
    with pytest.raises(InvalidInput, match="access tier"):
        blob_store.set_access_tier(container, "a.txt", "Lukewarm")
    assert list(blob_store.iter_blobs(container)) == []


# -- files --------------------------------------------------------------------------------------


def test_upload_and_download_file(blob_store: BlobStore, container: str, tmp_path: Path) -> None:
    source = tmp_path / "in" / "data.bin"
    source.parent.mkdir()
    payload = os.urandom(5 * 1024 * 1024 + 3)
    source.write_bytes(payload)
    uploaded = blob_store.upload_file(container, "files/data.bin", source)
    assert uploaded.size == len(payload)
    assert blob_store.properties(container, "files/data.bin").size == len(payload)
    target = tmp_path / "out" / "nested" / "copy.bin"
    assert blob_store.download_file(container, "files/data.bin", target) == target
    assert target.read_bytes() == payload
    assert [p.name for p in target.parent.iterdir()] == ["copy.bin"]  # no temporary leftovers
    blob_store.write_bytes(container, "files/data.bin", b"smaller")
    blob_store.download_file(container, "files/data.bin", target)  # replaces the old copy
    assert target.read_bytes() == b"smaller"


def test_failed_upload_leaves_no_partial_blob(blob_store: BlobStore, container: str, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        blob_store.upload_file(container, "up/missing.bin", tmp_path / "does-not-exist.bin")
    with pytest.raises(IsADirectoryError):
        blob_store.upload_file(container, "up/dir.bin", tmp_path)
    blob_store.write_bytes(container, "up/existing.bin", b"original")
    with pytest.raises(FileNotFoundError):
        blob_store.upload_file(container, "up/existing.bin", tmp_path / "does-not-exist.bin")
    assert _names(blob_store.iter_blobs(container)) == ["up/existing.bin"]
    assert blob_store.read_bytes(container, "up/existing.bin") == b"original"
    if isinstance(blob_store, LocalBlobStore):
        assert [p.name for p in (blob_store.root / container / "up").iterdir()] == ["existing.bin"]


@pytest.fixture
def file_size_limit() -> Iterator[Callable[[int], None]]:
    """Make writes beyond N bytes fail with EFBIG (a real mid-write I/O error) until the test ends."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    def limit(size: int) -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))

    try:
        yield limit
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def test_failed_download_leaves_no_partial_file(
    blob_store: BlobStore, container: str, tmp_path: Path, file_size_limit: Callable[[int], None]
) -> None:
    payload = os.urandom(3 * 1024 * 1024)
    blob_store.write_bytes(container, "dl/big.bin", payload)
    target = tmp_path / "dl" / "big.bin"
    target.parent.mkdir()
    file_size_limit(1024 * 1024)
    with pytest.raises(OSError, match="too large"):
        blob_store.download_file(container, "dl/big.bin", target)
    assert list(target.parent.iterdir()) == []


def test_failed_local_write_leaves_no_partial_blob(tmp_path: Path, file_size_limit: Callable[[int], None]) -> None:
    store = LocalBlobStore(tmp_path / "storage")
    store.ensure_container("box")
    store.write_bytes("box", "w/blob.bin", b"old content")
    file_size_limit(1024 * 1024)
    for overwrite in (True, False):
        with pytest.raises(StorageUnavailable, match="too large"):
            store.write_bytes("box", "w/blob.bin", os.urandom(3 * 1024 * 1024), overwrite=overwrite)
        with pytest.raises(StorageUnavailable):
            store.write_bytes("box", "w/new.bin", os.urandom(3 * 1024 * 1024), overwrite=overwrite)
    assert store.read_bytes("box", "w/blob.bin") == b"old content"
    assert [p.name for p in (store.root / "box" / "w").iterdir()] == ["blob.bin"]


# -- GDAL ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["rasters/tiny.tif", "rasters/with space/ünï.tif"])
def test_gdal_opens_the_blob(blob_store: BlobStore, container: str, tmp_path: Path, name: str) -> None:
    data = _make_geotiff(tmp_path / "tiny.tif")
    blob_store.upload_file(container, name, tmp_path / "tiny.tif")
    assert blob_store.properties(container, name).content_type == "image/tiff"
    gdal = blob_store.gdal_path(container, name)
    if isinstance(blob_store, LocalBlobStore):
        assert gdal.config == {} and Path(gdal.path).is_absolute() and Path(gdal.path).is_file()
    else:
        assert gdal.path == f"/vsiaz/{container}/{name}"
        assert "BlobEndpoint=http://127.0.0.1:" in gdal.config["AZURE_STORAGE_CONNECTION_STRING"]
    assert "AccountKey" not in repr(gdal)
    with rasterio.Env(**gdal.config), rasterio.open(gdal.path) as dataset:
        assert (dataset.width, dataset.height, dataset.count) == (16, 16, 1)
        assert dataset.crs.to_epsg() == 4326
        assert dataset.transform == TRANSFORM
        assert np.array_equal(dataset.read(1), data)


def test_gdal_sees_an_overwritten_blob(blob_store: BlobStore, container: str, tmp_path: Path) -> None:
    """GDAL must not serve a replaced blob from its cache (size and pixels both change here)."""
    for size, value in [(16, 1), (40, 2), (8, 3)]:
        source = tmp_path / f"v{value}.tif"
        profile = {"driver": "GTiff", "width": size, "height": size, "count": 1, "dtype": "uint8"}
        with rasterio.open(source, "w", crs="EPSG:4326", transform=TRANSFORM, **profile) as dataset:
            dataset.write(np.full((size, size), value, dtype=np.uint8), 1)
        blob_store.upload_file(container, "rasters/changing.tif", source)
        gdal = blob_store.gdal_path(container, "rasters/changing.tif")
        with rasterio.Env(**gdal.config), rasterio.open(gdal.path) as dataset:
            assert dataset.width == size
            assert int(dataset.read(1).max()) == value


def test_set_access_tier(blob_store: BlobStore, container: str) -> None:
    blob_store.write_bytes(container, "archive/old.tif", b"x")
    moved = blob_store.set_access_tier(container, "archive/old.tif", "cool")
    assert moved is (blob_store.backend == "azure")
    assert blob_store.read_bytes(container, "archive/old.tif") == b"x"


def test_round_trip_properties_type(blob_store: BlobStore, container: str) -> None:
    props = blob_store.write_bytes(container, "t.txt", b"x")
    assert isinstance(props, BlobProperties)
    with pytest.raises(dataclasses.FrozenInstanceError):
        props.size = 5  # type: ignore[misc]
