"""STAC loading: our ``upsert_item`` path (what a process_raster task does) vs ``pypgstac load`` on the same items.

One real item is built from a generated raster with :func:`services.stac.items.build_raster_item`
(projection, raster bands with statistics, three file assets), then copied n times with new ids, shifted
footprints and dates. Each loader puts the same n items into a collection of its own in a throwaway
database on the private PostgreSQL cluster (started if needed), twice: a first load (insert) and a second
(every item replaced). Timed:

* bare ``pgstac.upsert_item()``: one call per item in its own transaction (our wrapper's floor);
* ``upsert_item``: one transaction per item (collection check, upsert, extent upkeep), one thread;
* ``upsert_item x T``: the same from T threads (parallel tasks);
* ``upsert_items``: our bulk path, batches of 500 per transaction (dehydrated in Python, COPY, insert);
* reference ``pypgstac load items <file> --method upsert`` through its Python API (the CLI adds only its
  start-up) over the same items as ndjson.

Usage: ``.venv/bin/python -m bench.stac [--items 2000] [--threads 4]``.
"""

from __future__ import annotations

import argparse
import copy
import json
import signal
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from psycopg.types.json import Jsonb

from bench.orchestration import _interrupt, postgres_server, server_description, throwaway_database
from core.settings import DatabaseSettings
from infrastructure.db.database import Database
from infrastructure.db.setup import dsn
from services.stac import catalog
from services.stac.items import build_raster_item, file_asset
from tests.helpers import rasters
from tests.helpers.env import isolate_environment


def template_item(folder: Path) -> dict[str, Any]:
    source = rasters.multiband_int16(folder / "ms.tif", 256)
    assets = {
        tier: file_asset(source, href=f"https://example.org/silver/{tier}/ms.tif", roles=["data"], title=tier)
        for tier in ("visualization", "analysis", "archive")
    }
    return build_raster_item(source, item_id="template", collection_id="template", assets=assets)


def make_items(template: dict[str, Any], n: int, collection: str) -> list[dict[str, Any]]:
    items = []
    for i in range(n):
        item = copy.deepcopy(template)
        dx, dy = (i % 300) * 0.05, (i // 300) * 0.05
        item["id"] = f"item-{i:06d}"
        item["collection"] = collection
        item["links"] = [{"rel": "collection", "href": f"../../{collection}"}]
        for polygon in [item["geometry"]["coordinates"]]:
            for ring in polygon:
                for point in ring:
                    point[0] += dx
                    point[1] += dy
        west, south, east, north = item["bbox"]
        item["bbox"] = [west + dx, south + dy, east + dx, north + dy]
        item["properties"]["datetime"] = f"2024-{i % 12 + 1:02d}-{i % 28 + 1:02d}T00:00:00Z"
        items.append(item)
    return items


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def count(db: Database, collection: str) -> int:
    return catalog.item_counts(db).get(collection, 0)


def ours_sequential(db: Database, items: list[dict[str, Any]]) -> None:
    for item in items:
        catalog.upsert_item(db, item)


def ours_threaded(db: Database, items: list[dict[str, Any]], threads: int) -> None:
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda item: catalog.upsert_item(db, item), items))


def bare_upsert_item(db: Database, items: list[dict[str, Any]]) -> None:
    """pgstac's own ``upsert_item()`` per item, nothing else (what our wrapper adds to is this)."""
    for item in items:
        with db.transaction() as conn:
            conn.execute("SET LOCAL search_path = pgstac, public")
            conn.execute("SELECT upsert_item(%s)", (Jsonb(item),))


def pypgstac_load(settings: DatabaseSettings, path: Path) -> None:
    from pypgstac.db import PgstacDB
    from pypgstac.load import Loader, Methods

    pg = PgstacDB(dsn=dsn(settings))
    try:
        Loader(pg).load_items(str(path), insert_mode=Methods.upsert)
    finally:
        pg.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    isolate_environment()
    signal.signal(signal.SIGTERM, _interrupt)
    with tempfile.TemporaryDirectory(prefix="bench-stac-") as temp, postgres_server() as server:
        folder = Path(temp)
        template = template_item(folder)
        size = len(json.dumps(template))
        with throwaway_database(server) as settings:
            db = Database(DatabaseSettings(**{**settings.model_dump(), "pg_pool_max_size": args.threads + 1}))
            try:
                rows: list[tuple[str, float, float]] = []
                runs: list[tuple[str, Callable[[list[dict[str, Any]]], object]]] = [
                    (
                        "bare pgstac upsert_item() per item (no extent upkeep)",
                        lambda items: bare_upsert_item(db, items),
                    ),
                    ("upsert_item (1 thread)", lambda items: ours_sequential(db, items)),
                    (f"upsert_item ({args.threads} threads)", lambda items: ours_threaded(db, items, args.threads)),
                    ("upsert_items (batches of 500)", lambda items: catalog.upsert_items(db, items)),
                ]
                for index, (name, load) in enumerate(runs):
                    items = make_items(template, args.items, f"ours-{index}")
                    catalog.ensure_collection(db, f"ours-{index}")
                    first = timed(lambda items=items, load=load: load(items))  # type: ignore[misc]
                    second = timed(lambda items=items, load=load: load(items))  # type: ignore[misc]
                    assert count(db, f"ours-{index}") == args.items
                    rows.append((name, first, second))
                catalog.ensure_collection(db, "reference")
                ndjson = folder / "items.ndjson"
                with open(ndjson, "w") as out:
                    for item in make_items(template, args.items, "reference"):
                        out.write(json.dumps(item) + "\n")
                ref_first = timed(lambda: pypgstac_load(settings, ndjson))
                ref_second = timed(lambda: pypgstac_load(settings, ndjson))
                assert count(db, "reference") == args.items
                description = server_description(settings)
            finally:
                db.close()
    n = args.items
    print(f"\nSTAC load: {n} items of {size / 1024:.1f} KiB JSON each, {description}\n")
    print("| loader | first load s | items/s | reload (replace) s | items/s | vs pypgstac (first / reload) |")
    print("|---|---:|---:|---:|---:|---:|")
    print(
        f"| pypgstac load --method upsert (reference) | {ref_first:.2f} | {n / ref_first:,.0f} | "
        f"{ref_second:.2f} | {n / ref_second:,.0f} | 1.00 / 1.00 |"
    )
    for name, first, second in rows:
        print(
            f"| {name} | {first:.2f} | {n / first:,.0f} | {second:.2f} | {n / second:,.0f} | "
            f"{first / ref_first:.2f} / {second / ref_second:.2f} |"
        )
    print("\nratio = our seconds / pypgstac's seconds (lower is better; 1.00 = as fast as the reference)")


if __name__ == "__main__":
    main()
