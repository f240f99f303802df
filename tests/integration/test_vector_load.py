"""ingest_vector's steps on a real PostgreSQL: a chunk loaded twice (one after the other, or at the same time)
is loaded once; a re-run prepare starts clean; a finalize that finds its target taken changes nothing."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.errors import Conflict, InvalidInput, LeaseExpired
from core.models import JobStatus
from core.running import Lease, RunningTask
from core.settings import DatabaseSettings
from infrastructure.context import AppContext
from jobs import ingest_vector as ingest_job
from services.vector import ingest
from services.vector.ingest import FIRST_RUN
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


def load(ctx: AppContext, chunk: dict[str, Any], ledger: str = ledger_name(JOB, FIRST_RUN)) -> dict[str, Any]:
    return ingest.load(
        schema="geo",
        staging=chunk["staging"],
        ledger=ledger,
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
    ingest.cleanup_run("geo", job_id=JOB, run=1, storage=ctx.storage, db=ctx.db, settings=ctx.settings)
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


def run_steps(ctx: AppContext, opts: ingest.IngestOptions, token: str = FIRST_RUN) -> dict[str, Any]:
    """prepare, every load and finalize of one file, as the three stages run them."""
    plan = ingest.prepare(opts, job_id=JOB, token=token, storage=ctx.storage, db=ctx.db, settings=ctx.settings)
    for chunk in plan["chunks"]:
        load(ctx, chunk, plan["ledger"])
    return ingest.finalize(opts, plan, job_id=JOB, storage=ctx.storage, db=ctx.db, settings=ctx.settings)


def test_csv_types_come_from_the_whole_file(ctx: AppContext, tmp_path: Path) -> None:
    """Over 1 MB of integers, then '12abc' and '3.7' in the last rows: the column is text and keeps every value
    (typed from the first MB, GDAL made it integer and the last two values NULL)."""
    lines = (
        ["id,lon,lat,pad"] + [f"{i},{i % 10},{i % 5},{'x' * 80}" for i in range(12_000)] + ["12abc,1,1,a", "3.7,2,2,b"]
    )
    path = tmp_path / "late.csv"
    path.write_text("\n".join(lines) + "\n")
    assert path.stat().st_size > 1_000_000
    ctx.storage.upload_file("bronze", "late.csv", path)
    done = run_steps(ctx, options("late.csv", file_extension="csv", table_name="late", chunk_size=5000))
    types = {c["name"]: c["type"] for c in done["tables"][0]["columns"]}
    assert types["id"] == "text"
    got = ctx.db.quick("SELECT id FROM geo.late WHERE pad IN ('a', 'b') ORDER BY pad")
    assert [r["id"] for r in got] == ["12abc", "3.7"]
    nulls = ctx.db.fetch_one("SELECT count(*) AS n FROM geo.late WHERE id IS NULL")
    assert nulls is not None and nulls["n"] == 0


def test_system_and_non_latin_column_names(ctx: AppContext, tmp_path: Path) -> None:
    frame = vectors.points_frame(3)[["geometry"]].assign(
        xmin=1.0, xmax=2.0, ctid="c", tableoid=7, cmin=0, oid=5, **{"Население": 9}
    )
    ctx.storage.upload_file("bronze", "sys.geojson", vectors.write(frame, tmp_path / "sys.geojson", driver="GeoJSON"))
    done = run_steps(ctx, options("sys.geojson", table_name="sys"))
    names = [c["name"] for c in done["tables"][0]["columns"]]
    assert names == ["gid", "xmin_", "xmax_", "ctid_", "tableoid_", "cmin_", "oid_", "население", "geom"]
    assert count(ctx, "sys") == 3


def test_ddl_refusals_are_invalid_input_not_retried(ctx: AppContext) -> None:
    """A column PostgreSQL refuses (here a raw system column name) is a permanent InvalidInput, not a raw
    psycopg error (which the machine would retry)."""
    from services.vector import tables

    with pytest.raises(InvalidInput, match=r"cannot be created: .*conflicts with a system column name"):
        tables.create_staging(ctx.db, "geo", "t", [tables.Column("xmin", "xmin", "text")], "MultiPoint", 4326,
                              unlogged=False)  # fmt: skip


def test_append_with_other_column_types_names_the_column(ctx: AppContext, tmp_path: Path) -> None:
    first = vectors.points_frame(5)[["id", "geometry"]].assign(id=lambda f: f["id"] + 3_000_000_000)  # bigint
    ctx.storage.upload_file("bronze", "a.geojson", vectors.write(first, tmp_path / "a.geojson", driver="GeoJSON"))
    run_steps(ctx, options("a.geojson", table_name="codes"))
    second = first.assign(id=[f"x{i}" for i in range(5)])
    ctx.storage.upload_file("bronze", "b.geojson", vectors.write(second, tmp_path / "b.geojson", driver="GeoJSON"))
    widened = first.assign(id=range(5))  # integer into the bigint column: fine
    ctx.storage.upload_file("bronze", "c.geojson", vectors.write(widened, tmp_path / "c.geojson", driver="GeoJSON"))
    with pytest.raises(InvalidInput, match="column types differ: id is bigint in the table but text in the file"):
        run_steps(ctx, options("b.geojson", table_name="codes", if_exists="append"), token="r2a1")
    assert count(ctx, "codes") == 5
    run_steps(ctx, options("c.geojson", table_name="codes", if_exists="append"), token="r3a1")
    assert count(ctx, "codes") == 10


def test_a_late_attempt_never_touches_a_newer_attempts_or_runs_objects(ctx: AppContext, tmp_path: Path) -> None:
    """Attempt 1 of prepare lost its lease and attempt 2 prepared meanwhile: attempt 1 stopping removes only its
    own objects; the clean-up of run 1 removes every attempt of run 1 and leaves run 2 alone."""
    opts, _ = prepared(ctx, tmp_path)  # r1a1 (its objects stay: a crashed worker's)
    newer = ingest.prepare(opts, job_id=JOB, token="r1a2", storage=ctx.storage, db=ctx.db, settings=ctx.settings)
    with pytest.raises(LeaseExpired):  # attempt 1 is still running somewhere and finds it lost the task
        ingest.prepare(
            opts, job_id=JOB, token="r1a1", storage=ctx.storage, db=ctx.db, settings=ctx.settings,
            heartbeat=lambda: False,
        )  # fmt: skip
    for chunk in newer["chunks"]:
        load(ctx, chunk, newer["ledger"])
    done = ingest.finalize(opts, newer, job_id=JOB, storage=ctx.storage, db=ctx.db, settings=ctx.settings)
    assert done["loaded_rows"] == 100 and count(ctx, "twice") == 100

    def staging_tables() -> list[str]:
        return [
            r["tablename"]
            for r in ctx.db.quick("SELECT tablename FROM pg_tables WHERE tablename LIKE %s", ("\\_ingest%",))
        ]

    replace = options("twice.geojson", if_exists="replace")
    ingest.prepare(replace, job_id=JOB, token="r2a1", storage=ctx.storage, db=ctx.db, settings=ctx.settings)
    ingest.prepare(replace, job_id=JOB, token="r3a1", storage=ctx.storage, db=ctx.db, settings=ctx.settings)
    assert {t.split("_")[3] for t in staging_tables()} == {"r3a1"}  # a new run sweeps earlier runs' objects
    removed = ingest.cleanup_run("geo", job_id=JOB, run=2, storage=ctx.storage, db=ctx.db, settings=ctx.settings)
    assert removed["dropped_tables"] == [] and staging_tables()  # run 3 is untouched by run 2's clean-up
    ingest.cleanup_run("geo", job_id=JOB, run=3, storage=ctx.storage, db=ctx.db, settings=ctx.settings)
    assert staging_tables() == [] and list(ctx.storage.iter_blobs("silver", "tmp/ingest_vector/")) == []


def _submit_points(driver: Driver, ctx: AppContext, tmp_path: Path, name: str) -> str:
    path = vectors.write(vectors.points_frame(100), tmp_path / f"{name}.geojson", driver="GeoJSON")
    ctx.storage.upload_file("bronze", f"{name}.geojson", path)
    job = driver.machine.submit("ingest_vector", {"blob_name": f"{name}.geojson", "chunk_size": 40}).job
    driver.step_jobs()
    return job.job_id


def _running(driver: Driver, task_id: str, worker: str) -> RunningTask:
    """Attempt 1 of a task claimed by a worker of the test's own (which then runs, or dies, as the test says)."""
    claimed = driver.ctx.job_store.claim_task(task_id, 1, 30, worker)
    assert claimed is not None
    lease = Lease(lambda: driver.ctx.job_store.renew_lease(task_id, 1, 30), 10)
    return RunningTask(claimed, driver.ctx.job_store, driver.machine.claim_check, driver.machine.resources, lease)


def _expire(driver: Driver, task_id: str) -> None:
    driver.sql("UPDATE geoetl.tasks SET lease_expires_at = now() - interval '1 second' WHERE task_id = %s", (task_id,))
    assert driver.janitor()["leases_expired"] == 1


def _check_table(driver: Driver, job_id: str, table: str, rows: int) -> None:
    [stats] = driver.sql(f"SELECT count(*) AS n, count(DISTINCT gid) AS gids FROM geo.{table}")
    assert stats == {"n": rows, "gids": rows}
    [job] = driver.sql("SELECT result_data FROM geoetl.jobs WHERE job_id = %s", (job_id,))
    assert job["result_data"]["rows"]["loaded"] == rows  # type: ignore[index]
    left = driver.sql("SELECT tablename FROM pg_tables WHERE schemaname = 'geo' AND tablename <> %s", (table,))
    assert left == []
    assert list(driver.ctx.storage.iter_blobs("silver", "tmp/ingest_vector/")) == []


def test_a_load_task_run_again_after_it_loaded_adds_nothing(
    driver: Driver, machine_context: AppContext, tmp_path: Path
) -> None:
    """Attempt 1 of a load task COPYs its chunk, then its worker dies before reporting; the janitor gives the
    task a second attempt, which the machine runs: the chunk is not loaded twice."""
    job_id = _submit_points(driver, machine_context, tmp_path, "redelivered")
    driver.step_tasks()  # prepare
    driver.step_jobs()  # the load tasks
    task_id = f"{job_id}-r1-s2-t0"
    context = _running(driver, task_id, "dying-worker")
    first = ingest_job.load(ingest_job.LoadTask.model_validate(_params(driver, task_id)), context)
    assert (first["rows"], first["already_loaded"]) == (40, False)
    _expire(driver, task_id)
    assert driver.run(job_id) == JobStatus.COMPLETED
    [task] = driver.sql("SELECT attempt, result_data FROM geoetl.tasks WHERE task_id = %s", (task_id,))
    assert task["attempt"] == 2 and task["result_data"]["already_loaded"] is True  # type: ignore[index]
    _check_table(driver, job_id, "redelivered", 100)


def _params(driver: Driver, task_id: str) -> dict[str, Any]:
    [row] = driver.sql("SELECT parameters FROM geoetl.tasks WHERE task_id = %s", (task_id,))
    return dict(row["parameters"])  # type: ignore[call-overload]


def test_a_prepare_attempt_that_lost_its_lease_leaves_the_new_attempts_work(
    driver: Driver, machine_context: AppContext, tmp_path: Path
) -> None:
    """Attempt 1 of prepare stalls, its lease expires and attempt 2 prepares the load; when attempt 1 carries on
    it finds it lost the task and stops, removing only its own objects: the job completes."""
    job_id = _submit_points(driver, machine_context, tmp_path, "stalled")
    task_id = f"{job_id}-r1-s1-t0"
    slow = _running(driver, task_id, "slow-worker")
    _expire(driver, task_id)
    deadline = time.monotonic() + 30
    while not driver.sql("SELECT 1 FROM geoetl.tasks WHERE job_id = %s AND stage = 2", (job_id,)):
        assert time.monotonic() < deadline, "attempt 2 of prepare did not complete"
        if not driver.step():  # attempt 2 of prepare (after its retry delay), then the load tasks of its plan
            time.sleep(0.02)
    assert len(driver.sql("SELECT 1 FROM pg_tables WHERE tablename LIKE %s", ("\\_ingest\\_%r1a2%",))) == 2
    with pytest.raises(LeaseExpired):
        ingest_job.prepare(ingest_job.PrepareTask(), slow)
    assert driver.run(job_id) == JobStatus.COMPLETED
    _check_table(driver, job_id, "stalled", 100)


def test_a_finalize_that_runs_after_a_cancel_publishes_nothing(
    driver: Driver, machine_context: AppContext, tmp_path: Path
) -> None:
    """Every chunk is loaded and the finalize task has started when the job is cancelled: its swap finds the run
    ended and raises; the target table never appears and no STAC item is registered."""
    job_id = _submit_points(driver, machine_context, tmp_path, "late")
    driver.step_tasks()  # prepare
    driver.step_jobs()  # the load tasks
    driver.step_tasks()  # every load
    driver.step_jobs()  # the finalize task
    task_id = f"{job_id}-r1-s3-t0"
    context = _running(driver, task_id, "late-worker")
    driver.machine.cancel(job_id)
    with pytest.raises(Conflict, match="cancelled"):
        ingest_job.finalize(ingest_job.FinalizeTask.model_validate(_params(driver, task_id)), context)
    assert driver.sql("SELECT 1 FROM pg_tables WHERE schemaname = 'geo' AND tablename = 'late'") == []
    assert driver.sql("SELECT 1 FROM pgstac.items") == []
