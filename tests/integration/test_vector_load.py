"""ingest_vector's steps on a real PostgreSQL: a chunk loaded twice (one after the other, or at the same time)
is loaded once; a re-run prepare starts clean; a finalize that finds its target taken changes nothing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.errors import Conflict
from core.settings import DatabaseSettings
from infrastructure.context import AppContext
from services.vector import ingest
from services.vector.names import ledger_name
from tests.helpers import vectors
from tests.helpers.driver import Driver
from tests.plugins.app import make_context

JOB = "f" * 64


@pytest.fixture
def ctx(fresh_db: DatabaseSettings, tmp_path: Path) -> Iterator[AppContext]:
    context = make_context(fresh_db, tmp_path / "storage")
    yield context
    context.close()


def options(blob: str, **overrides: Any) -> ingest.IngestOptions:
    values: dict[str, Any] = {
        "container_name": "bronze",
        "blob_name": blob,
        "file_extension": "geojson",
        "table_name": "twice",
        "schema": "geo",
        "chunk_size": 40,
    }
    return ingest.IngestOptions(**(values | overrides))


def prepared(
    ctx: AppContext, tmp_path: Path, n: int = 100, **overrides: Any
) -> tuple[ingest.IngestOptions, dict[str, Any]]:
    path = vectors.write(vectors.points_frame(n), tmp_path / "twice.geojson", driver="GeoJSON")
    ctx.storage.upload_file("bronze", "twice.geojson", path)
    opts = options("twice.geojson", **overrides)
    return opts, ingest.prepare(opts, job_id=JOB, storage=ctx.storage, db=ctx.db, settings=ctx.settings)


def load(ctx: AppContext, chunk: dict[str, Any]) -> dict[str, Any]:
    return ingest.load(
        schema="geo",
        staging=chunk["staging"],
        ledger=ledger_name(JOB),
        chunk=chunk["chunk"],
        blob=chunk["blob"],
        table_z=chunk["table_z"],
        chunk_z=chunk["z"],
        storage=ctx.storage,
        db=ctx.db,
        settings=ctx.settings,
    )


def count(ctx: AppContext, table: str) -> int:
    row = ctx.db.fetch_one(f"SELECT count(*) AS n FROM geo.{table}")
    assert row is not None
    return int(row["n"])


def test_a_chunk_loaded_twice_is_loaded_once(ctx: AppContext, tmp_path: Path) -> None:
    opts, plan = prepared(ctx, tmp_path)
    chunks = plan["chunks"]
    assert [c["rows"] for c in chunks] == [40, 40, 20]
    staging = chunks[0]["staging"]

    first = load(ctx, chunks[0])
    again = load(ctx, chunks[0])  # a retry after the first run committed
    assert (first["rows"], first["already_loaded"]) == (40, False)
    assert (again["rows"], again["already_loaded"]) == (0, True)
    assert count(ctx, staging) == 40

    results: list[dict[str, Any]] = []
    threads = [threading.Thread(target=lambda: results.append(load(ctx, chunks[1]))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r["already_loaded"] for r in results) == [False, True]  # two at once: one of them loads
    load(ctx, chunks[2])
    assert count(ctx, staging) == 100

    done = ingest.finalize(opts, plan, job_id=JOB, storage=ctx.storage, db=ctx.db, settings=ctx.settings)
    assert done["tables"][0]["rows"] == 100 and count(ctx, "twice") == 100
    again_done = ingest.finalize(opts, plan, job_id=JOB, storage=ctx.storage, db=ctx.db, settings=ctx.settings)
    assert again_done["tables"][0]["rows"] == 100  # a re-run finalize finds its work done


def test_finalize_refuses_an_incomplete_load(ctx: AppContext, tmp_path: Path) -> None:
    opts, plan = prepared(ctx, tmp_path)
    load(ctx, plan["chunks"][0])
    with pytest.raises(Exception, match="expected 100"):
        ingest.finalize(opts, plan, job_id=JOB, storage=ctx.storage, db=ctx.db, settings=ctx.settings)
    assert count(ctx, plan["chunks"][0]["staging"]) == 40  # nothing swapped


def test_a_rerun_prepare_starts_clean_and_a_taken_target_changes_nothing(ctx: AppContext, tmp_path: Path) -> None:
    prepared(ctx, tmp_path)
    opts, plan = prepared(ctx, tmp_path)  # a second run of the same job's prepare
    for chunk in plan["chunks"]:
        load(ctx, chunk)
    with ctx.db.transaction() as conn:
        conn.execute("CREATE TABLE geo.twice (id int)")  # someone else created the target meanwhile
    with pytest.raises(Conflict, match="already exists"):
        ingest.finalize(opts, plan, job_id=JOB, storage=ctx.storage, db=ctx.db, settings=ctx.settings)
    assert count(ctx, plan["chunks"][0]["staging"]) == 100
    ingest.cleanup_failed(opts, job_id=JOB, storage=ctx.storage, db=ctx.db, settings=ctx.settings)
    leftovers = ctx.db.fetch_one(
        "SELECT count(*) AS n FROM pg_tables WHERE schemaname = 'geo' AND tablename LIKE %s", ("\\_ingest\\_%",)
    )
    assert leftovers is not None and leftovers["n"] == 0
    assert list(ctx.storage.iter_blobs("silver", "tmp/ingest_vector/")) == []


def test_types_survive_both_copy_formats(ctx: AppContext) -> None:
    """Every mapped type arrives intact, by binary COPY and by the CSV COPY used when a column needs it."""
    from datetime import UTC, date, datetime, time
    from decimal import Decimal

    import pyarrow as pa
    import shapely

    from services.vector import tables

    wkb = pa.array([shapely.to_wkb(shapely.MultiPoint([(1, 2)])), shapely.to_wkb(shapely.MultiPoint([(3, 4)]))])
    common = {
        "gid": pa.array([1, 2], pa.int64()),
        "small": pa.array([1, None], pa.int16()),
        "big": pa.array([2**40, -5], pa.int64()),
        "real": pa.array([1.5, None], pa.float32()),
        "text": pa.array(['é "quoted", comma', ""], pa.string()),
        "flag": pa.array([True, None], pa.bool_()),
        "day": pa.array([date(2024, 2, 29), date(1970, 1, 1)], pa.date32()),
        "at": pa.array([datetime(2024, 1, 2, 3, 4, 5, 678000), None], pa.timestamp("ms")),
        "at_tz": pa.array([datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), None], pa.timestamp("us", tz="UTC")),
        "raw": pa.array([b"\x00\x01", None], pa.binary()),
        "nothing": pa.nulls(2, pa.string()),
        "empty": pa.nulls(2),
    }
    exotic = {
        "clock": pa.array([time(12, 30), None], pa.time64("us")),
        "money": pa.array([Decimal("12.34"), None], pa.decimal128(10, 2)),
        "tags": pa.array([["a", "b"], None], pa.list_(pa.string())),
    }
    for name, extra in (("binary_copy", {}), ("csv_copy", exotic)):
        columns = {**common, **extra}
        table = pa.table({**columns, "geom": wkb})
        attrs = [tables.Column(k, k, tables.pg_type(v.type)) for k, v in columns.items() if k != "gid"]
        assert (tables.binary_payload(table) is None) == bool(extra)
        tables.create_staging(ctx.db, "geo", name, attrs, "MultiPoint", 4326, unlogged=False)
        tables.create_ledger(ctx.db, "geo", f"{name}_ledger")
        assert tables.load_chunk(ctx.db, "geo", name, f"{name}_ledger", 0, table, timeout_ms=10_000)
        with ctx.db.transaction() as conn:
            got = conn.execute(f"SELECT *, ST_AsText(geom) AS wkt FROM geo.{name} ORDER BY gid").fetchall()
        first, second = got
        assert first["small"] == 1 and second["small"] is None and first["big"] == 2**40
        assert first["real"] == 1.5 and first["text"] == 'é "quoted", comma' and second["text"] == ""
        assert first["flag"] is True and second["flag"] is None
        assert first["day"] == date(2024, 2, 29) and second["day"] == date(1970, 1, 1)
        assert first["at"] == datetime(2024, 1, 2, 3, 4, 5, 678000) and second["at"] is None
        assert first["at_tz"] == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
        assert bytes(first["raw"]) == b"\x00\x01" and second["raw"] is None and first["nothing"] is None
        assert first["empty"] is None
        assert first["wkt"] == "MULTIPOINT((1 2))"
        if extra:
            assert first["clock"] == time(12, 30) and first["money"] == Decimal("12.34")
            assert first["tags"] == ["a", "b"] and second["tags"] is None


def test_a_cancelled_ingest_is_cleaned_up(driver: Driver, machine_context: AppContext, tmp_path: Path) -> None:
    """Cancelled after prepare (staging tables and chunks exist): the job's clean-up removes them all."""
    path = vectors.write(vectors.points_frame(100), tmp_path / "gone.geojson", driver="GeoJSON")
    machine_context.storage.upload_file("bronze", "gone.geojson", path)
    job = driver.machine.submit("ingest_vector", {"blob_name": "gone.geojson", "chunk_size": 40}).job
    driver.step_jobs()
    driver.step_tasks()  # prepare: staging tables, ledger and chunks now exist
    staging = driver.sql(
        "SELECT count(*) AS n FROM pg_tables WHERE schemaname = 'geo' AND tablename LIKE '\\_ingest\\_%%'"
    )
    assert staging[0]["n"] == 2
    assert list(machine_context.storage.iter_blobs("silver", f"tmp/ingest_vector/{job.job_id}/"))
    driver.machine.cancel(job.job_id)
    while driver.step():
        pass
    assert driver.status(job.job_id) == "cancelled"
    left = driver.sql("SELECT count(*) AS n FROM pg_tables WHERE schemaname = 'geo'")
    assert left[0]["n"] == 0
    assert list(machine_context.storage.iter_blobs("silver", "tmp/ingest_vector/")) == []
    events = driver.sql(
        "SELECT details FROM geoetl.job_events WHERE job_id = %s AND event = 'job_cleaned_up'", (job.job_id,)
    )
    assert len(events) == 1 and len(events[0]["details"]["dropped_tables"]) == 2  # type: ignore[index]


def test_the_steps_work_behind_pgbouncer(pgbouncer: DatabaseSettings, tmp_path: Path) -> None:
    """Prepare, parallel loads (binary COPY) and the finalize (index builds on several connections, advisory
    lock, swap) through PgBouncer in transaction mode: no session state anywhere."""
    context = make_context(pgbouncer, tmp_path / "storage")
    try:
        opts, plan = prepared(context, tmp_path, n=100)
        threads = [threading.Thread(target=load, args=(context, chunk)) for chunk in plan["chunks"]]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        done = ingest.finalize(
            opts, plan, job_id=JOB, storage=context.storage, db=context.db, settings=context.settings
        )
        assert done["tables"][0]["rows"] == 100 and count(context, "twice") == 100
    finally:
        context.close()
