"""process_raster per tier on large generated rasters, next to ``rio cogeo create`` and ``gdal_translate -of COG``.

Generates an RGB uint8 raster (default 8192 x 8192) and a float32 DEM with nodata (default 6144 x 6144),
LZW-compressed tiled GeoTIFFs as a provider would deliver them. For each raster and tier, it measures:

* ``ours``: a ``process_raster`` job with that one tier, submitted in this process through the CoreMachine and
  run by worker processes (``python -m triggers.localhost --workers-only``, as bench/orchestration.py) over a
  throwaway database on the private cluster and local storage: wall time from submit to completed, all three
  stages (validate, cog, stac: statistics, checksum, pgstac upsert) included, with the upload into the
  run's staging folder and the copy to the published path;
  ``cog task`` is the stage-2 task alone (started → completed in the tasks table);
* ``bare``: the same conversion in this process, ``services.raster.cog.make_cog`` (rio-cogeo's
  ``cog_translate`` with the same options), no orchestration, no storage, no STAC;
* ``rio``: ``rio cogeo create`` (the venv's CLI, its GDAL) with the same settings;
* ``gdal``: ``gdal_translate -of COG`` (the system's GDAL) with the same settings. When ``gdal_translate`` is
  absent, the bench installs the ``gdal-bin`` system package with apt-get (a side effect on the machine, said
  so in its output; ``--no-install`` refuses instead).

The ratio ``ours / bare`` is the orchestration overhead (goal: under 1.20); ``ours / rio`` and ``ours / gdal``
compare with the tools a user would run by hand (their times include the CLI's start-up).
Usage: ``.venv/bin/python -m bench.raster [--size 8192] [--dem-size 6144] [--repeat 1]``.
"""

from __future__ import annotations

import argparse
import math
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.transform import Affine
from rasterio.windows import Window

from bench.orchestration import (
    BenchError,
    WorkerProcesses,
    _interrupt,
    postgres_server,
    throwaway_database,
)
from core.machine import CoreMachine
from core.models import JobStatus
from core.settings import AppSettings, Settings, StorageSettings
from infrastructure.context import AppContext, set_app_context
from services.raster.cog import make_cog
from services.raster.inspect import inspect_raster
from tests.helpers.env import isolate_environment
from triggers.runtime import build_machine

GOAL_OVERHEAD = 1.20
BLOCKSIZE = 512
ROWS_PER_WRITE = 1024
DEM_NODATA = -9999.0

# -- data ----------------------------------------------------------------------------------------


def _pattern(rows: np.ndarray, cols: np.ndarray, size: int, seed: int) -> np.ndarray:
    """A smooth field in 0..1 with a little noise, computed for a block of rows (no full-size arrays)."""
    rng = np.random.default_rng(seed)
    y = rows[:, None] / size
    x = cols[None, :] / size
    field = (
        np.sin(2 * np.pi * (3.1 * x + 1.7 * y) + seed)
        + np.sin(2 * np.pi * (0.7 * x - 2.3 * y) + 2 * seed)
        + 0.5 * np.sin(2 * np.pi * (11.0 * x * y) + seed)
    )
    field = (field + 2.5) / 5.0
    return np.clip(field + rng.normal(0, 0.02, field.shape), 0, 1)


def generate_rgb(path: Path, size: int) -> Path:
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:32633",
        "transform": Affine(1.0, 0.0, 500_000.0, 0.0, -1.0, 5_200_000.0),
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "LZW",
        "photometric": "RGB",
    }
    cols = np.arange(size)
    with rasterio.open(path, "w", **profile) as dst:
        for top in range(0, size, ROWS_PER_WRITE):
            rows = np.arange(top, min(top + ROWS_PER_WRITE, size))
            block = np.stack([(_pattern(rows, cols, size, seed) * 255).astype("uint8") for seed in (1, 2, 3)])
            dst.write(block, window=Window(0, top, size, len(rows)))
    return path


def generate_dem(path: Path, size: int) -> Path:
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 1,
        "dtype": "float32",
        "nodata": DEM_NODATA,
        "crs": "EPSG:32633",
        "transform": Affine(5.0, 0.0, 500_000.0, 0.0, -5.0, 5_200_000.0),
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "LZW",
    }
    cols = np.arange(size)
    hole = slice(size // 2 - size // 20, size // 2 + size // 20)
    with rasterio.open(path, "w", **profile) as dst:
        for top in range(0, size, ROWS_PER_WRITE):
            rows = np.arange(top, min(top + ROWS_PER_WRITE, size))
            block = (_pattern(rows, cols, size, 7) * 3000 + 200).astype("float32")
            inside = (rows >= hole.start) & (rows < hole.stop)
            block[np.ix_(inside, np.arange(hole.start, hole.stop))] = DEM_NODATA
            dst.write(block, 1, window=Window(0, top, size, len(rows)))
    return path


# -- the references ------------------------------------------------------------------------------

RIO_PROFILE = {"visualization": "jpeg", "analysis": "deflate", "archive": "lzw"}
GDAL_COMPRESS = {"visualization": "JPEG", "analysis": "DEFLATE", "archive": "LZW"}


def rio_command(source: Path, target: Path, tier: str, dtype: str) -> list[str]:
    rio = Path(sys.executable).with_name("rio")
    command = [str(rio), "cogeo", "create", str(source), str(target), "-p", RIO_PROFILE[tier], "-q"]
    command += ["--blocksize", str(BLOCKSIZE), "--overview-resampling", "average", "--threads", "ALL_CPUS"]
    if tier == "visualization":
        command += ["--co", "JPEG_QUALITY=85"]
    else:
        command += ["--co", f"PREDICTOR={3 if dtype.startswith('float') else 2}", "--forward-band-tags"]
    if tier == "archive":
        command += ["--forward-ns-tags"]
    return command


def gdal_command(gdal_translate: str, source: Path, target: Path, tier: str) -> list[str]:
    command = [gdal_translate, "-q", "-of", "COG", str(source), str(target)]
    options = [
        f"COMPRESS={GDAL_COMPRESS[tier]}",
        f"BLOCKSIZE={BLOCKSIZE}",
        "OVERVIEW_RESAMPLING=AVERAGE",
        "NUM_THREADS=ALL_CPUS",
        "BIGTIFF=IF_SAFER",
    ]
    options.append("QUALITY=85" if tier == "visualization" else "PREDICTOR=YES")  # the COG driver's names
    for option in options:
        command += ["-co", option]
    return command


def find_gdal_translate(install: bool = True) -> str:
    found = shutil.which("gdal_translate")
    if found:
        return found
    if not install:
        raise BenchError("gdal_translate not found: install gdal-bin (or run without --no-install)")
    print("[bench] gdal_translate not found: installing the gdal-bin system package (apt-get install -y)", flush=True)
    subprocess.run(["apt-get", "install", "-y", "-q", "gdal-bin"], check=True, stdout=subprocess.DEVNULL)
    found = shutil.which("gdal_translate")
    if not found:
        raise BenchError("gdal_translate is still missing after installing gdal-bin")
    return found


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise BenchError(f"{' '.join(command)} failed: {result.stderr[-2000:]}")
    return elapsed


def bare(source: Path, target: Path, tier: str) -> float:
    started = time.perf_counter()
    facts = inspect_raster(str(source))
    make_cog(str(source), target, facts.tiers[tier], raster_type=facts.raster_type, blocksize=BLOCKSIZE)
    return time.perf_counter() - started


# -- ours ----------------------------------------------------------------------------------------


@dataclass
class Ours:
    wall: float
    cog_task: float
    size: int


def run_ours(ctx: AppContext, machine: CoreMachine, workers: WorkerProcesses, blob: str, tier: str) -> Ours:
    item_id = f"bench-{uuid.uuid4().hex[:12]}"
    started = time.perf_counter()
    job_id = machine.submit("process_raster", {"blob_name": blob, "output_tier": tier, "item_id": item_id}).job.job_id
    while True:
        row = ctx.job_store.job(job_id)
        assert row is not None
        status = JobStatus(row["status"])
        if status is JobStatus.COMPLETED:
            wall = time.perf_counter() - started
            break
        if status.terminal:
            raise BenchError(f"process_raster {tier} on {blob}: {status}: {row['error_details']}")
        workers.check()
        time.sleep(0.02)
    task = ctx.db.fetch_one(
        "SELECT extract(epoch FROM completed_at - started_at) AS seconds FROM geoetl.tasks "
        "WHERE job_id = %s AND stage = 2",
        (job_id,),
    )
    assert task is not None and row is not None
    result: dict[str, Any] = row["result_data"]
    return Ours(wall, float(task["seconds"]), int(result["total_size"]))


def warm_up(ctx: AppContext, machine: CoreMachine, workers: WorkerProcesses, scratch: Path) -> None:
    """One small job, so that the worker processes have imported everything before the clock runs."""
    small = generate_rgb(scratch / "warm.tif", 512)
    ctx.storage.upload_file("bronze", "bench/warm.tif", small)
    run_ours(ctx, machine, workers, "bench/warm.tif", "analysis")


# -- the run -------------------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=8192, help="side of the RGB raster in pixels (default 8192)")
    parser.add_argument("--dem-size", type=int, default=6144, help="side of the float32 DEM (default 6144)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each measurement; the median is shown")
    parser.add_argument("--workers", type=int, default=2, help="worker threads per queue (one worker process)")
    parser.add_argument(
        "--no-install", action="store_true", help="fail instead of installing gdal-bin when gdal_translate is absent"
    )
    args = parser.parse_args()

    isolate_environment()
    previous = signal.signal(signal.SIGTERM, _interrupt)
    scratch = Path(tempfile.mkdtemp(prefix="geoetl-bench-raster-"))
    try:
        gdal_translate = find_gdal_translate(install=not args.no_install)
        gdal_version = subprocess.run([gdal_translate, "--version"], capture_output=True, text=True).stdout.strip()
        print(f"[bench] generating rasters in {scratch}", flush=True)
        sources = {
            "rgb": generate_rgb(scratch / "rgb.tif", args.size),
            "dem": generate_dem(scratch / "dem.tif", args.dem_size),
        }
        plans = {"rgb": ("visualization", "analysis", "archive"), "dem": ("analysis", "archive")}
        with postgres_server() as server, throwaway_database(server) as db:
            storage = StorageSettings(storage_backend="local", storage_local_root=scratch / "storage")
            ctx = AppContext(Settings(database=db, storage=storage, app=AppSettings(log_level="WARNING")))
            set_app_context(ctx)  # validate_submission checks the blob in the process's storage
            workers = WorkerProcesses(db, storage.storage_local_root, scratch, 1, args.workers)
            try:
                for container in storage.containers:
                    ctx.storage.ensure_container(container)
                ctx.storage.ensure_container("bronze")
                ctx.storage.ensure_container("silver")
                for name, path in sources.items():
                    ctx.storage.upload_file("bronze", f"bench/{name}.tif", path)
                machine = build_machine(ctx)
                workers.start()
                warm_up(ctx, machine, workers, scratch)
                rows = []
                for name, tiers in plans.items():
                    source = sources[name]
                    with rasterio.open(source) as dataset:
                        dtype, shape = dataset.dtypes[0], f"{dataset.width}x{dataset.height}x{dataset.count}"
                    for tier in tiers:
                        print(f"[bench] {name} {tier}", flush=True)
                        ours, rio, gdal, bares = [], [], [], []
                        for _ in range(args.repeat):
                            ours.append(run_ours(ctx, machine, workers, f"bench/{name}.tif", tier))
                            bares.append(bare(source, scratch / f"bare_{name}_{tier}.tif", tier))
                            rio.append(timed(rio_command(source, scratch / f"rio_{name}_{tier}.tif", tier, dtype)))
                            gdal.append(
                                timed(gdal_command(gdal_translate, source, scratch / f"gdal_{name}_{tier}.tif", tier))
                            )
                        rows.append(
                            (
                                name,
                                shape,
                                dtype,
                                tier,
                                _median([o.wall for o in ours]),
                                _median([o.cog_task for o in ours]),
                                _median(bares),
                                _median(rio),
                                _median(gdal),
                                ours[-1].size,
                                (scratch / f"rio_{name}_{tier}.tif").stat().st_size,
                                (scratch / f"gdal_{name}_{tier}.tif").stat().st_size,
                            )
                        )
            finally:
                workers.stop()
                ctx.close()
        print_table(rows, gdal_version, args)
    finally:
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(scratch, ignore_errors=True)


def print_table(rows: list[tuple[Any, ...]], gdal_version: str, args: argparse.Namespace) -> None:
    print()
    print(
        f"process_raster vs rio cogeo / gdal_translate (median of {args.repeat}; one worker process, "
        f"{args.workers} threads per queue; rasterio's GDAL {rasterio.__gdal_version__}, CLI {gdal_version})"
    )
    print()
    header = (
        f"{'raster':<6} {'pixels':<15} {'dtype':<8} {'tier':<13} {'ours s':>7} {'cog task':>8} {'bare s':>7} "
        f"{'rio s':>7} {'gdal s':>7} | {'ours/bare':>9} {'ours/rio':>8} {'ours/gdal':>9} | "
        f"{'ours MB':>8} {'rio MB':>7} {'gdal MB':>8}"
    )
    print(header)
    print("-" * len(header))
    overheads = []
    for name, shape, dtype, tier, wall, task, bare_s, rio_s, gdal_s, size, rio_size, gdal_size in rows:
        overheads.append(wall / bare_s)
        print(
            f"{name:<6} {shape:<15} {dtype:<8} {tier:<13} {wall:>7.2f} {task:>8.2f} {bare_s:>7.2f} "
            f"{rio_s:>7.2f} {gdal_s:>7.2f} | {wall / bare_s:>8.2f}x {wall / rio_s:>7.2f}x {wall / gdal_s:>8.2f}x | "
            f"{size / 1e6:>8.1f} {rio_size / 1e6:>7.1f} {gdal_size / 1e6:>8.1f}"
        )
    total = sum(r[4] for r in rows) / sum(r[6] for r in rows)
    print()
    print(
        f"orchestration overhead (ours / bare conversion), all tiers: {total:.2f}x, worst tier "
        f"{max(overheads):.2f}x (goal < {GOAL_OVERHEAD:.2f}: {'met' if total < GOAL_OVERHEAD else 'NOT met'})"
    )
    print(
        "ours = submit → job completed (validate, COG, checksum + statistics, upload to the run's staging folder, "
        "copy to the published path, pgstac upsert); "
        "cog task = the stage-2 task alone; bare = the same rio-cogeo conversion in-process; "
        "rio / gdal = the CLIs with the same compression, predictor, quality, 512 tiles and average overviews"
    )
    if not math.isfinite(total):
        raise BenchError("no measurements")


if __name__ == "__main__":
    main()
