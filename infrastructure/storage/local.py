"""The local filesystem backend: blob ``<container>/<name>`` is the file ``<root>/<container>/<name>``.

Writes go to a temporary file in the blob's folder and are renamed into place, so
a reader sees the old or the new content, never a part. There is no stored
content type: it is always guessed from the name's extension (the ``content_type``
argument is accepted for interface parity and ignored). Being a filesystem, a
name cannot be both a blob and a folder (``a`` and ``a/b``): that raises Conflict.
Symbolic links are not listed and are never followed outside the container.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO, ClassVar

from core.errors import BlobNotFound, Conflict, ContainerNotFound, Forbidden, InvalidBlobName, StorageUnavailable
from infrastructure.storage.base import CHUNK_SIZE, BlobPage, BlobProperties, BlobStore, GdalPath, guess_content_type

TEMP_PREFIX = ".~geoetl-"
TEMP_SUFFIX = ".tmp"
_LINK_UNSUPPORTED = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS}


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
    return BlobNotFound(f"blob {name!r} not found in container {container!r}", container=container, blob=name)


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
            where = container if name is None else f"{container}/{name}"
            raise StorageUnavailable(
                f"local storage failed for {where!r}: {exc.strerror or exc}", container=container, blob=name
            ) from exc

    # -- paths --------------------------------------------------------------------------------

    def _path(self, container: str, name: str | None = None) -> Path:
        """The file of a blob (or folder of a container), refusing anything that resolves outside it."""
        base = self.root / container
        if not base.resolve().is_relative_to(self.root):
            raise Forbidden(f"container {container!r} resolves outside the storage root", container=container)
        if name is None:
            return base
        if _is_temp(name.rsplit("/", 1)[-1]):
            raise InvalidBlobName(f"invalid blob name {name!r}: the name is reserved for local temporary files")
        path = base / name
        if not path.resolve().is_relative_to(base.resolve()):
            raise Forbidden(f"blob {name!r} resolves outside container {container!r}", container=container, blob=name)
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
        names = sorted(self._scan(base, prefix))
        start = bisect.bisect_right(names, token) if token else 0
        chosen = names[start : start + page_size]
        items: list[BlobProperties] = []
        for name in chosen:
            try:
                items.append(self._props(container, name, os.stat(base / name)))
            except FileNotFoundError:  # deleted since the scan
                continue
        more = start + page_size < len(names)
        return BlobPage(tuple(items), chosen[-1] if more and chosen else None)

    @staticmethod
    def _scan(base: Path, prefix: str) -> Iterator[str]:
        """Names of the regular files under ``base`` starting with ``prefix``; nothing is stat'ed."""
        stack = [(str(base), "")]
        while stack:
            directory, relative = stack.pop()
            try:
                entries = os.scandir(directory)
            except (FileNotFoundError, NotADirectoryError):
                continue
            with entries:
                for entry in entries:
                    key = relative + entry.name
                    if entry.is_dir(follow_symlinks=False):
                        folder = key + "/"
                        if folder.startswith(prefix) or prefix.startswith(folder):
                            stack.append((entry.path, folder))
                    elif key.startswith(prefix) and entry.is_file(follow_symlinks=False) and not _is_temp(entry.name):
                        yield key

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
                    f"blob {name!r} cannot be stored in container {container!r}: a blob on its path is used as a "
                    "folder name (the local backend cannot hold both 'a' and 'a/b')",
                    container=container,
                    blob=name,
                ) from exc
            try:
                return tempfile.mkstemp(dir=target.parent, prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX)
            except FileNotFoundError:  # a concurrent delete pruned the empty folder: make it again
                continue
        raise StorageUnavailable(f"could not create a temporary file for blob {name!r} in {container!r}")

    @staticmethod
    def _commit(temp: str, target: Path, overwrite: bool, container: str, name: str) -> None:
        """Move the finished temporary file into place (atomically refusing to replace unless ``overwrite``)."""
        exists = Conflict(f"blob {name!r} already exists in container {container!r}", container=container, blob=name)
        if overwrite:
            try:
                os.replace(temp, target)
            except IsADirectoryError as exc:
                raise Conflict(
                    f"blob {name!r} cannot be stored in container {container!r}: it is a folder of other blobs",
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
