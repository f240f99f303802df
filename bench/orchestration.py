"""Orchestration overhead: no-op ``hello_world`` tasks end to end through real queue workers, vs a bare queue.

For each size n, ``hello_world`` (n stage-1 tasks, then n stage-2 tasks: 2n
no-op tasks) is submitted in this process through the CoreMachine and run by
worker processes (``python -m triggers.localhost --workers-only``) over a
throwaway database on the private PostgreSQL cluster (started if needed).
Prints, per size: wall seconds from submit to completed, tasks/s, ms per task,
and the stage-transition latency (last stage-1 completion → stage 2 planned,
and → first stage-2 task claimed). The reference pushes the same number of
no-op rows through the bare minimum on the same database: a plain table, the
same number of threads each claiming and deleting one row per transaction with
``FOR UPDATE SKIP LOCKED``. Usage:
``.venv/bin/python -m bench.orchestration [--sizes 100,1000,10000] [--processes 1] [--workers 4]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from psycopg import sql

from core.errors import GeoetlError
from core.machine import CoreMachine
from core.models import JobStatus
from core.settings import PROJECT_ROOT, AppSettings, DatabaseSettings, Settings, StorageSettings
from devstack.stack import embedded_cluster, ensure_database, start_postgres
from infrastructure.context import AppContext
from infrastructure.db.database import connect
from infrastructure.db.setup import setup_database
from tests.helpers.env import isolate_environment
from triggers.runtime import build_machine

JOB_TYPE = "hello_world"
GOAL_SCALING = 1.5  # seconds per task at the largest size / at the smallest
GOAL_TASKS_PER_SECOND = 1000.0
POLL_SECONDS = 0.01

CLAIM_ONE = (
    "DELETE FROM bench_queue WHERE id = "
    "(SELECT id FROM bench_queue ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id"
)


class BenchError(RuntimeError):
    pass


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


# --- the throwaway database ---------------------------------------------------------------------


def _with_db(settings: DatabaseSettings, name: str) -> DatabaseSettings:
    return DatabaseSettings(**{**settings.model_dump(), "pgdatabase": name})


def create_database(server: DatabaseSettings) -> DatabaseSettings:
    name = f"geoetl_bench_{uuid.uuid4().hex[:10]}"
    with connect(_with_db(server, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return _with_db(server, name)


def drop_database(server: DatabaseSettings, name: str) -> None:
    with connect(_with_db(server, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def server_description(db: DatabaseSettings) -> str:
    with connect(db) as conn:
        row = conn.execute("SELECT current_setting('server_version'), current_setting('synchronous_commit')").fetchone()
    assert row is not None
    return f"PostgreSQL {row[0]} on {db.host}:{db.pgport} (synchronous_commit={row[1]})"


# --- worker processes ---------------------------------------------------------------------------


class WorkerProcesses:
    """``python -m triggers.localhost --workers-only`` processes over the throwaway database."""

    def __init__(self, db: DatabaseSettings, storage_root: Path, log_dir: Path, processes: int, threads: int) -> None:
        self.db, self.storage_root, self.log_dir = db, storage_root, log_dir
        self.count, self.threads = processes, threads
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def pool_size(self) -> int:
        """Enough pooled connections for every worker thread of both queues, so the pool is not the limit."""
        return max(10, 2 * self.threads + 2)

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            PGHOST=self.db.host,
            PGPORT=str(self.db.pgport),
            PGDATABASE=self.db.pgdatabase,
            PGUSER=self.db.pguser,
            PG_POOL_MAX_SIZE=str(self.pool_size),
            # the same choice the benchmark's own connection made (PGHOST set here would turn 'auto' off)
            PG_PREPARED_STATEMENTS="on" if self.db.prepared_statements else "off",
            QUEUE_BACKEND="postgres",
            STORAGE_BACKEND="local",
            STORAGE_LOCAL_ROOT=str(self.storage_root),
            LOCAL_HOST_WORKERS=str(self.threads),
            LOCAL_HOST_TIMERS="false",
            LOG_LEVEL="WARNING",
            LOCAL_SETTINGS_FILE="none",
        )
        return env

    def start(self) -> None:
        env = self.environment()
        for i in range(self.count):
            with (self.log_dir / f"worker-{i}.log").open("wb") as log:
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "triggers.localhost", "--workers-only"],
                        cwd=PROJECT_ROOT,
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,  # Ctrl-C reaches the benchmark, which stops them itself
                    )
                )

    @property
    def pids(self) -> set[int]:
        return {p.pid for p in self.procs}

    def check(self) -> None:
        """Raise with the worker's output when one of them has exited."""
        for i, proc in enumerate(self.procs):
            code = proc.poll()
            if code is not None:
                tail = (self.log_dir / f"worker-{i}.log").read_text(errors="replace").splitlines()[-30:]
                raise BenchError(f"worker process {proc.pid} exited with {code}:\n" + "\n".join(tail))

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()  # SIGTERM: the local host stops its workers and exits
        deadline = time.monotonic() + 20
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs = []


# --- the orchestrator ---------------------------------------------------------------------------


@dataclass
class Measured:
    n: int
    tasks: int
    wall: float  # submit → completed seen, seconds
    planned_ms: float  # last stage-1 completed_at → stage 2 planned_at
    first_claim_ms: float  # last stage-1 completed_at → first stage-2 task started_at

    @property
    def per_task(self) -> float:
        return self.wall / self.tasks


def run_job(
    ctx: AppContext, machine: CoreMachine, workers: WorkerProcesses, n: int, timeout: float
) -> tuple[str, float]:
    """Submit hello_world with ``n`` and wait until it has completed: (job id, wall seconds)."""
    started = time.perf_counter()
    job_id = machine.submit(JOB_TYPE, {"n": n, "message": f"bench {uuid.uuid4().hex}"}).job.job_id
    while True:
        row = ctx.job_store.job(job_id)
        assert row is not None
        status = JobStatus(row["status"])
        if status == JobStatus.COMPLETED:
            return job_id, time.perf_counter() - started
        if status.terminal:
            raise BenchError(f"job {job_id} (n={n}) is {status}: {row['error_details']}")
        if time.perf_counter() - started > timeout:
            raise BenchError(f"job {job_id} (n={n}) still {status} after {timeout:.0f} s")
        workers.check()
        time.sleep(POLL_SECONDS)


def _ms(later: datetime | None, earlier: datetime | None) -> float:
    if later is None or earlier is None:
        return float("nan")
    return (later - earlier).total_seconds() * 1000


def measure(ctx: AppContext, machine: CoreMachine, workers: WorkerProcesses, n: int, timeout: float) -> Measured:
    job_id, wall = run_job(ctx, machine, workers, n, timeout)
    row = ctx.db.fetch_one(
        "SELECT (SELECT count(*) FROM geoetl.tasks WHERE job_id = %(job)s AND status = 'completed') AS completed, "
        "(SELECT max(completed_at) FROM geoetl.tasks WHERE job_id = %(job)s AND stage = 1) AS s1_done, "
        "(SELECT planned_at FROM geoetl.stages WHERE job_id = %(job)s AND stage = 2) AS s2_planned, "
        "(SELECT min(started_at) FROM geoetl.tasks WHERE job_id = %(job)s AND stage = 2) AS s2_first_claim",
        {"job": job_id},
    )
    assert row is not None
    if row["completed"] != 2 * n:
        raise BenchError(f"job {job_id} completed with {row['completed']} completed tasks, expected {2 * n}")
    return Measured(n, 2 * n, wall, _ms(row["s2_planned"], row["s1_done"]), _ms(row["s2_first_claim"], row["s1_done"]))


def warm_up(ctx: AppContext, machine: CoreMachine, workers: WorkerProcesses, timeout: float = 120.0) -> None:
    """Run small jobs until every worker process has run a task (imports done, pools open)."""
    deadline = time.monotonic() + timeout
    seen: set[int] = set()
    while workers.pids - seen:
        if time.monotonic() > deadline:
            raise BenchError(f"worker processes {sorted(workers.pids - seen)} ran no task in {timeout:.0f} s")
        job_id, _ = run_job(ctx, machine, workers, 20 * workers.count * workers.threads, timeout)
        with ctx.db.transaction() as conn:
            rows = conn.execute(
                "SELECT DISTINCT split_part(worker, ':', -2)::int AS pid FROM geoetl.tasks WHERE job_id = %s",
                (job_id,),
            ).fetchall()
        seen |= {int(r["pid"]) for r in rows}


# --- the reference: a bare SKIP LOCKED queue ----------------------------------------------------


def reference(db: DatabaseSettings, tasks: int, threads: int) -> float:
    """Seconds to insert ``tasks`` rows and drain them with ``threads`` threads, one row per transaction."""
    connections = [connect(db, autocommit=True) for _ in range(threads)]
    try:
        first = connections[0]
        first.execute("DROP TABLE IF EXISTS bench_queue")
        first.execute(
            "CREATE TABLE bench_queue (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text NOT NULL)"
        )
        drained = [0] * threads
        errors: list[BaseException] = []

        def drain(i: int) -> None:
            try:
                while connections[i].execute(CLAIM_ONE).fetchone() is not None:
                    drained[i] += 1
            except BaseException as exc:
                errors.append(exc)

        started = time.perf_counter()
        first.execute(
            "INSERT INTO bench_queue (body) SELECT '{\"task_id\":\"' || g || '\"}' FROM generate_series(1, %s) g",
            (tasks,),
        )
        workers = [threading.Thread(target=drain, args=(i,), daemon=True) for i in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        elapsed = time.perf_counter() - started
        if errors:
            raise errors[0]
        if sum(drained) != tasks:
            raise BenchError(f"reference drained {sum(drained)} rows of {tasks}")
        first.execute("DROP TABLE bench_queue")
        return elapsed
    finally:
        for conn in connections:
            conn.close()


# --- the run ------------------------------------------------------------------------------------


@contextlib.contextmanager
def postgres_server() -> Iterator[DatabaseSettings]:
    """The configured server (the private cluster, started if needed and stopped again if started here)."""
    settings = Settings()
    started = start_postgres(settings)
    try:
        ensure_database(settings.database)
        yield settings.database
    finally:
        if started:
            embedded_cluster(settings).stop()


@contextlib.contextmanager
def throwaway_database(server: DatabaseSettings) -> Iterator[DatabaseSettings]:
    db = create_database(server)
    try:
        setup_database(db)
        yield db
    finally:
        try:
            drop_database(server, db.pgdatabase)
        except Exception as exc:  # do not hide the error that brought us here
            print(f"[bench] could not drop database {db.pgdatabase}: {exc}", file=sys.stderr)


def print_table(
    title: str, rows: list[tuple[Measured, float]], reference_threads: int, sizes_in_order: list[int]
) -> None:
    print(f"\n{title}\n")
    print(
        f"{'n':>6} {'tasks':>6} {'wall s':>8} {'tasks/s':>8} {'ms/task':>8} "
        f"{'s1→s2 planned ms':>17} {'s1→s2 claimed ms':>17} | "
        f"{'ref tasks/s':>11} {'ref ms/task':>11} {'overhead':>9}"
    )
    for m, ref_seconds in rows:
        ref_rate = m.tasks / ref_seconds
        print(
            f"{m.n:>6} {m.tasks:>6} {m.wall:>8.2f} {m.tasks / m.wall:>8.0f} {m.per_task * 1000:>8.2f} "
            f"{m.planned_ms:>17.1f} {m.first_claim_ms:>17.1f} | "
            f"{ref_rate:>11.0f} {ref_seconds / m.tasks * 1000:>11.3f} {m.wall / ref_seconds:>8.1f}x"
        )
    by_n = {m.n: m for m, _ in rows}
    smallest, largest = by_n[min(sizes_in_order)], by_n[max(sizes_in_order)]
    scaling = largest.per_task / smallest.per_task
    rate = largest.tasks / largest.wall
    print()
    print(
        f"seconds per task, n={largest.n} vs n={smallest.n}: {scaling:.2f}x "
        f"(goal <= {GOAL_SCALING}: {'met' if scaling <= GOAL_SCALING else 'NOT met'})"
    )
    print(
        f"tasks/s end to end at n={largest.n}: {rate:.0f} "
        f"(goal >= {GOAL_TASKS_PER_SECOND:,.0f}: {'met' if rate >= GOAL_TASKS_PER_SECOND else 'NOT met'})"
    )
    print(
        f"reference: the same number of rows in a plain table on the same database, {reference_threads} thread(s) "
        "each claiming and deleting one row per transaction (DELETE ... FOR UPDATE SKIP LOCKED, autocommit); "
        "overhead = our wall / reference wall"
    )


def _sizes(text: str) -> list[int]:
    sizes = [int(part) for part in text.split(",") if part.strip()]
    if not sizes or any(not 1 <= s <= 10_000 for s in sizes):
        raise argparse.ArgumentTypeError("sizes are 1..10000, comma-separated")
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--sizes", type=_sizes, default=[100, 1000, 10_000], help="values of n (default 100,1000,10000)"
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes (default: one per CPU; threads in one process share the GIL)",
    )
    parser.add_argument("--workers", type=int, default=2, help="worker threads per queue in each process (default 2)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds one job may take (default 900)")
    args = parser.parse_args()
    if args.processes < 1 or args.workers < 1:
        parser.error("--processes and --workers are at least 1")

    isolate_environment()  # the developer's settings (queue backend, storage...) stay out; PG* and the stack stay
    previous = signal.signal(signal.SIGTERM, _interrupt)  # a killed benchmark still cleans up
    scratch = Path(tempfile.mkdtemp(prefix="geoetl-bench-"))
    try:
        with postgres_server() as server, throwaway_database(server) as db:
            threads = args.processes * args.workers
            print(f"[bench] reference: bare SKIP LOCKED queue, {threads} thread(s)", flush=True)
            reference(db, 200, threads)  # warm-up
            references = {}
            for n in args.sizes:
                references[n] = reference(db, 2 * n, threads)

            storage = StorageSettings(storage_backend="local", storage_local_root=scratch / "storage")
            ctx = AppContext(Settings(database=db, storage=storage, app=AppSettings(log_level="WARNING")))
            workers = WorkerProcesses(db, storage.storage_local_root, scratch, args.processes, args.workers)
            try:
                for container in storage.containers:
                    ctx.storage.ensure_container(container)
                machine = build_machine(ctx)
                print(f"[bench] starting {args.processes} worker process(es), {args.workers} per queue", flush=True)
                workers.start()
                warm_up(ctx, machine, workers)
                rows = []
                for n in args.sizes:
                    print(f"[bench] hello_world n={n} ({2 * n} tasks)", flush=True)
                    rows.append((measure(ctx, machine, workers, n, args.timeout), references[n]))
                title = (
                    f"Orchestration overhead: hello_world (n stage-1 + n stage-2 no-op tasks), "
                    f"{args.processes} worker process(es) x {args.workers} thread(s) per queue "
                    f"(pool {workers.pool_size}), {server_description(db)}, {os.cpu_count()} CPU(s)"
                )
                print_table(title, rows, threads, args.sizes)
            finally:
                workers.stop()
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
