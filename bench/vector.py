"""Vector loading: ``ingest_vector`` end to end next to ``ogr2ogr -f PostgreSQL`` on the same file and database.

Generates two GeoPackages (1,000,000 points with 4 attributes; 100,000 polygons of 33 vertices with 3
attributes), then loads each one with ``ingest_vector`` through the CoreMachine and real worker processes
(``python -m triggers.localhost --workers-only``) over a throwaway database on the private PostgreSQL
cluster, and with ``ogr2ogr -f PostgreSQL`` (Debian ``gdal-bin``, installed with apt-get when missing)
into the same database. Both produce a Multi* geometry table in EPSG:4326 with a primary key and a GIST
index. Prints seconds, features per second and the ratio. Usage:
``.venv/bin/python -m bench.vector [--points 1000000] [--polygons 100000] [--processes 2] [--workers 2]
[--invalid-every 0]`` (``--invalid-every 100``: every 100th polygon an invalid bow tie, repaired by ingest_vector).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyogrio
import shapely

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
from core.settings import AppSettings, DatabaseSettings, Settings, StorageSettings
from infrastructure.context import AppContext, set_app_context
from tests.helpers.env import isolate_environment
from triggers.runtime import build_machine

POLL_SECONDS = 0.01


def generate_points(path: Path, n: int) -> Path:
    rng = np.random.default_rng(42)
    xs, ys = rng.uniform(-180, 180, n), rng.uniform(-85, 85, n)
    table = pa.table(
        {
            "id": pa.array(np.arange(n, dtype=np.int64)),
            "value": pa.array(rng.uniform(0, 1000, n)),
            "name": pa.array([f"feature {i}" for i in range(n)]),
            "category": pa.array((np.arange(n) % 17).astype(np.int32)),
            "geometry": pa.array(shapely.to_wkb(shapely.points(xs, ys)), pa.binary()),
        }
    )
    pyogrio.write_arrow(
        table, path, layer="points", driver="GPKG", geometry_name="geometry", geometry_type="Point", crs="EPSG:4326"
    )
    return path


def generate_polygons(path: Path, n: int, invalid_every: int = 0) -> Path:
    rng = np.random.default_rng(7)
    xs, ys = rng.uniform(-170, 170, n), rng.uniform(-80, 80, n)
    radii = rng.uniform(0.01, 0.2, n)
    polygons = shapely.buffer(shapely.points(xs, ys), radii, quad_segs=8)  # 33 vertices each
    if invalid_every > 0:  # every n-th polygon a self-intersecting "bow tie" (invalid: repaired by both loaders)
        k = np.arange(0, n, invalid_every)
        x, y, r = xs[k, None], ys[k, None], radii[k, None]
        corners = np.stack([x + r * np.array([-1, 1, 1, -1, -1]), y + r * np.array([-1, 1, -1, 1, -1])], axis=-1)
        polygons[k] = shapely.polygons(corners)
    table = pa.table(
        {
            "id": pa.array(np.arange(n, dtype=np.int64)),
            "area_class": pa.array((np.arange(n) % 5).astype(np.int32)),
            "label": pa.array([f"parcel {i}" for i in range(n)]),
            "geometry": pa.array(shapely.to_wkb(polygons), pa.binary()),
        }
    )
    pyogrio.write_arrow(
        table, path, layer="polygons", driver="GPKG", geometry_name="geometry", geometry_type="Polygon", crs="EPSG:4326"
    )
    return path


def ensure_ogr2ogr() -> str:
    found = shutil.which("ogr2ogr")
    if found:
        return found
    print("[bench] ogr2ogr missing: apt-get install -y gdal-bin", flush=True)
    subprocess.run(["apt-get", "install", "-y", "gdal-bin"], check=True, stdout=subprocess.DEVNULL)
    found = shutil.which("ogr2ogr")
    if not found:
        raise BenchError("ogr2ogr is still missing after installing gdal-bin")
    return found


def ogr2ogr_version(binary: str) -> str:
    return subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout.strip()


def run_ogr2ogr(binary: str, db: DatabaseSettings, path: Path, table: str, *, make_valid: bool = False) -> float:
    conninfo = f"PG:host={db.host} port={db.pgport} dbname={db.pgdatabase} user={db.pguser}"
    command = [
        binary, "-f", "PostgreSQL", conninfo, str(path),
        "-nln", f"geo.{table}", "-nlt", "PROMOTE_TO_MULTI", "-t_srs", "EPSG:4326",
        "-lco", "GEOMETRY_NAME=geom", "-lco", "SPATIAL_INDEX=GIST", "-lco", "FID=gid",
        "--config", "PG_USE_COPY", "YES",
    ]  # fmt: skip
    if make_valid:
        command.append("-makevalid")  # repairs geometries as ingest_vector does (GEOS MakeValid on each)
    env = dict(os.environ)
    if db.pgpassword is not None:
        env["PGPASSWORD"] = db.pgpassword.get_secret_value()
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise BenchError(f"ogr2ogr failed: {done.stderr.strip()[-2000:]}")
    return elapsed


def run_ingest(
    ctx: AppContext, machine: CoreMachine, workers: WorkerProcesses, blob: str, table: str, timeout: float
) -> tuple[float, dict[str, object]]:
    started = time.perf_counter()
    job_id = machine.submit("ingest_vector", {"blob_name": blob, "table_name": table}).job.job_id
    while True:
        row = ctx.job_store.job(job_id)
        assert row is not None
        status = JobStatus(row["status"])
        if status == JobStatus.COMPLETED:
            return time.perf_counter() - started, dict(row["result_data"] or {})
        if status.terminal:
            raise BenchError(f"ingest_vector {blob} is {status}: {row['error_details']}")
        if time.perf_counter() - started > timeout:
            raise BenchError(f"ingest_vector {blob} still {status} after {timeout:.0f} s")
        workers.check()
        time.sleep(POLL_SECONDS)


def count_rows(ctx: AppContext, table: str) -> int:
    row = ctx.db.fetch_one(f"SELECT count(*) AS n FROM geo.{table}")  # bench-made names only
    assert row is not None
    return int(row["n"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=1_000_000, help="points in the point file (default 1,000,000)")
    parser.add_argument("--polygons", type=int, default=100_000, help="polygons in the polygon file (default 100,000)")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1, help="worker processes (default: CPUs)")
    parser.add_argument("--workers", type=int, default=2, help="worker threads per queue per process (default 2)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds one load may take (default 1800)")
    parser.add_argument(
        "--invalid-every",
        type=int,
        default=0,
        help="make every n-th polygon an invalid bow tie, which ingest_vector repairs (default 0: all valid)",
    )
    parser.add_argument(
        "--unlogged", action="store_true", help="load into UNLOGGED staging tables (VECTOR_UNLOGGED_LOAD=true)"
    )
    args = parser.parse_args()

    isolate_environment()
    if args.unlogged:
        os.environ["VECTOR_UNLOGGED_LOAD"] = "true"  # the worker processes inherit it
    previous = signal.signal(signal.SIGTERM, _interrupt)
    scratch = Path(tempfile.mkdtemp(prefix="geoetl-bench-vector-"))
    try:
        ogr2ogr = ensure_ogr2ogr()
        files = scratch / "files"
        files.mkdir()
        invalid = f", every {args.invalid_every}th invalid" if args.invalid_every > 0 else ""
        print(
            f"[bench] generating {args.points:,} points and {args.polygons:,} polygons{invalid} (GeoPackage)",
            flush=True,
        )
        inputs = [
            ("points", generate_points(files / "points.gpkg", args.points), args.points),
            ("polygons", generate_polygons(files / "polygons.gpkg", args.polygons, args.invalid_every), args.polygons),
        ]
        warm = generate_points(files / "warm.gpkg", 2000)
        with postgres_server() as server, throwaway_database(server) as db:
            storage = StorageSettings(storage_backend="local", storage_local_root=scratch / "storage")
            ctx = AppContext(Settings(database=db, storage=storage, app=AppSettings(log_level="WARNING")))
            workers = WorkerProcesses(db, storage.storage_local_root, scratch, args.processes, args.workers)
            set_app_context(ctx)  # submit-time checks (validate_submission) use the process context
            try:
                for container in storage.containers:
                    ctx.storage.ensure_container(container)
                for _, path, _ in [*inputs, ("warm", warm, 0)]:
                    ctx.storage.upload_file("bronze", f"bench/{path.name}", path)
                machine = build_machine(ctx)
                print(f"[bench] starting {args.processes} worker process(es), {args.workers} per queue", flush=True)
                workers.start()
                for i in range(args.processes * 2):  # every process imports and connects before timing
                    run_ingest(
                        ctx, machine, workers, "bench/warm.gpkg", f"warm_{i}_{uuid.uuid4().hex[:6]}", args.timeout
                    )
                results = []
                for kind, path, n in inputs:
                    print(f"[bench] ogr2ogr {path.name}", flush=True)
                    ref = run_ogr2ogr(ogr2ogr, db, path, f"ref_{kind}")
                    if count_rows(ctx, f"ref_{kind}") != n:
                        raise BenchError(f"ogr2ogr loaded {count_rows(ctx, f'ref_{kind}')} rows, expected {n}")
                    print(f"[bench] ogr2ogr -makevalid {path.name}", flush=True)
                    ref_valid = run_ogr2ogr(ogr2ogr, db, path, f"refv_{kind}", make_valid=True)
                    print(f"[bench] ingest_vector {path.name}", flush=True)
                    ours, result = run_ingest(ctx, machine, workers, f"bench/{path.name}", f"ours_{kind}", args.timeout)
                    if count_rows(ctx, f"ours_{kind}") != n:
                        raise BenchError(f"ingest_vector loaded {count_rows(ctx, f'ours_{kind}')} rows, expected {n}")
                    results.append((kind, n, ours, ref, ref_valid, result))
                print(
                    f"\nVector load into PostGIS (GeoPackage in, Multi* EPSG:4326 table with primary key and GIST "
                    f"index out{'; UNLOGGED staging' if args.unlogged else ''}); "
                    f"{args.processes} worker process(es) x {args.workers} thread(s) per queue; "
                    f"{server_description(db)}; {os.cpu_count()} CPU(s); reference {ogr2ogr_version(ogr2ogr)}\n"
                )
                print(
                    f"{'file':>9} {'features':>10} {'chunks':>6} {'ours s':>7} {'ours feat/s':>11} "
                    f"{'ogr2ogr s':>9} {'ogr feat/s':>10} {'speed-up':>8} "
                    f"{'-makevalid s':>12} {'feat/s':>8} {'speed-up':>8}   ours: prepare / load (sum) / finalize s"
                )
                for kind, n, ours, ref, ref_valid, result in results:
                    seconds = result.get("seconds", {})
                    assert isinstance(seconds, dict)
                    print(
                        f"{kind:>9} {n:>10,} {result.get('chunks', 0):>6} {ours:>7.2f} {n / ours:>11,.0f} "
                        f"{ref:>9.2f} {n / ref:>10,.0f} {ref / ours:>7.2f}x "
                        f"{ref_valid:>12.2f} {n / ref_valid:>8,.0f} {ref_valid / ours:>7.2f}x   "
                        f"{seconds.get('prepare', 0):.2f} / {seconds.get('load_total', 0):.2f} / "
                        f"{seconds.get('finalize', 0):.2f}"
                    )
                for kind, _, _, _, _, result in results:
                    seconds = result.get("seconds", {})
                    assert isinstance(seconds, dict)
                    print(f"{kind} prepare steps (s): {seconds.get('prepare_steps')}")
                    print(f"{kind} finalize steps (s): {seconds.get('finalize_steps')}")
                print(
                    "\nspeed-up = ogr2ogr seconds / ingest_vector seconds (submit → completed, all stages); "
                    "-makevalid: ogr2ogr repairing every geometry (ingest_vector checks each and repairs the invalid)"
                )
            finally:
                workers.stop()
                ctx.close()
    except KeyboardInterrupt:
        print("\n[bench] interrupted; cleaned up", file=sys.stderr)
        sys.exit(130)
    except (BenchError, GeoetlError, subprocess.CalledProcessError) as exc:
        print(f"[bench] failed: {exc}", file=sys.stderr)
        sys.exit(1)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    main()
