"""The local filesystem backend: blob ``<container>/<name>`` is the file ``<root>/<container>/<name>``.

Writes go to a temporary file in the blob's folder and are renamed into place, so
a reader sees the old or the new content, never a part. There is no stored
content type: it is always guessed from the name's extension (the ``content_type``
argument is accepted for interface parity and ignored). Being a filesystem, a
name cannot be both a blob and a folder (``a`` and ``a/b``): that raises Conflict.
Symbolic links are not listed and are never followed outside the container.
Listings come in Azure's order (see ``_order``) and read only the folders that can
hold the requested page; only the blobs of the page are stat'ed.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import heapq
import itertools
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO, ClassVar

from core.errors import (
    BlobNotFound,
    Conflict,
    ContainerNotFound,
    Forbidden,
    GeoetlError,
    InvalidBlobName,
    StorageUnavailable,
)
from infrastructure.storage.base import CHUNK_SIZE, BlobPage, BlobProperties, BlobStore, GdalPath, guess_content_type
from infrastructure.storage.names import show_name

TEMP_PREFIX = ".~geoetl-"
TEMP_SUFFIX = ".tmp"
_LINK_UNSUPPORTED = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS}
# The filesystem refuses the name itself (too long a path, a character it cannot store): never worth a retry.
_NAME_REFUSED = {errno.ENAMETOOLONG, errno.EINVAL}
# One listing entry: (sort key, blob name or folder name ending in '/', filesystem path, is a folder).
_Entry = tuple[bytes, str, str, bool]


def _is_temp(filename: str) -> bool:
    return filename.startswith(TEMP_PREFIX) and filename.endswith(TEMP_SUFFIX)


def _etag(st: os.stat_result) -> str:
    """A quoted digest of size, modification time and inode: it changes whenever the content is replaced."""
    digest = hashlib.blake2b(f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}".encode(), digest_size=16)
    return f'"{digest.hexdigest()}"'


def _mtime(st: os.stat_result) -> datetime:
    seconds, nanos = divmod(st.st_mtime_ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, tz=UTC) + timedelta(microseconds=nanos // 1000)


def _blob_not_found(container: str, name: str) -> BlobNotFound:
    return BlobNotFound(f"blob {show_name(name)} not found in container {container!r}", container=container, blob=name)


def _translate_os_error(exc: OSError, container: str, name: str | None) -> GeoetlError:
    """InvalidBlobName when the filesystem refuses the blob's name, else StorageUnavailable."""
    reason = exc.strerror or type(exc).__name__  # never str(exc): it holds the whole path
    if name is not None and exc.errno in _NAME_REFUSED:
        problem = f"the local filesystem cannot store this name ({reason})"
        return InvalidBlobName(
            f"invalid blob name {show_name(name)}: {problem}", container=container, blob=name, problem=problem
        )
    where = container if name is None else f"{container}/{name}"
    return StorageUnavailable(f"local storage failed for {show_name(where)}: {reason}", container=container, blob=name)


def _order(name: str) -> bytes:
    """The sort key of listings: UTF-16 code units, as Azure (and Azurite) order blob names.

    This is code point order except that characters above U+FFFF sort before U+E000-U+FFFF.
    """
    return name.encode("utf-16-be", "surrogatepass")


def _prefix_folder(base: Path, prefix: str) -> tuple[str, str] | None:
    """The deepest folder the prefix names in full (``a/b/`` of ``a/b/c``): (path, name); None if absent.

    Each step is lstat'ed, so a symbolic link or a blob on the way means no match rather than a detour.
    """
    folder = prefix[: prefix.rfind("/") + 1]
    path = base
    for part in folder.split("/")[:-1]:
        path = path / part
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            if exc.errno in _NAME_REFUSED:  # a segment no blob name can have
                return None
            raise
        if not stat.S_ISDIR(st.st_mode):
            return None
    return str(path), folder


def _entries(directory: str, folder: str, prefix: str, after: bytes | None) -> list[_Entry]:
    """The entries of one folder that may be listed, as a heap (heapify is linear: no full sort per page).

    A file must start with ``prefix`` and sort after ``after``. A sub-folder ``d`` is named ``d/``
    here, which is how its blobs sort against its siblings (``a-x`` < ``a/b`` < ``a0``); it is kept
    when it can hold names that start with ``prefix`` and sort after ``after``.
    """
    try:
        scan = os.scandir(directory)
    except (FileNotFoundError, NotADirectoryError):  # removed since its parent was read
        return []
    kept: list[_Entry] = []
    with scan:
        for entry in scan:
            if entry.is_dir(follow_symlinks=False):
                name = folder + entry.name + "/"
                key = _order(name)
                wanted = name.startswith(prefix) or prefix.startswith(name)
                if wanted and (after is None or key > after or after.startswith(key)):
                    kept.append((key, name, entry.path, True))
            elif entry.is_file(follow_symlinks=False) and not _is_temp(entry.name):
                name = folder + entry.name
                key = _order(name)
                if name.startswith(prefix) and (after is None or key > after):
                    kept.append((key, name, entry.path, False))
    heapq.heapify(kept)
    return kept


class LocalBlobStore(BlobStore):
    """Blobs as files under ``root``; for development, tests and single-machine runs."""

    backend: ClassVar[str] = "local"

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    def __repr__(self) -> str:
        return f"LocalBlobStore(root={str(self.root)!r})"

    @contextlib.contextmanager
    def _translate(self, container: str, name: str | None = None) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            raise _translate_os_error(exc, container, name) from exc

    # -- paths --------------------------------------------------------------------------------

    def _path(self, container: str, name: str | None = None) -> Path:
        """The file of a blob (or folder of a container), refusing anything that resolves outside it."""
        base = self.root / container
        if not base.resolve().is_relative_to(self.root):
            raise Forbidden(f"container {container!r} resolves outside the storage root", container=container)
        if name is None:
            return base
        if _is_temp(name.rsplit("/", 1)[-1]):
            problem = "the name is reserved for local temporary files"
            raise InvalidBlobName(f"invalid blob name {show_name(name)}: {problem}", blob=name, problem=problem)
        path = base / name
        if not path.resolve().is_relative_to(base.resolve()):
            raise Forbidden(
                f"blob {show_name(name)} resolves outside container {container!r}", container=container, blob=name
            )
        return path

    def _blob_path(self, container: str, name: str) -> Path:
        """Like ``_path`` but raises ContainerNotFound when the container is missing."""
        if not self._path(container).is_dir():
            raise ContainerNotFound(f"container {container!r} does not exist", container=container)
        return self._path(container, name)

    def _props(self, container: str, name: str, st: os.stat_result) -> BlobProperties:
        return BlobProperties(container, name, st.st_size, guess_content_type(name), _mtime(st), _etag(st))

    # -- containers and listing ---------------------------------------------------------------

    def _ensure_container(self, container: str) -> None:
        path = self._path(container)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except FileExistsError as exc:
            raise Conflict(f"{path} exists and is not a folder", container=container) from exc

    def _container_exists(self, container: str) -> bool:
        return self._path(container).is_dir()

    def _list_blobs(self, container: str, prefix: str, page_size: int, token: str | None) -> BlobPage:
        base = self._path(container)
        if not base.is_dir():
            raise ContainerNotFound(f"container {container!r} does not exist", container=container)
        found = list(itertools.islice(self._scan(base, prefix, token), page_size + 1))  # one more: is there more?
        page = found[:page_size]
        items = [props for name, path in page if (props := self._listed(container, name, path)) is not None]
        return BlobPage(tuple(items), page[-1][0] if len(found) > page_size else None)

    def _listed(self, container: str, name: str, path: str) -> BlobProperties | None:
        """The properties of a listed blob; None if it is gone (or no longer a file) since the scan."""
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return self._props(container, name, st) if stat.S_ISREG(st.st_mode) else None

    @staticmethod
    def _scan(base: Path, prefix: str, after: str | None) -> Iterator[tuple[str, str]]:
        """(name, path) of the regular files under ``base`` named ``prefix...`` and sorting after ``after``.

        Lazily, in listing order: a folder is read only when the walk reaches it, and folders that
        cannot hold such names are skipped. Nothing is stat'ed.
        """
        start = _prefix_folder(base, prefix)
        if start is None:
            return
        bound = None if after is None else _order(after)
        stack = [_entries(start[0], start[1], prefix, bound)]  # a heap per folder being walked
        while stack:
            if not stack[-1]:
                stack.pop()
                continue
            _, name, path, is_folder = heapq.heappop(stack[-1])
            if is_folder:  # all its names sort before the rest of its parent's entries: walk them first
                stack.append(_entries(path, name, prefix, bound))
            else:
                yield name, path

    # -- reading ------------------------------------------------------------------------------

    def _read_bytes(self, container: str, name: str) -> bytes:
        path = self._blob_path(container, name)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise _blob_not_found(container, name) from exc

    def _read_chunks(self, container: str, name: str) -> Iterator[bytes]:
        path = self._blob_path(container, name)
        try:
            source = open(path, "rb")  # noqa: SIM115 - closed by the with below
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise _blob_not_found(container, name) from exc
        with source:
            while chunk := source.read(CHUNK_SIZE):
                yield chunk

    def _properties(self, container: str, name: str) -> BlobProperties:
        path = self._blob_path(container, name)
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise _blob_not_found(container, name) from exc
        if not stat.S_ISREG(st.st_mode):
            raise _blob_not_found(container, name)
        return self._props(container, name, st)

    def _exists(self, container: str, name: str) -> bool:
        return self._path(container).is_dir() and self._path(container, name).is_file()

    def _gdal_path(self, container: str, name: str) -> GdalPath:
        return GdalPath(str(self._path(container, name)), {})

    def _url(self, container: str, name: str) -> str:
        return self._path(container, name).absolute().as_uri()

    def _set_access_tier(self, container: str, name: str, tier: str) -> bool:
        self._properties(container, name)  # BlobNotFound as on Azure
        return False

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
        target = self._blob_path(container, name)
        fd, temp = self._make_temp(container, name, target)
        try:
            with os.fdopen(fd, "wb") as out:
                if isinstance(source, bytes):
                    out.write(source)
                else:
                    shutil.copyfileobj(source, out, CHUNK_SIZE)
            os.chmod(temp, 0o644)
            self._commit(temp, target, overwrite, container, name)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            self._prune(target.parent, self._path(container))  # folders made for this blob only
            raise
        return self._props(container, name, os.stat(target))

    @staticmethod
    def _make_temp(container: str, name: str, target: Path) -> tuple[int, str]:
        """A new temporary file beside ``target``, creating the folders on the way."""
        for _ in range(5):
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError) as exc:
                raise Conflict(
                    f"blob {show_name(name)} cannot be stored in container {container!r}: a blob on its path is used "
                    "as a folder name (the local backend cannot hold both 'a' and 'a/b')",
                    container=container,
                    blob=name,
                ) from exc
            try:
                return tempfile.mkstemp(dir=target.parent, prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX)
            except FileNotFoundError:  # a concurrent delete pruned the empty folder: make it again
                continue
        raise StorageUnavailable(f"could not create a temporary file for blob {show_name(name)} in {container!r}")

    @staticmethod
    def _commit(temp: str, target: Path, overwrite: bool, container: str, name: str) -> None:
        """Move the finished temporary file into place (atomically refusing to replace unless ``overwrite``)."""
        exists = Conflict(
            f"blob {show_name(name)} already exists in container {container!r}", container=container, blob=name
        )
        if overwrite:
            try:
                os.replace(temp, target)
            except IsADirectoryError as exc:
                raise Conflict(
                    f"blob {show_name(name)} cannot be stored in container {container!r}: "
                    "it is a folder of other blobs",
                    container=container,
                    blob=name,
                ) from exc
            return
        try:
            os.link(temp, target)  # fails if target exists, unlike rename
        except FileExistsError as exc:
            raise exists from exc
        except OSError as exc:
            if exc.errno not in _LINK_UNSUPPORTED:
                raise
            if target.exists():  # no hard links here: check, then rename (not atomic)
                raise exists from exc
            os.replace(temp, target)
            return
        os.unlink(temp)

    def _copy(self, container: str, source_name: str, target_name: str) -> BlobProperties:
        source = self._blob_path(container, source_name)
        try:
            with open(source, "rb") as stream:
                if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
                    raise _blob_not_found(container, source_name)
                length = os.fstat(stream.fileno()).st_size
                return self._write(container, target_name, stream, length, None, True)  # temp file + rename
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise _blob_not_found(container, source_name) from None

    def _delete(self, container: str, name: str) -> bool:
        path = self._blob_path(container, name)
        try:
            if stat.S_ISDIR(os.lstat(path).st_mode):
                return False
            path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            return False
        self._prune(path.parent, self._path(container))
        return True

    @staticmethod
    def _prune(folder: Path, container_dir: Path) -> None:
        """Remove now-empty folders from ``folder`` up to (not including) the container folder."""
        while folder != container_dir and folder.is_relative_to(container_dir):
            try:
                folder.rmdir()
            except OSError:  # not empty (or gone): stop
                return
            folder = folder.parent
