"""duckdb_query: an aggregate over a 10-million-row Parquet file, through the job vs plain DuckDB in one process.

The file is generated once (DuckDB ``COPY ... TO``) and kept in the benchmark's own
local storage under ``.local/bench/duckdb/storage/bronze/bench/``. Three ways to run
the same SQL, each ``--repeat`` times (median shown):

* ``plain duckdb``: ``duckdb.connect()`` in this process, the file's local path, same threads
  (one warm connection, and a new connection per run as the sandbox has);
* ``sandbox service``: ``services.duckdb.query.run_query`` in this process (the parser check,
  URL mapping, locked connection with the spatial extension loaded, JSON result);
* ``duckdb_query job``: submitted through the CoreMachine and run by a worker process
  (``python -m triggers.localhost --workers-only``) over a throwaway database on the private
  PostgreSQL cluster, timed from submit until the job is seen completed (polled every 10 ms).

Usage: ``.venv/bin/python -m bench.duckdb [--rows 10000000] [--repeat 5]``.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb

from bench.orchestration import (
    POLL_SECONDS,
    BenchError,
    WorkerProcesses,
    _interrupt,
    postgres_server,
    server_description,
    throwaway_database,
)
from core.errors import GeoetlError
from core.machine import CoreMachine
from core.models import JobStatus
from core.settings import PROJECT_ROOT, AnalyticsSettings, AppSettings, Settings, StorageSettings
from infrastructure.context import AppContext
from services.duckdb.query import QueryRequest, run_query
from tests.helpers.env import isolate_environment
from triggers.runtime import build_machine

BENCH_DIR = PROJECT_ROOT / ".local" / "bench" / "duckdb"
BLOB = "bench/sales-{rows}.parquet"
SQL = (
    "SELECT region, count(*) AS n, sum(amount) AS total, avg(amount) AS mean, "
    "min(day) AS first_day, max(day) AS last_day, count(DISTINCT customer) AS customers "
    "FROM {source} GROUP BY region ORDER BY region"
)


def generate(path: Path, rows: int) -> None:
    """The benchmark's Parquet file: ``rows`` sales over 16 regions, written once and kept."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"[bench] generating {rows:,} rows into {path}", flush=True)
    partial = path.with_suffix(".part")
    con = duckdb.connect()
    con.execute(
        f"COPY (SELECT range AS id, (hash(range) % 16)::INT AS region, (hash(range * 7) % 100000) / 100.0 AS amount, "
        f"DATE '2020-01-01' + (range % 1500)::INT AS day, (hash(range * 13) % 50000)::INT AS customer "
        f"FROM range({rows})) TO '{partial}' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 1000000)"
    )
    con.close()
    partial.rename(path)


def run_job(ctx: AppContext, machine: CoreMachine, workers: WorkerProcesses, sql: str, timeout: float) -> float:
    started = time.perf_counter()
    job_id = machine.submit("duckdb_query", {"sql": sql}).job.job_id
    while True:
        row = ctx.job_store.job(job_id)
        assert row is not None
        status = JobStatus(row["status"])
        if status == JobStatus.COMPLETED:
            return time.perf_counter() - started
        if status.terminal:
            raise BenchError(f"job {job_id} is {status}: {row['error_details']}")
        if time.perf_counter() - started > timeout:
            raise BenchError(f"job {job_id} still {status} after {timeout:.0f} s")
        workers.check()
        time.sleep(POLL_SECONDS)


def fresh(threads: int, sql: str) -> None:
    """The plain query on a new connection (no warm DuckDB caches), as the sandbox runs every query."""
    con = duckdb.connect(config={"threads": threads})
    try:
        con.execute(sql).fetchall()
    finally:
        con.close()


def timed(function: object, repeat: int) -> list[float]:
    assert callable(function)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows of the generated file (default 10,000,000)")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each variant (default 5; the median is shown)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds one job may take (default 600)")
    args = parser.parse_args()
    if args.rows < 1 or args.repeat < 1:
        parser.error("--rows and --repeat are at least 1")

    isolate_environment()
    previous = signal.signal(signal.SIGTERM, _interrupt)
    storage_root = BENCH_DIR / "storage"
    blob = BLOB.format(rows=args.rows)
    local_file = storage_root / "bronze" / blob
    generate(local_file, args.rows)
    analytics = AnalyticsSettings()
    url = f"storage://bronze/{blob}"
    try:
        # plain DuckDB in this process, the same number of threads as the sandbox
        plain = duckdb.connect(config={"threads": analytics.duckdb_threads})
        plain_sql = SQL.format(source=f"read_parquet('{local_file}')")
        expected = plain.execute(plain_sql).fetchall()  # warm-up (file cache)

        with postgres_server() as server, throwaway_database(server) as db:
            storage = StorageSettings(storage_backend="local", storage_local_root=storage_root)
            settings = Settings(database=db, storage=storage, app=AppSettings(log_level="WARNING"))
            ctx = AppContext(settings)
            for container in storage.containers:
                ctx.storage.ensure_container(container)

            def service() -> None:
                result = run_query(
                    QueryRequest(SQL.format(source=f"'{url}'")),
                    ctx.storage,
                    analytics,
                    job_id="bench",
                    output_container="silver",
                )
                if result["row_count"] != len(expected):
                    raise BenchError(f"the service returned {result['row_count']} rows, expected {len(expected)}")

            scratch = Path(tempfile.mkdtemp(prefix="geoetl-bench-duckdb-"))
            workers = WorkerProcesses(db, storage_root, scratch, 1, 1)
            plain_times: list[float] = []
            fresh_times: list[float] = []
            service_times: list[float] = []
            job_times: list[float] = []
            try:
                machine = build_machine(ctx)
                print("[bench] starting 1 worker process", flush=True)
                workers.start()
                service()
                run_job(ctx, machine, workers, SQL.format(source=f"'{url}'") + " -- warm-up", args.timeout)
                # the three variants take turns, so a busy machine slows them alike
                for i in range(args.repeat):
                    print(f"[bench] round {i + 1} of {args.repeat}", flush=True)
                    plain_times += timed(lambda: plain.execute(plain_sql).fetchall(), 1)
                    fresh_times += timed(lambda: fresh(analytics.duckdb_threads, plain_sql), 1)
                    service_times += timed(service, 1)
                    sql = SQL.format(source=f"'{url}'") + f" -- run {time.time_ns()} {i}"  # a distinct job
                    job_times.append(run_job(ctx, machine, workers, sql, args.timeout))
            finally:
                workers.stop()
                ctx.close()
                plain.close()
            description = server_description(db)

        base = statistics.median(plain_times)
        size = local_file.stat().st_size / 1e6
        print(
            f"\nduckdb_query: {len(expected)}-group aggregate over {args.rows:,} rows of Parquet ({size:.0f} MB), "
            f"{analytics.duckdb_threads} DuckDB thread(s), median of {args.repeat}; {description}\n"
        )
        print(f"{'variant':<42} {'median s':>9} {'min s':>8} {'vs plain':>9}")
        for name, times in [
            ("plain duckdb, one process (reference)", plain_times),
            ("plain duckdb, a new connection per run", fresh_times),
            ("sandbox service (run_query), in process", service_times),
            ("duckdb_query job, submit -> completed", job_times),
        ]:
            median = statistics.median(times)
            print(f"{name:<42} {median:>9.3f} {min(times):>8.3f} {median / base:>8.2f}x")
        print(
            "\nvs plain = median seconds / plain DuckDB's median seconds; the job includes submit (validation and "
            "parse check), queueing, the worker's claim, the sandboxed connection, the result write and finalize."
        )
    except KeyboardInterrupt:
        print("\n[bench] interrupted; cleaned up", file=sys.stderr)
        sys.exit(130)
    except (BenchError, GeoetlError) as exc:
        print(f"[bench] failed: {exc}", file=sys.stderr)
        sys.exit(1)
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    main()
