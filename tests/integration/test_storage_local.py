"""Behaviour only the local filesystem backend has (the shared suite is test_storage.py)."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core.errors import BlobNotFound, Conflict, Forbidden, InvalidBlobName, StorageUnavailable
from infrastructure.storage import LocalBlobStore, validate_blob_name
from tests.integration.test_storage import _all_pages, _names, _write_many


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    """A local store with an empty container ``box``."""
    local = LocalBlobStore(tmp_path / "storage")
    local.ensure_container("box")
    return local


# -- listing ------------------------------------------------------------------------------------


def test_local_lists_ten_thousand_blobs_by_page(store: LocalBlobStore) -> None:
    names = sorted(f"tiles/{i % 40:02d}/{i:05d}.bin" for i in range(10_050))
    _write_many(store, "box", names)
    pages = _all_pages(store, "box", "", 1000)
    assert [len(page) for page in pages] == [1000] * 10 + [50]
    assert [name for page in pages for name in page] == names
    assert _names(store.iter_blobs("box", "tiles/07/", page_size=50)) == [n for n in names if n.startswith("tiles/07/")]


class _FileSystemCalls:
    """Records the folders a listing reads and the files it stats (paths relative to the container)."""

    def __init__(self, container_dir: Path) -> None:
        self.container_dir = container_dir
        self.scanned: list[str] = []
        self.stated: list[str] = []

    def relative(self, path: str | os.PathLike[str] | int) -> str:
        return str(path) if isinstance(path, int) else os.path.relpath(path, self.container_dir)

    def clear(self) -> None:
        self.scanned.clear()
        self.stated.clear()


@pytest.fixture
def fs_calls(store: LocalBlobStore, monkeypatch: pytest.MonkeyPatch) -> Iterator[_FileSystemCalls]:
    calls = _FileSystemCalls(store.root / "box")
    real_scandir, real_stat, real_lstat = os.scandir, os.stat, os.lstat

    def scandir(path: str) -> Iterator[os.DirEntry[str]]:
        calls.scanned.append(calls.relative(path))
        return real_scandir(path)

    def recording(real: Callable[..., os.stat_result]) -> Callable[..., os.stat_result]:
        def stat(path: str, *args: object, **kwargs: object) -> os.stat_result:
            calls.stated.append(calls.relative(path))
            return real(path, *args, **kwargs)

        return stat

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(os, "stat", recording(real_stat))
    monkeypatch.setattr(os, "lstat", recording(real_lstat))
    yield calls


def _page(store: LocalBlobStore, prefix: str, size: int, token: str | None = None) -> tuple[list[str], str | None]:
    page = store.list_blobs("box", prefix, page_size=size, continuation_token=token)
    return _names(page.items), page.continuation_token


@pytest.mark.parametrize(
    ("prefix", "size", "token", "names", "scanned"),
    [
        ("", 3, None, ["d0/f0", "d0/f1", "d0/f2"], [".", "d0"]),
        ("", 3, "d4/f2", ["d4/f3", "d4/f4", "d5/f0"], [".", "d4", "d5"]),
        ("", 3, "d4/f4", ["d5/f0", "d5/f1", "d5/f2"], [".", "d4", "d5"]),
        ("", 5, "d3", ["d3/f0", "d3/f1", "d3/f2", "d3/f3", "d3/f4"], [".", "d3", "d4"]),
        ("d7/", 2, None, ["d7/f0", "d7/f1"], ["d7"]),
        ("d7/f", 2, "d7/f2", ["d7/f3", "d7/f4"], ["d7"]),
        ("d8", 6, None, ["d8/f0", "d8/f1", "d8/f2", "d8/f3", "d8/f4", "d8/x/y"], [".", "d8", "d8/x"]),
        ("d9/f4", 1, None, ["d9/f4"], ["d9"]),
        ("nope/", 1, None, [], []),
    ],
)
def test_local_listing_reads_only_what_the_page_needs(
    store: LocalBlobStore,
    fs_calls: _FileSystemCalls,
    prefix: str,
    size: int,
    token: str | None,
    names: list[str],
    scanned: list[str],
) -> None:
    _write_many(store, "box", [f"d{d}/f{f}" for d in range(10) for f in range(5)] + ["d8/x/y"])
    fs_calls.clear()
    listed, _ = _page(store, prefix, size, token)
    assert listed == names
    assert fs_calls.scanned == scanned  # only the folders on the way to the page and the one after it
    stated = list(fs_calls.stated)  # (checking below stats too)
    blobs_stated = [path for path in stated if (store.root / "box" / path).is_file()]
    assert sorted(blobs_stated) == names  # the page's blobs, once each; never the one looked ahead at


def test_local_last_page_has_no_token_and_a_vanished_blob_is_skipped(store: LocalBlobStore) -> None:
    _write_many(store, "box", ["a/1", "a/2", "b/1", "b/2"])
    assert _page(store, "", 2, "a/2") == (["b/1", "b/2"], None)
    assert _page(store, "", 2) == (["a/1", "a/2"], "a/2")
    (store.root / "box" / "b" / "1").unlink()
    assert _page(store, "", 4) == (["a/1", "a/2", "b/2"], None)


def test_local_listing_never_follows_links(store: LocalBlobStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "sub" / "secret.txt").write_bytes(b"secret")
    store.write_bytes("box", "real/a.txt", b"1")
    (store.root / "box" / "link").symlink_to(outside, target_is_directory=True)
    (store.root / "box" / "real" / "inner").symlink_to(outside, target_is_directory=True)
    for prefix in ["", "link", "link/", "link/sub/", "real/inner/sub/se", "real/"]:
        assert _names(store.iter_blobs("box", prefix)) == (["real/a.txt"] if prefix in ("", "real/") else [])


# -- names the filesystem refuses ---------------------------------------------------------------

# Valid everywhere (1023 characters, no segment over 255 bytes) but 4047 bytes: beyond Linux's PATH_MAX.
TOO_LONG_FOR_THE_FILESYSTEM = "/".join(["\U0001f30d" * 63] * 16)


def test_local_name_the_filesystem_refuses_is_an_invalid_name(store: LocalBlobStore, tmp_path: Path) -> None:
    name = validate_blob_name(TOO_LONG_FOR_THE_FILESYSTEM)
    assert len(os.fsencode(store.root / "box" / name)) >= 4096
    source = tmp_path / "source.bin"
    source.write_bytes(b"payload")
    calls: list[Callable[[], object]] = [
        lambda: store.write_bytes("box", name, b"x"),
        lambda: store.write_bytes("box", name, b"x", overwrite=False),
        lambda: store.upload_file("box", name, source),
        lambda: store.read_bytes("box", name),
        lambda: store.download_file("box", name, tmp_path / "out.bin"),
        lambda: store.properties("box", name),
        lambda: store.exists("box", name),
        lambda: store.delete("box", name),
    ]
    for call in calls:
        with pytest.raises(InvalidBlobName, match="local filesystem cannot store this name") as info:
            call()
        assert not info.value.retryable  # not StorageUnavailable: a retry cannot help
        assert len(info.value.message) < 300
        assert info.value.message.count("\U0001f30d") <= 80  # the name is shortened
    assert list((store.root / "box").iterdir()) == []  # no folders left behind by the failed writes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["source.bin", "storage"]


@pytest.mark.parametrize("code", [errno.ENAMETOOLONG, errno.EINVAL])
def test_local_filesystem_name_errors_are_not_retryable(store: LocalBlobStore, code: int) -> None:
    long_name = "n/" * 400 + "leaf"
    with pytest.raises(InvalidBlobName) as info, store._translate("box", long_name):
        raise OSError(code, os.strerror(code), str(store.root / "box" / long_name))
    assert info.value.message.startswith("invalid blob name 'n/n/")
    assert os.strerror(code) in info.value.message
    assert len(info.value.message) < 300


def test_local_other_os_errors_stay_retryable_with_a_short_message(store: LocalBlobStore) -> None:
    long_name = "m/" * 400 + "leaf"
    with pytest.raises(StorageUnavailable) as info, store._translate("box", long_name):
        raise OSError(errno.EIO, os.strerror(errno.EIO), str(store.root / "box" / long_name))
    assert info.value.retryable
    assert os.strerror(errno.EIO) in info.value.message
    assert len(info.value.message) < 300 and str(store.root) not in info.value.message
    with pytest.raises(StorageUnavailable), store._translate("box"):  # not about a blob name
        raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG))


# -- the filesystem as storage ------------------------------------------------------------------


def test_local_never_leaves_the_root(store: LocalBlobStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"secret")
    (store.root / "box" / "link").symlink_to(outside, target_is_directory=True)
    (store.root / "box" / "file-link.txt").symlink_to(outside / "secret.txt")
    (store.root / "escape").symlink_to(outside, target_is_directory=True)
    calls: list[Callable[[], object]] = [
        lambda: store.read_bytes("box", "link/secret.txt"),
        lambda: store.read_bytes("box", "file-link.txt"),
        lambda: store.write_bytes("box", "link/new.txt", b"x"),
        lambda: store.read_bytes("escape", "secret.txt"),
        lambda: store.ensure_container("escape"),
    ]
    for call in calls:
        with pytest.raises(Forbidden, match="outside"):
            call()
    assert _names(store.iter_blobs("box")) == []
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


def test_local_blob_and_folder_of_the_same_name_conflict(store: LocalBlobStore) -> None:
    store.write_bytes("box", "a", b"file")
    with pytest.raises(Conflict, match="folder"):
        store.write_bytes("box", "a/b", b"nested")
    store.write_bytes("box", "c/d", b"nested")
    with pytest.raises(Conflict, match="folder"):
        store.write_bytes("box", "c", b"file")
    with pytest.raises(BlobNotFound):
        store.properties("box", "c")
    assert _names(store.iter_blobs("box")) == ["a", "c/d"]


def test_local_temporary_files_are_invisible_and_reserved(store: LocalBlobStore) -> None:
    store.write_bytes("box", "x/real.txt", b"1")
    (store.root / "box" / "x" / ".~geoetl-abc.tmp").write_bytes(b"half-written")
    assert _names(store.iter_blobs("box")) == ["x/real.txt"]
    with pytest.raises(InvalidBlobName, match="reserved"):
        store.write_bytes("box", "x/.~geoetl-abc.tmp", b"1")
