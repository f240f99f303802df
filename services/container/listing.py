"""Paging through a container's listing, one page in memory at a time, each page kept as a Parquet file.

A listing is sequential by nature (each continuation token comes from the page before), so one task
walks it, holding one page at a time and writing each page to ``<work container>/<work prefix>pages/``;
later tasks fan out over those page files. Page files hold only what the listing returns (name,
size, content type, last modified, etag), so results passed between stages stay small references.

The work area rule (the one place it is decided, :func:`list_to_pages`): the container jobs keep their
intermediate files under ``inventory-work/<job_id>/`` in ``INVENTORY_WORK_CONTAINER`` (default
``silver``). When the container being listed *is* that work container, every blob under
``inventory-work/`` is left out of the listing (they are the jobs' own files, which would otherwise
change while being listed), whoever wrote it; in any other container ``inventory-work/`` is an
ordinary prefix and listed like everything else.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from core.errors import ContainerNotFound, InvalidInput, LeaseExpired
from infrastructure.storage.base import BlobProperties, BlobStore

LISTING_SCHEMA = pa.schema(
    [
        pa.field("name", pa.string(), nullable=False),
        pa.field("size_bytes", pa.int64(), nullable=False),
        pa.field("content_type", pa.string()),
        pa.field("last_modified", pa.timestamp("us", tz="UTC")),
        pa.field("etag", pa.string()),
    ]
)
WORK_ROOT = "inventory-work"  # left out of listings of the work container: see the module docstring


@dataclass(frozen=True)
class Work:
    """Where a job keeps its intermediate files."""

    container: str
    prefix: str  # ends with "/"

    @classmethod
    def for_job(cls, container: str, job_id: str) -> Work:
        return cls(container, f"{WORK_ROOT}/{job_id}/")

    def page_blob(self, index: int, kind: str = "pages") -> str:
        return f"{self.prefix}{kind}/{index:06d}.parquet"

    def delete(self, storage: BlobStore) -> int:
        """Delete every file under the job's work prefix (idempotent); how many there were."""
        names = [blob.name for blob in storage.iter_blobs(self.container, self.prefix)]
        return sum(1 for name in names if storage.delete(self.container, name))


def extension_of(name: str) -> str:
    """The lower-case extension without the dot ('' for none); ``.tar.gz``-style pairs kept whole."""
    leaf = name.rsplit("/", 1)[-1].lower()
    if "." not in leaf.lstrip("."):
        return ""
    parts = leaf.lstrip(".").split(".")
    if len(parts) >= 3 and parts[-2] in {"tar", "shp", "gpkg", "geojson"} and parts[-1] in {"gz", "bz2", "xz", "zip"}:
        return f"{parts[-2]}.{parts[-1]}"
    return parts[-1]


def page_table(items: list[BlobProperties] | tuple[BlobProperties, ...]) -> pa.Table:
    return pa.table(
        {
            "name": [b.name for b in items],
            "size_bytes": [b.size for b in items],
            "content_type": [b.content_type for b in items],
            "last_modified": [b.last_modified.astimezone(UTC) for b in items],
            "etag": [b.etag for b in items],
        },
        schema=LISTING_SCHEMA,
    )


def table_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def read_table(storage: BlobStore, container: str, blob: str) -> pa.Table:
    return pq.read_table(io.BytesIO(storage.read_bytes(container, blob)))


@dataclass(frozen=True)
class PageRef:
    index: int
    blob: str
    blobs: int
    bytes: int

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "blob": self.blob, "blobs": self.blobs, "bytes": self.bytes}


@dataclass(frozen=True)
class Listing:
    pages: list[PageRef]
    blobs: int
    bytes: int
    truncated: bool


def check_container(storage: BlobStore, container: str) -> None:
    if not storage.container_exists(container):
        raise ContainerNotFound(f"container {container!r} does not exist", container=container)


def list_to_pages(
    storage: BlobStore,
    container: str,
    prefix: str,
    work: Work,
    *,
    page_size: int,
    file_limit: int | None = None,
    keep_going: Callable[[], bool] = lambda: True,
) -> Listing:
    """Walk the listing page by page, writing each page (at most ``file_limit`` blobs in all) to the work area."""
    check_container(storage, container)
    own_work = container == work.container
    pages: list[PageRef] = []
    total = size = 0
    token: str | None = None
    truncated = False
    while True:
        page = storage.list_blobs(container, prefix, page_size=page_size, continuation_token=token)
        items = [b for b in page.items if not (own_work and b.name.startswith(f"{WORK_ROOT}/"))]
        if file_limit is not None and total + len(items) > file_limit:
            items, truncated = items[: file_limit - total], True
        if items:
            index = len(pages)
            blob = work.page_blob(index)
            storage.write_bytes(work.container, blob, table_bytes(page_table(items)))
            page_bytes = sum(b.size for b in items)
            pages.append(PageRef(index, blob, len(items), page_bytes))
            total += len(items)
            size += page_bytes
        token = page.continuation_token
        if truncated or token is None:
            break
        if file_limit is not None and total >= file_limit:
            truncated = True  # more pages follow (possibly empty ones): the limit stopped the listing
            break
        if not keep_going():
            raise LeaseExpired("the listing stopped: this task no longer owns its lease")
    return Listing(pages, total, size, truncated)


def group_pages(pages: list[dict[str, Any]], per_task: int) -> Iterator[list[dict[str, Any]]]:
    for i in range(0, len(pages), per_task):
        yield pages[i : i + per_task]


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


# -- one page for the HTTP endpoint --------------------------------------------------------------------------


@dataclass(frozen=True)
class BlobPageView:
    blobs: list[dict[str, Any]]
    next_cursor: str | None


def encode_cursor(token: str) -> str:
    return base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        token = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput(
            "invalid cursor: pass next_cursor from the previous page unchanged", field="cursor"
        ) from None
    if not token:
        raise InvalidInput("invalid cursor: pass next_cursor from the previous page unchanged", field="cursor")
    return token


def blob_page(storage: BlobStore, container: str, prefix: str, limit: int, cursor: str | None) -> BlobPageView:
    """One page of a container's blobs for people and scripts; ``next_cursor`` continues it (None: the end)."""
    token = None if cursor is None else decode_cursor(cursor)
    page = storage.list_blobs(container, prefix, page_size=limit, continuation_token=token)
    return BlobPageView(
        blobs=[
            {
                "name": b.name,
                "size_bytes": b.size,
                "content_type": b.content_type,
                "last_modified": iso(b.last_modified),
                "etag": b.etag,
            }
            for b in page.items
        ],
        next_cursor=None if page.continuation_token is None else encode_cursor(page.continuation_token),
    )
