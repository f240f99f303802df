"""Container summaries: counts and bytes by extension and by prefix level, largest files, newest and oldest.

Each task summarizes some listing pages: its counts per extension and per prefix (one bucket per
distinct key, which can be one per blob, e.g. names like ``x.000001``) go to a Parquet file in the
job's work area, and its result holds only totals, its top lists and that file's name. The merge
adds the bucket files up (Arrow group-by, a few files at a time), so every count is exact, and
returns only the top ``MAX_KEYS_SHOWN`` keys of each dimension by bytes, with an ``other`` bucket
for the rest and the ``distinct`` number of keys. The top lists (largest, newest, oldest) are exact
too: every overall top-N blob is in the top N of its own page.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from infrastructure.storage.base import BlobStore
from services.container.listing import extension_of, iso, read_table, table_bytes

NO_EXTENSION = "(none)"
ROOT = "(root)"
MAX_KEYS_SHOWN = 100  # extensions, and prefixes a level, in a job result
EXTENSION = "extension"  # the bucket dimension of extensions; prefix levels are "1", "2", ...
BUCKET_SCHEMA = pa.schema(
    [
        pa.field("dimension", pa.string(), nullable=False),
        pa.field("key", pa.string(), nullable=False),
        pa.field("count", pa.int64(), nullable=False),
        pa.field("bytes", pa.int64(), nullable=False),
    ]
)
_MERGE_BATCH = 32  # bucket files added up at once


def prefix_at(name: str, level: int) -> str:
    """The first ``level`` folders of a blob name ('a/b/' for 'a/b/c/d.txt' at level 2); ROOT when it has none."""
    folders = name.split("/")[:-1]
    return "/".join(folders[:level]) + "/" if folders else ROOT


def summarize_table(table: pa.Table, depth: int, top: int) -> dict[str, Any]:
    """The partial summary of one listing page (columns name, size_bytes, last_modified)."""
    names = table.column("name").to_pylist()
    sizes = table.column("size_bytes").to_pylist()
    times = [iso(t) for t in table.column("last_modified").to_pylist()]
    by_ext: dict[str, list[int]] = {}
    by_prefix: dict[str, dict[str, list[int]]] = {str(level): {} for level in range(1, depth + 1)}
    for name, size in zip(names, sizes, strict=True):
        entry = by_ext.setdefault(extension_of(name) or NO_EXTENSION, [0, 0])
        entry[0] += 1
        entry[1] += size
        for level in range(1, depth + 1):
            bucket = by_prefix[str(level)].setdefault(prefix_at(name, level), [0, 0])
            bucket[0] += 1
            bucket[1] += size
    rows = list(zip(names, sizes, times, strict=True))
    dated = [r for r in rows if r[2] is not None]
    return {
        "blobs": len(names),
        "bytes": sum(sizes),
        "by_extension": by_ext,
        "by_prefix": by_prefix,
        "largest": [[n, s] for n, s, _ in heapq.nlargest(top, rows, key=lambda r: (r[1], r[0]))],
        "newest": [[n, t] for n, _, t in heapq.nlargest(top, dated, key=lambda r: (r[2], r[0]))],
        "oldest": [[n, t] for n, _, t in heapq.nsmallest(top, dated, key=lambda r: (r[2], r[0]))],
    }


def combine(partials: Iterable[dict[str, Any]], depth: int, top: int) -> dict[str, Any]:
    """One partial summary from several (read one at a time)."""
    blobs = size = 0
    by_ext: dict[str, list[int]] = {}
    by_prefix: dict[str, dict[str, list[int]]] = {str(level): {} for level in range(1, depth + 1)}
    largest: list[tuple[int, str]] = []
    newest: list[tuple[str, str]] = []
    oldest: list[tuple[str, str]] = []
    for part in partials:
        blobs += part["blobs"]
        size += part["bytes"]
        _add(by_ext, part["by_extension"])
        for level, buckets in part["by_prefix"].items():
            _add(by_prefix.setdefault(level, {}), buckets)
        largest = heapq.nlargest(top, largest + [(s, n) for n, s in part["largest"]])
        newest = heapq.nlargest(top, newest + [(t, n) for n, t in part["newest"]])
        oldest = heapq.nsmallest(top, oldest + [(t, n) for n, t in part["oldest"]])
    return {
        "blobs": blobs,
        "bytes": size,
        "by_extension": by_ext,
        "by_prefix": by_prefix,
        "largest": [[n, s] for s, n in largest],
        "newest": [[n, t] for t, n in newest],
        "oldest": [[n, t] for t, n in oldest],
    }


def _add(target: dict[str, list[int]], buckets: dict[str, list[int]]) -> None:
    for key, (count, nbytes) in buckets.items():
        entry = target.setdefault(key, [0, 0])
        entry[0] += count
        entry[1] += nbytes


def bucket_table(partial: dict[str, Any]) -> pa.Table:
    """A partial's counts as rows (dimension, key, count, bytes)."""
    dims: list[str] = []
    keys: list[str] = []
    counts: list[int] = []
    sizes: list[int] = []
    groups = [(EXTENSION, partial["by_extension"]), *partial["by_prefix"].items()]
    for dimension, buckets in groups:
        for key, (count, nbytes) in buckets.items():
            dims.append(dimension)
            keys.append(key)
            counts.append(count)
            sizes.append(nbytes)
    return pa.table({"dimension": dims, "key": keys, "count": counts, "bytes": sizes}, schema=BUCKET_SCHEMA)


def summarize_pages(
    storage: BlobStore, work_container: str, page_blobs: Sequence[str], buckets_blob: str, depth: int, top: int
) -> dict[str, Any]:
    """Summarize listing pages: the buckets into ``buckets_blob`` (replaced on a retry), a small result back."""
    partial = combine(
        (summarize_table(read_table(storage, work_container, blob), depth, top) for blob in page_blobs), depth, top
    )
    storage.write_bytes(work_container, buckets_blob, table_bytes(bucket_table(partial)), overwrite=True)
    return {
        "blobs": partial["blobs"],
        "bytes": partial["bytes"],
        "buckets": buckets_blob,
        "largest": partial["largest"],
        "newest": partial["newest"],
        "oldest": partial["oldest"],
    }


def add_buckets(tables: Iterable[pa.Table]) -> pa.Table:
    """The exact sums per (dimension, key) over bucket tables, adding up ``_MERGE_BATCH`` tables at a time."""
    total = BUCKET_SCHEMA.empty_table()
    batch: list[pa.Table] = []
    for table in tables:
        batch.append(table.select(BUCKET_SCHEMA.names).cast(BUCKET_SCHEMA))
        if len(batch) >= _MERGE_BATCH:
            total, batch = _group([total, *batch]), []
    return _group([total, *batch])


def _group(tables: list[pa.Table]) -> pa.Table:
    grouped = pa.concat_tables(tables).group_by(["dimension", "key"]).aggregate([("count", "sum"), ("bytes", "sum")])
    return pa.table(
        {
            "dimension": grouped.column("dimension"),
            "key": grouped.column("key"),
            "count": grouped.column("count_sum"),
            "bytes": grouped.column("bytes_sum"),
        },
        schema=BUCKET_SCHEMA,
    )


def merge_results(
    results: Iterable[dict[str, Any]], read_buckets: Callable[[str], pa.Table], depth: int, top: int
) -> dict[str, Any]:
    """The job result from the tasks' results (read one at a time) and their bucket files."""
    blobs = size = 0
    largest: list[tuple[int, str]] = []
    newest: list[tuple[str, str]] = []
    oldest: list[tuple[str, str]] = []
    files: list[str] = []
    for part in results:
        blobs += part["blobs"]
        size += part["bytes"]
        files.append(part["buckets"])
        largest = heapq.nlargest(top, largest + [(s, n) for n, s in part["largest"]])
        newest = heapq.nlargest(top, newest + [(t, n) for n, t in part["newest"]])
        oldest = heapq.nsmallest(top, oldest + [(t, n) for n, t in part["oldest"]])
    buckets = add_buckets(read_buckets(name) for name in files)
    return present(
        {
            "blobs": blobs,
            "bytes": size,
            "largest": [[n, s] for s, n in largest],
            "newest": [[n, t] for t, n in newest],
            "oldest": [[n, t] for t, n in oldest],
        },
        buckets,
        depth,
    )


def present(totals: dict[str, Any], buckets: pa.Table, depth: int) -> dict[str, Any]:
    """The summary as a job result: the top ``MAX_KEYS_SHOWN`` extensions and prefixes a level by bytes, each
    with ``distinct`` (how many keys there are) and ``other`` (what the keys not shown add up to)."""
    extensions = _ranked(buckets, EXTENSION)
    return {
        "blobs": totals["blobs"],
        "total_bytes": totals["bytes"],
        "by_extension": {
            "distinct": extensions["distinct"],
            "extensions": extensions["top"],
            "other": extensions["other"],
        },
        "by_prefix_level": {
            str(level): {"distinct": ranked["distinct"], "prefixes": ranked["top"], "other": ranked["other"]}
            for level in range(1, depth + 1)
            for ranked in (_ranked(buckets, str(level)),)
        },
        "largest": [{"name": n, "size_bytes": s} for n, s in totals["largest"]],
        "newest": [{"name": n, "last_modified": t} for n, t in totals["newest"]],
        "oldest": [{"name": n, "last_modified": t} for n, t in totals["oldest"]],
    }


def _ranked(buckets: pa.Table, dimension: str) -> dict[str, Any]:
    rows = buckets.filter(pc.equal(buckets.column("dimension"), dimension))
    ordered = rows.sort_by([("bytes", "descending"), ("count", "descending"), ("key", "ascending")])
    shown = ordered.slice(0, MAX_KEYS_SHOWN)
    rest = ordered.slice(MAX_KEYS_SHOWN)
    keys, counts, sizes = (shown.column(c).to_pylist() for c in ("key", "count", "bytes"))
    return {
        "distinct": rows.num_rows,
        "top": [{"key": k, "count": c, "bytes": b} for k, c, b in zip(keys, counts, sizes, strict=True)],
        "other": {"count": _sum(rest, "count"), "bytes": _sum(rest, "bytes")},
    }


def _sum(table: pa.Table, column: str) -> int:
    value = pc.sum(table.column(column)).as_py() if table.num_rows else 0
    return int(value or 0)
