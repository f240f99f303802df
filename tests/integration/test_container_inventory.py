"""Listing pages, file limits and the inventory table with real storage and a real PostgreSQL."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from core.errors import ContainerNotFound
from core.settings import DatabaseSettings
from infrastructure.db.database import Database
from infrastructure.storage import LocalBlobStore
from services.container import inventory, listing
from services.container.metadata import BlobMetadata

JOB = "c" * 64


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    local = LocalBlobStore(tmp_path / "storage")
    for container in ("bronze", "silver", "gold"):
        local.ensure_container(container)
    for i in range(20):
        local.write_bytes("bronze", f"d/{i:02d}.txt", b"z" * i)
    return local


@pytest.fixture
def db(fresh_db: DatabaseSettings) -> Iterator[Database]:
    database = Database(fresh_db)
    with database.transaction() as conn:
        conn.execute(
            "INSERT INTO geoetl.jobs (job_id, job_type, parameters, total_stages) VALUES (%s, 't', '{}', 1)", (JOB,)
        )
    yield database
    database.close()


@pytest.mark.parametrize(
    ("limit", "blobs", "pages", "truncated"),
    [(None, 20, 3, False), (20, 20, 3, False), (14, 14, 2, True), (9, 9, 2, True), (100, 20, 3, False)],
)
def test_pages_and_file_limits(
    store: LocalBlobStore, limit: int | None, blobs: int, pages: int, truncated: bool
) -> None:
    work = listing.Work.for_job("silver", JOB)
    found = listing.list_to_pages(store, "bronze", "d/", work, page_size=7, file_limit=limit)
    assert (found.blobs, len(found.pages), found.truncated) == (blobs, pages, truncated)
    assert found.bytes == sum(range(blobs))
    names = [n for p in found.pages for n in listing.read_table(store, "silver", p.blob).column("name").to_pylist()]
    assert names == [f"d/{i:02d}.txt" for i in range(blobs)]
    assert found.pages[0].blob == f"inventory-work/{JOB}/pages/000000.parquet"


def test_listing_the_work_container_skips_work_files_and_missing_containers_fail(store: LocalBlobStore) -> None:
    store.write_bytes("silver", "kept.txt", b"1")
    work = listing.Work.for_job("silver", JOB)
    first = listing.list_to_pages(store, "silver", "", work, page_size=1)
    again = listing.list_to_pages(store, "silver", "", work, page_size=1)  # its own page files now exist
    assert first.blobs == again.blobs == 1
    with pytest.raises(ContainerNotFound, match="'nope' does not exist"):
        listing.list_to_pages(store, "nope", "", work, page_size=10)


def test_inventory_is_replaced_per_job(store: LocalBlobStore, db: Database) -> None:
    work = listing.Work.for_job("silver", JOB)
    found = listing.list_to_pages(store, "bronze", "", work, page_size=8)
    refs = [p.as_dict() for p in found.pages]
    for _ in range(2):
        result = inventory.write_inventory(
            store, db, job_id=JOB, container="bronze", work_container="silver", pages=refs, output_container="gold"
        )
        assert (result["blobs"], result["total_bytes"]) == (20, sum(range(20)))
        rows = db.quick("SELECT count(*) AS n, sum(size_bytes) AS b FROM geoetl.inventory WHERE job_id = %s", (JOB,))
        assert rows == [{"n": 20, "b": sum(range(20))}]
    table = pq.read_table(io.BytesIO(store.read_bytes("gold", inventory.parquet_blob(JOB))))
    assert table.num_rows == 20 and set(table.column("extension").to_pylist()) == {"txt"}
    row = db.fetch_one("SELECT container, kind, last_modified IS NOT NULL AS dated FROM geoetl.inventory LIMIT 1")
    assert row == {"container": "bronze", "kind": "other", "dated": True}
    db.quick("DELETE FROM geoetl.jobs WHERE job_id = %s", (JOB,))  # the inventory goes with its job
    assert db.quick("SELECT count(*) AS n FROM geoetl.inventory") == [{"n": 0}]


def test_awkward_values_survive_the_copy(store: LocalBlobStore, db: Database) -> None:
    store.write_bytes("bronze", "README", b"no extension")
    store.write_bytes("bronze", 'odd/na,me "q".tif', b"x")
    blobs = [store.properties("bronze", "README"), store.properties("bronze", 'odd/na,me "q".tif')]
    metadata = [
        BlobMetadata("other"),
        BlobMetadata(
            "raster",
            format="GTiff",
            crs='PROJCS["a, b", "c"]',
            width=3,
            bounds=[1.5, -2.25, 1e-7, 123456789.125],
            metadata_error='bad "header",\nline two',
            details={"warnings": ['quote " comma , newline \n'], "nodata": None},
        ),
    ]
    page = inventory.enrich(listing.page_table(blobs), metadata)
    store.write_bytes("silver", "w/page.parquet", listing.table_bytes(page))
    ref = {"index": 0, "blob": "w/page.parquet", "blobs": 2, "bytes": 13, "enriched": True}
    result = inventory.write_inventory(
        store, db, job_id=JOB, container="bronze", work_container="silver", pages=[ref], output_container="gold"
    )
    assert (result["blobs"], result["rasters"], result["metadata_errors"]) == (2, 1, 1)
    rows = db.quick(
        "SELECT name, extension, kind, crs, width, height, bounds, metadata_error, details, last_modified"
        " FROM geoetl.inventory WHERE job_id = %s ORDER BY name",
        (JOB,),
    )
    readme, odd = rows
    assert (readme["extension"], readme["kind"], readme["crs"], readme["bounds"], readme["details"]) == (
        "",
        "other",
        None,
        None,
        None,
    )
    assert readme["last_modified"] == blobs[0].last_modified
    assert odd["name"] == 'odd/na,me "q".tif' and odd["crs"] == 'PROJCS["a, b", "c"]'
    assert (odd["width"], odd["height"]) == (3, None)
    assert odd["bounds"] == [1.5, -2.25, 1e-7, 123456789.125]
    assert odd["metadata_error"] == 'bad "header",\nline two'
    assert odd["details"] == {"warnings": ['quote " comma , newline \n'], "nodata": None}
