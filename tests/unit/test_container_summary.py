"""Container summaries, extensions, prefixes and cursors (no database, no storage)."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.errors import InvalidInput
from infrastructure.storage import LocalBlobStore
from infrastructure.storage.base import BlobProperties
from services.container import listing, summary
from services.container.metadata import kind_of


def test_extensions_and_kinds() -> None:
    assert listing.extension_of("a/b/Scene.TIF") == "tif"
    assert listing.extension_of("a/b/archive.tar.gz") == "tar.gz"
    assert listing.extension_of("roads.shp.zip") == "shp.zip"
    assert listing.extension_of("a.b/README") == ""
    assert listing.extension_of(".hidden") == ""
    assert (kind_of("tif"), kind_of("gpkg"), kind_of("csv")) == ("raster", "vector", "other")


def test_prefix_levels() -> None:
    assert summary.prefix_at("a/b/c/d.txt", 1) == "a/"
    assert summary.prefix_at("a/b/c/d.txt", 2) == "a/b/"
    assert summary.prefix_at("a/d.txt", 3) == "a/"
    assert summary.prefix_at("d.txt", 1) == summary.ROOT


def _blobs(n: int) -> list[BlobProperties]:
    rng = random.Random(7)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    return [
        BlobProperties(
            "c",
            f"{rng.choice('xyz')}/{rng.choice('pq')}/{i:04d}.{rng.choice(['tif', 'csv', 'json', ''])}".rstrip("."),
            rng.randrange(0, 10_000),
            None,
            start + timedelta(minutes=rng.randrange(0, 100_000)),
            f"e{i}",
        )
        for i in range(n)
    ]


def _summarize(store: LocalBlobStore, blobs: list[BlobProperties], per_page: int, per_task: int, top: int) -> Any:
    """What the job does: pages in the work area, a partial per group of pages, then the merge."""
    pages = []
    for i in range(0, len(blobs), per_page):
        name = f"work/pages/{i:06d}.parquet"
        store.write_bytes("work", name, listing.table_bytes(listing.page_table(blobs[i : i + per_page])))
        pages.append(name)
    results = [
        summary.summarize_pages(store, "work", pages[i : i + per_task], f"work/summary/{i:06d}.parquet", 2, top)
        for i in range(0, len(pages), per_task)
    ]
    merged = summary.merge_results(results, lambda blob: listing.read_table(store, "work", blob), 2, top)
    return results, merged


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    local = LocalBlobStore(tmp_path / "storage")
    local.ensure_container("work")
    return local


def test_partials_combine_to_the_exact_summary(store: LocalBlobStore) -> None:
    blobs = _blobs(1000)
    _, whole = _summarize(store, blobs, 1000, 1, 5)
    _, split = _summarize(store, blobs, 97, 3, 5)
    assert split == whole
    assert whole["blobs"] == 1000 and whole["total_bytes"] == sum(b.size for b in blobs)
    largest = sorted(blobs, key=lambda b: (b.size, b.name), reverse=True)[:5]
    assert [b["name"] for b in whole["largest"]] == [b.name for b in largest]
    oldest = min(blobs, key=lambda b: (b.last_modified, b.name))
    assert whole["oldest"][0] == {"name": oldest.name, "last_modified": oldest.last_modified.isoformat()}
    assert whole["by_prefix_level"]["1"]["distinct"] == 3
    assert whole["by_prefix_level"]["2"]["distinct"] == 6
    assert whole["by_extension"]["distinct"] == 4 and whole["by_extension"]["other"] == {"count": 0, "bytes": 0}
    assert sum(e["count"] for e in whole["by_extension"]["extensions"]) == 1000
    empty = summary.merge_results([], lambda blob: listing.read_table(store, "work", blob), 2, 5)
    assert empty["blobs"] == 0 and empty["by_extension"] == {
        "distinct": 0,
        "extensions": [],
        "other": {"count": 0, "bytes": 0},
    }
    assert empty["by_prefix_level"]["2"] == {"distinct": 0, "prefixes": [], "other": {"count": 0, "bytes": 0}}


def test_results_stay_small_with_one_extension_and_one_prefix_per_blob(store: LocalBlobStore) -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    blobs = [BlobProperties("c", f"d{i:05d}/x.{i:06d}", i + 1, None, start, f"e{i}") for i in range(3000)]
    results, merged = _summarize(store, blobs, 500, 2, 3)
    # a task's result does not grow with the number of distinct keys (they are in its bucket file)
    assert all(len(json.dumps(r)) < 2000 for r in results)
    assert len(json.dumps(merged)) < 40_000
    extensions = merged["by_extension"]
    assert extensions["distinct"] == 3000 and len(extensions["extensions"]) == summary.MAX_KEYS_SHOWN
    assert [e["key"] for e in extensions["extensions"][:2]] == ["002999", "002998"]  # by bytes
    shown = sum(e["bytes"] for e in extensions["extensions"])
    assert extensions["other"] == {"count": 2900, "bytes": sum(range(1, 3001)) - shown}  # counts stay exact
    level1 = merged["by_prefix_level"]["1"]
    assert level1["distinct"] == 3000 and len(level1["prefixes"]) == summary.MAX_KEYS_SHOWN
    assert level1["other"]["count"] == 2900 and level1["prefixes"][0] == {"key": "d02999/", "count": 1, "bytes": 3000}


def test_adding_bucket_tables_up_in_batches_is_exact() -> None:
    tables = [
        summary.bucket_table({"by_extension": {"a": [1, i], f"k{i % 7}": [2, 1]}, "by_prefix": {"1": {"p/": [1, 1]}}})
        for i in range(100)
    ]
    total = {
        (d, k): (c, b)
        for d, k, c, b in zip(
            *(summary.add_buckets(tables).column(n).to_pylist() for n in ("dimension", "key", "count", "bytes")),
            strict=True,
        )
    }
    assert total[("extension", "a")] == (100, sum(range(100)))
    assert total[("extension", "k3")] == (28, 14) and total[("1", "p/")] == (100, 100)
    assert len(total) == 9


def test_cursors_round_trip_and_refuse_garbage() -> None:
    token = "data/f1/blob0001.txt"
    assert listing.decode_cursor(listing.encode_cursor(token)) == token
    for bad in ("%%%", "", "a"):
        with pytest.raises(InvalidInput, match="cursor"):
            listing.decode_cursor(bad)
