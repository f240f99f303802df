"""Container inventory of 10,000 blobs: ``list_container_contents`` / ``summarize_container`` through real
workers vs a plain listing loop in one process.

The container is made of small files written straight under a local storage root. Rows:

* ``list_container_contents`` job: submit → completed (list pages → 1 task per page → fan-in writing
  ``geoetl.inventory`` with COPY and a Parquet file in gold);
* ``summarize_container`` job: submit → completed;
* the reference: a plain loop over ``BlobStore.iter_blobs`` (5,000 a page) in this process, the rows
  into one Parquet file and one COPY into a table of the same columns; and the bare listing loop alone.

Usage: ``.venv/bin/python -m bench.inventory [--blobs 10000] [--processes N] [--workers N] [--repeat N]``.
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
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bench.h3 import run_job
from bench.orchestration import (
    BenchError,
    WorkerProcesses,
    _interrupt,
    postgres_server,
    server_description,
    throwaway_database,
)
from core.errors import GeoetlError
from core.settings import AppSettings, Settings, StorageSettings
from infrastructure.context import AppContext, set_app_context
from tests.helpers.env import isolate_environment
from triggers.runtime import build_machine

CONTAINER = "bronze"


def make_blobs(root: Path, count: int) -> int:
    """``count`` small files under ``root/bronze``; their total size."""
    total = 0
    for i in range(count):
        path = root / CONTAINER / f"area{i % 20:02d}/year{2000 + i % 7}/file{i:06d}.{('tif', 'csv', 'json')[i % 3]}"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = b"b" * (i % 500)
        path.write_bytes(data)
        total += len(data)
    return total


def listing_only(ctx: AppContext) -> tuple[int, float]:
    started = time.perf_counter()
    blobs = sum(1 for _ in ctx.storage.iter_blobs(CONTAINER, page_size=5000))
    return blobs, time.perf_counter() - started


def reference(ctx: AppContext, scratch: Path, run: int) -> tuple[int, float]:
    """List everything, then one Parquet file and one COPY."""
    started = time.perf_counter()
    rows = [
        (b.name, b.size, b.content_type, b.last_modified, b.etag)
        for b in ctx.storage.iter_blobs(CONTAINER, page_size=5000)
    ]
    table = pa.table(
        {
            "name": [r[0] for r in rows],
            "size_bytes": [r[1] for r in rows],
            "content_type": [r[2] for r in rows],
            "last_modified": [r[3] for r in rows],
            "etag": [r[4] for r in rows],
        }
    )
    pq.write_table(table, scratch / f"plain-{run}.parquet", compression="zstd")
    with ctx.db.transaction() as conn:
        conn.execute(
            f"CREATE TABLE public.plain_inventory_{run} (name text PRIMARY KEY, size_bytes bigint, content_type text,"
            " last_modified timestamptz, etag text)"
        )
        with conn.cursor().copy(f"COPY public.plain_inventory_{run} FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    return len(rows), time.perf_counter() - started


def median(repeat: int, fn: Callable[[int], float]) -> float:
    return statistics.median(fn(i) for i in range(repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blobs", type=int, default=10_000, help="blobs in the container (default 10,000)")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1, help="worker processes (default: CPUs)")
    parser.add_argument("--workers", type=int, default=2, help="worker threads per queue per process (default 2)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each row; the median is shown (default 3)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds one job may take (default 900)")
    args = parser.parse_args()

    isolate_environment()
    previous = signal.signal(signal.SIGTERM, _interrupt)
    scratch = Path(tempfile.mkdtemp(prefix="geoetl-bench-inventory-"))
    try:
        root = scratch / "storage"
        print(f"[bench] writing {args.blobs:,} blobs", flush=True)
        total_bytes = make_blobs(root, args.blobs)
        with postgres_server() as server, throwaway_database(server) as dbs:
            storage = StorageSettings(storage_backend="local", storage_local_root=root)
            ctx = AppContext(Settings(database=dbs, storage=storage, app=AppSettings(log_level="WARNING")))
            set_app_context(ctx)
            workers = WorkerProcesses(dbs, root, scratch, args.processes, args.workers)
            try:
                for container in storage.containers:
                    ctx.storage.ensure_container(container)
                machine = build_machine(ctx)
                workers.start()
                print("[bench] warm-up", flush=True)
                run_job(ctx, machine, workers, "summarize_container", {"container_name": "gold"}, args.timeout)

                def job(job_type: str, extra: dict[str, object]) -> Callable[[int], float]:
                    def once(i: int) -> float:
                        # a distinct file_limit per run makes a distinct job (same blobs: the limit is not reached)
                        params = {"container_name": CONTAINER, "file_limit": 10 * args.blobs + i, **extra}
                        result, wall = run_job(ctx, machine, workers, job_type, params, args.timeout)
                        if result["blobs"] != args.blobs or result["total_bytes"] != total_bytes:
                            raise BenchError(f"{job_type} counted {result['blobs']} blobs / {result['total_bytes']} B")
                        return wall

                    return once

                print(f"[bench] list_container_contents x{args.repeat}", flush=True)
                listed = median(args.repeat, job("list_container_contents", {}))
                print(f"[bench] summarize_container x{args.repeat}", flush=True)
                summarized = median(args.repeat, job("summarize_container", {}))
                print(f"[bench] plain loops x{args.repeat}", flush=True)
                plain = median(args.repeat, lambda i: reference(ctx, scratch, i)[1])
                bare = median(args.repeat, lambda i: listing_only(ctx)[1])
                title = (
                    f"Inventory of {args.blobs:,} blobs (local storage), medians of {args.repeat}; {args.processes} "
                    f"worker process(es) x {args.workers} thread(s); {server_description(dbs)}; {os.cpu_count()} CPU(s)"
                )
                print(f"\n{title}\n")
                print(f"{'what':<60} {'seconds':>8} {'blobs/s':>9} {'vs plain':>9}")
                for name, seconds in (
                    ("list_container_contents job (DB table + Parquet)", listed),
                    ("summarize_container job", summarized),
                    ("reference: plain listing loop + Parquet + one COPY", plain),
                    ("reference: plain listing loop only", bare),
                ):
                    print(f"{name:<60} {seconds:>8.2f} {args.blobs / seconds:>9,.0f} {seconds / plain:>8.2f}x")
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
