"""H3 resolution-4 grid: ``generate_h3_level4`` through real workers vs a plain single-process h3 + COPY script.

Rows (each makes the same 288,122 rows, indexes them and runs ANALYZE on a throwaway database):

* ``generate_h3_level4`` job: submit → completed through ``--workers-only`` processes (prepare, 122 load
  tasks each COPYing one resolution-0 parent's cells, finish with GiST index + ANALYZE);
* the same services in this process, one parent after the other (no orchestration);
* the reference: a plain script, h3 boundaries → EWKT polygons (no antimeridian or pole handling) → one
  COPY (per-cell shapely objects were 3x slower still), then the same indexes and ANALYZE.

Usage: ``.venv/bin/python -m bench.h3 [--processes N] [--workers N] [--repeat N]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h3

from bench.orchestration import (
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
from core.settings import AppSettings, Settings, StorageSettings
from infrastructure.context import AppContext, set_app_context
from infrastructure.db.database import Database
from services.h3 import cells, grid
from tests.helpers.env import isolate_environment
from triggers.runtime import build_machine

CELLS = 288_122


def run_job(
    ctx: AppContext,
    machine: CoreMachine,
    workers: WorkerProcesses | None,
    job_type: str,
    params: dict[str, Any],
    timeout: float,
) -> tuple[dict[str, Any], float]:
    """Submit a job and wait for it: (result_data, wall seconds from submit to completed)."""
    started = time.perf_counter()
    job_id = machine.submit(job_type, params).job.job_id
    while True:
        row = ctx.job_store.job(job_id)
        assert row is not None
        status = JobStatus(row["status"])
        if status == JobStatus.COMPLETED:
            wall = time.perf_counter() - started
            done = ctx.db.fetch_one("SELECT result_data FROM geoetl.jobs WHERE job_id = %s", (job_id,))
            assert done is not None
            return dict(done["result_data"]), wall
        if status.terminal:
            raise BenchError(f"{job_type} job {job_id} is {status}: {row['error_details']}")
        if time.perf_counter() - started > timeout:
            raise BenchError(f"{job_type} job {job_id} still {status} after {timeout:.0f} s")
        if workers is not None:
            workers.check()
        time.sleep(0.02)


def in_process(db: Database, table: str) -> float:
    started = time.perf_counter()
    job_id = uuid.uuid4().hex * 2
    with db.transaction() as conn:
        grid.prepare_table(conn, table, job_id, replace=False)
    for parent in cells.res0_cells():
        with db.transaction() as conn:
            grid.load_cells(conn, table, job_id, [parent], [4])
    with db.transaction() as conn:
        stats = grid.finish_table(conn, table, job_id)
    if stats["cells"] != CELLS:
        raise BenchError(f"in-process load made {stats['cells']} cells")
    return time.perf_counter() - started


def reference(db: Database, table: str) -> float:
    """A plain script: every res-4 cell as a shapely polygon straight from its boundary, one COPY."""
    started = time.perf_counter()
    with db.transaction(statement_timeout_ms=0) as conn:
        conn.execute(
            f"CREATE TABLE h3.{table} (h3_index text PRIMARY KEY, h3_int bigint NOT NULL, resolution smallint NOT NULL,"
            " parent_index text, geom geometry(MultiPolygon, 4326) NOT NULL)"
        )
        with conn.cursor().copy(f"COPY h3.{table} (h3_index, h3_int, resolution, parent_index, geom) FROM STDIN") as cp:
            for parent in h3.get_res0_cells():
                lines = []
                for cell in h3.cell_to_children(parent, 4):
                    ring = h3.cell_to_boundary(cell)
                    points = ",".join(f"{lng} {lat}" for lat, lng in (*ring, ring[0]))
                    wkt = f"SRID=4326;MULTIPOLYGON((({points})))"
                    lines.append(f"{cell}\t{h3.str_to_int(cell)}\t4\t{h3.cell_to_parent(cell, 3)}\t{wkt}\n")
                cp.write("".join(lines))
        conn.execute(f"CREATE INDEX ON h3.{table} USING gist (geom)")
        conn.execute(f"CREATE INDEX ON h3.{table} (h3_int)")
        conn.execute(f"ANALYZE h3.{table}")
        row = conn.execute(f"SELECT count(*) AS n FROM h3.{table}").fetchone()
    if row is None or row["n"] != CELLS:
        raise BenchError(f"the reference made {row} cells")
    return time.perf_counter() - started


def median_of(repeat: int, fn: Callable[[int], float]) -> float:
    return statistics.median(fn(i) for i in range(repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1, help="worker processes (default: CPUs)")
    parser.add_argument("--workers", type=int, default=2, help="worker threads per queue per process (default 2)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each row; the median is shown (default 3)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds one job may take (default 900)")
    args = parser.parse_args()

    isolate_environment()
    previous = signal.signal(signal.SIGTERM, _interrupt)
    scratch = Path(tempfile.mkdtemp(prefix="geoetl-bench-h3-"))
    try:
        with postgres_server() as server, throwaway_database(server) as dbs:
            storage = StorageSettings(storage_backend="local", storage_local_root=scratch / "storage")
            ctx = AppContext(Settings(database=dbs, storage=storage, app=AppSettings(log_level="WARNING")))
            set_app_context(ctx)
            workers = WorkerProcesses(dbs, storage.storage_local_root, scratch, args.processes, args.workers)
            try:
                for container in storage.containers:
                    ctx.storage.ensure_container(container)
                machine = build_machine(ctx)
                workers.start()
                print("[bench] warm-up: create_h3_base", flush=True)
                run_job(ctx, machine, workers, "create_h3_base", {"max_resolution": 2}, args.timeout)

                def job(i: int) -> float:
                    result, wall = run_job(
                        ctx, machine, workers, "generate_h3_level4", {"table": f"job_{i}"}, args.timeout
                    )
                    if result["cells"] != CELLS or result["load_tasks"] != 122:
                        raise BenchError(f"generate_h3_level4 made {result}")
                    return wall

                print(f"[bench] generate_h3_level4 x{args.repeat}", flush=True)
                ours = median_of(args.repeat, job)
                print(f"[bench] services in process x{args.repeat}", flush=True)
                local = median_of(args.repeat, lambda i: in_process(ctx.db, f"local_{i}"))
                print(f"[bench] plain h3 + COPY script x{args.repeat}", flush=True)
                plain = median_of(args.repeat, lambda i: reference(ctx.db, f"plain_{i}"))
                title = (
                    f"H3 resolution 4 ({CELLS:,} cells), medians of {args.repeat}; {args.processes} worker "
                    f"process(es) x {args.workers} thread(s); {server_description(dbs)}; {os.cpu_count()} CPU(s)"
                )
                print(f"\n{title}\n")
                print(f"{'what':<52} {'seconds':>8} {'cells/s':>9} {'vs plain':>9}")
                for name, seconds in (
                    ("generate_h3_level4 job (122 tasks, workers)", ours),
                    ("same services in one process (no orchestration)", local),
                    ("reference: plain h3 + WKT + one COPY", plain),
                ):
                    print(f"{name:<52} {seconds:>8.2f} {CELLS / seconds:>9,.0f} {seconds / plain:>8.2f}x")
                print(
                    "\nours also splits antimeridian cells at ±180 and closes pole cells (the plain script's "
                    "polygons for those cells wrap the globe); both build the same indexes and ANALYZE."
                )
            finally:
                workers.stop()
                set_app_context(None)
                ctx.close()
    except KeyboardInterrupt:
        print("\n[bench] interrupted; cleaned up", file=sys.stderr)
        sys.exit(130)
    except (BenchError, GeoetlError) as exc:
        print(f"[bench] failed: {exc}", file=sys.stderr)
        sys.exit(1)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    main()
