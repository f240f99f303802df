"""Real worker processes (``python -m triggers.localhost --workers-only``) on a fresh database.

* a 2,000-task fan-out shared by four processes, each task run and counted exactly once;
* chaos: worker processes SIGKILLed at random moments while jobs run, replacements
  started; every job still completes and every task is counted exactly once;
* queue messages deleted behind the machine's back are re-driven by the janitor timer.

Jobs are submitted (and in the last test partly driven) in the test's own process;
the SQL checks read the database the processes share. Each process writes its
stdout and stderr to a file under ``tmp_path``; a failing test prints their tails.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

from core.settings import PROJECT_ROOT, DatabaseSettings, OrchestrationSettings
from infrastructure.context import AppContext
from tests.helpers.driver import Driver
from tests.plugins.app import make_context

TERMINAL = ("completed", "failed", "cancelled")


# --- worker processes ------------------------------------------------------------------------------


@dataclass
class WorkerProcess:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]
    started: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_entries(self) -> list[dict[str, Any]]:
        entries = []
        for line in self.text().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):  # a line cut short by SIGKILL
                    entries.append(json.loads(line))
        return entries

    def ready(self) -> bool:
        return "local host: workers only" in self.text()

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.text().splitlines()[-lines:])


class Workers:
    """Starts worker processes against one database and storage root; ``stop_all`` ends every one."""

    def __init__(self, db: DatabaseSettings, storage_root: Path, log_dir: Path) -> None:
        self.db, self.storage_root, self.log_dir = db, storage_root, log_dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.started: list[WorkerProcess] = []

    def env(self, **settings: object) -> dict[str, str]:
        env = {
            **os.environ,
            "PGHOST": self.db.host,
            "PGPORT": str(self.db.pgport),
            "PGDATABASE": self.db.pgdatabase,
            "PGUSER": self.db.pguser,
            "STORAGE_BACKEND": "local",
            "STORAGE_LOCAL_ROOT": str(self.storage_root),
            "LOCAL_HOST_WORKERS": "2",
            "LOCAL_HOST_TIMERS": "false",
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }
        env.update({key.upper(): str(value) for key, value in settings.items()})
        return env

    def start(self, **settings: object) -> WorkerProcess:
        name = f"worker-{len(self.started) + 1}"
        log_path = self.log_dir / f"{name}.log"
        log_file = log_path.open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "triggers.localhost", "--workers-only"],
            cwd=PROJECT_ROOT,
            env=self.env(**settings),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        worker = WorkerProcess(name, proc, log_path, log_file)
        self.started.append(worker)
        return worker

    def start_many(self, count: int, **settings: object) -> list[WorkerProcess]:
        started = [self.start(**settings) for _ in range(count)]
        self.wait_ready(started)
        return started

    def wait_ready(self, workers: list[WorkerProcess], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not all(w.ready() for w in workers):
            for w in workers:
                if not w.alive:
                    raise AssertionError(f"{w.name} exited with {w.proc.returncode}:\n{w.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"workers not ready in {timeout} s:\n{self.tails()}")
            time.sleep(0.05)

    def alive(self) -> list[WorkerProcess]:
        return [w for w in self.started if w.alive]

    def kill(self, worker: WorkerProcess) -> None:
        worker.proc.send_signal(signal.SIGKILL)
        worker.proc.wait(timeout=10)

    def stop_all(self, timeout: float = 15) -> None:
        """SIGTERM (a graceful stop) to every live process, SIGKILL for those still there after ``timeout``."""
        for w in self.alive():
            w.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for w in self.started:
            try:
                w.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()
            w.log_file.close()

    def tails(self, lines: int = 30) -> str:
        return "\n".join(
            f"--- {w.name} (pid {w.pid}, exit {w.proc.poll()}) {w.log_path}\n{w.tail(lines)}" for w in self.started
        )

    def janitor_totals(self) -> Counter[str]:
        """Sum of the janitor reports every process logged (killed ones included)."""
        totals: Counter[str] = Counter()
        for w in self.started:
            for entry in w.log_entries():
                if entry.get("event") == "janitor.run":
                    totals["runs"] += 1
                    for key in ("leases_expired", "tasks_redriven", "jobs_redriven", "stages_repaired"):
                        totals[key] += int(entry.get(key, 0))
        return totals


@pytest.fixture
def workers(fresh_db: DatabaseSettings, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Workers]:
    pool = Workers(fresh_db, tmp_path / "storage", tmp_path / "logs")
    failed_before = request.session.testsfailed
    try:
        yield pool
    finally:
        pool.stop_all()
        if request.session.testsfailed > failed_before:  # the call phase failed: show what the workers said
            print(f"\n=== worker logs (tails) ===\n{pool.tails()}")


@pytest.fixture
def ctx(fresh_db: DatabaseSettings, tmp_path: Path) -> Iterator[AppContext]:
    """The test's own context over the workers' database and storage (to submit, drive and query)."""
    context = make_context(
        fresh_db, tmp_path / "storage", orchestration=OrchestrationSettings(task_retry_base_seconds=0.05)
    )
    yield context
    context.close()


# --- waiting and checking -----------------------------------------------------------------------------


def job_statuses(driver: Driver, job_ids: list[str]) -> dict[str, str]:
    rows = driver.sql("SELECT job_id, status::text AS status FROM geoetl.jobs WHERE job_id = ANY(%s)", (job_ids,))
    return {str(r["job_id"]): str(r["status"]) for r in rows}


def progress(driver: Driver, job_ids: list[str]) -> list[dict[str, object]]:
    return driver.sql(
        "SELECT left(job_id, 8) AS job, stage, status::text AS status, task_count, completed_count, failed_count "
        "FROM geoetl.stages WHERE job_id = ANY(%s) ORDER BY job_id, stage",
        (job_ids,),
    )


def wait_for_jobs(driver: Driver, job_ids: list[str], pool: Workers, timeout: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        statuses = job_statuses(driver, job_ids)
        if all(s in TERMINAL for s in statuses.values()):
            return statuses
        if not pool.alive():
            raise AssertionError(f"every worker process has exited:\n{pool.tails()}")
        if time.monotonic() > deadline:
            raise AssertionError(
                f"jobs not terminal after {timeout} s: {statuses}\nstages: {progress(driver, job_ids)}\n"
                f"queue: {queue_depth(driver)} message(s)\n{pool.tails()}"
            )
        time.sleep(0.25)


def number(driver: Driver, query: str, params: tuple[object, ...] = ()) -> int:
    """The first column of the first row, an integer (a count)."""
    value = next(iter(driver.sql(query, params)[0].values()))
    assert isinstance(value, int), value
    return value


def queue_depth(driver: Driver) -> int:
    return number(driver, "SELECT count(*) FROM geoetl.queue_messages")


def wait_for_empty_queue(driver: Driver, timeout: float) -> int:
    """The last messages are deleted just after the state they drove committed: allow a moment."""
    deadline = time.monotonic() + timeout
    while (depth := queue_depth(driver)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return depth


def assert_each_task_counted_once(driver: Driver, job_ids: list[str]) -> None:
    """Invariants 2 and 3 over completed jobs: every task completed and counted once, every stage planned,
    completed and advanced once, every job finalized once."""
    stages = driver.sql(
        "SELECT s.job_id, s.stage, s.status::text AS status, s.task_count, s.completed_count, s.failed_count, "
        "(SELECT count(*) FROM geoetl.tasks t WHERE t.job_id = s.job_id AND t.stage = s.stage) AS tasks, "
        "(SELECT count(*) FROM geoetl.tasks t WHERE t.job_id = s.job_id AND t.stage = s.stage "
        " AND t.status = 'completed') AS completed_tasks, "
        "(SELECT count(*) FROM geoetl.job_events e WHERE e.job_id = s.job_id AND e.stage = s.stage "
        " AND e.event = 'stage_planned') AS planned_events, "
        "(SELECT count(*) FROM geoetl.job_events e WHERE e.job_id = s.job_id AND e.stage = s.stage "
        " AND e.event = 'stage_completed') AS completed_events "
        "FROM geoetl.stages s WHERE s.job_id = ANY(%s) ORDER BY s.job_id, s.stage",
        (job_ids,),
    )
    assert stages, "no stages"
    wrong = [
        s
        for s in stages
        if not (
            s["status"] == "completed"
            and s["task_count"] == s["completed_count"] == s["tasks"] == s["completed_tasks"]
            and s["failed_count"] == 0
            and s["planned_events"] == 1
            and s["completed_events"] == 1
        )
    ]
    assert not wrong, f"stages not counted exactly once: {wrong}"
    jobs = driver.sql(
        "SELECT j.job_id, j.status::text AS status, j.stage, j.total_stages, "
        "(SELECT count(*) FROM geoetl.job_events e WHERE e.job_id = j.job_id AND e.event = 'job_completed') AS done, "
        "(SELECT count(*) FROM geoetl.stages s WHERE s.job_id = j.job_id) AS stages "
        "FROM geoetl.jobs j WHERE j.job_id = ANY(%s)",
        (job_ids,),
    )
    wrong_jobs = [
        j for j in jobs if not (j["status"] == "completed" and j["done"] == 1 and j["stage"] == j["total_stages"])
    ]
    assert len(jobs) == len(job_ids) and not wrong_jobs, f"jobs not completed exactly once: {wrong_jobs}"
    stray = driver.sql(
        "SELECT task_id, status::text AS status, attempt FROM geoetl.tasks "
        "WHERE job_id = ANY(%s) AND status <> 'completed'",
        (job_ids,),
    )
    assert not stray, f"tasks of completed jobs not completed: {stray[:10]}"


def result_of(driver: Driver, job_id: str) -> dict[str, Any]:
    rows = driver.sql("SELECT result_data FROM geoetl.jobs WHERE job_id = %s", (job_id,))
    result = rows[0]["result_data"]
    assert isinstance(result, dict), result
    return result


def pid_of(worker: object) -> int:
    """tasks.worker is ``host:pid:thread``."""
    return int(str(worker).split(":")[-2])


# --- 1. a big fan-out shared by four processes ------------------------------------------------------


def test_two_thousand_tasks_across_four_processes_run_and_count_once(workers: Workers, ctx: AppContext) -> None:
    t0 = time.monotonic()
    procs = workers.start_many(4)  # 2 threads per queue each, timers off
    driver = Driver.of(ctx)
    job_id = driver.machine.submit("hello_world", {"n": 1000, "message": "fan-out"}).job.job_id
    statuses = wait_for_jobs(driver, [job_id], workers, timeout=180)
    elapsed = time.monotonic() - t0
    assert statuses[job_id] == "completed", driver.sql("SELECT error_details FROM geoetl.jobs")

    tasks = driver.sql(
        "SELECT stage, status::text AS status, attempt, count(*) AS n FROM geoetl.tasks WHERE job_id = %s "
        "GROUP BY 1, 2, 3 ORDER BY 1",
        (job_id,),
    )
    assert tasks == [
        {"stage": 1, "status": "completed", "attempt": 1, "n": 1000},
        {"stage": 2, "status": "completed", "attempt": 1, "n": 1000},
    ], "every task completed on its first attempt"
    assert_each_task_counted_once(driver, [job_id])
    stages = driver.sql(
        "SELECT stage, task_count, completed_count FROM geoetl.stages WHERE job_id = %s ORDER BY stage", (job_id,)
    )
    assert stages == [
        {"stage": 1, "task_count": 1000, "completed_count": 1000},
        {"stage": 2, "task_count": 1000, "completed_count": 1000},
    ]
    events = Counter(
        (str(e["event"]), e["stage"])
        for e in driver.sql("SELECT event, stage FROM geoetl.job_events WHERE job_id = %s", (job_id,))
    )
    assert events[("stage_planned", 1)] == events[("stage_planned", 2)] == 1
    assert events[("stage_completed", 1)] == events[("stage_completed", 2)] == 1
    assert events[("job_completed", None)] == 1
    assert sum(n for (event, _), n in events.items() if event in ("task_retried", "task_failed")) == 0
    assert wait_for_empty_queue(driver, timeout=10) == 0, driver.sql("SELECT * FROM geoetl.queue_messages LIMIT 5")
    assert not driver.sql("SELECT id FROM geoetl.dead_letters")
    result = result_of(driver, job_id)
    assert result["greetings"] == result["replies"] == 1000 and result["retried_greetings"] == 0

    by_worker = driver.sql("SELECT worker, count(*) AS n FROM geoetl.tasks WHERE job_id = %s GROUP BY 1", (job_id,))
    by_pid = Counter[int]()
    for row in by_worker:
        assert isinstance(row["n"], int)
        by_pid[pid_of(row["worker"])] += row["n"]
    pids = {p.pid for p in procs}
    print(f"\n2,000 tasks in {elapsed:.1f} s; tasks per process: {dict(by_pid)}; per thread: {len(by_worker)} threads")
    assert set(by_pid) == pids, f"each of the 4 processes did some work: {dict(by_pid)} vs {pids}"
    assert all(n > 0 for n in by_pid.values())


# --- 2. SIGKILL chaos ---------------------------------------------------------------------------------

CHAOS_SETTINGS: dict[str, object] = {
    "TASK_LEASE_SECONDS": 2,  # heartbeats every 2/3 s
    "JANITOR_STALE_SECONDS": 1,
    "QUEUE_VISIBILITY_TIMEOUT_SECONDS": 3,
    "LOCAL_HOST_TIMERS": "true",
    "JANITOR_SCHEDULE": "*/2 * * * * *",
    "TASK_RETRY_BASE_SECONDS": 0.1,
    "TASK_RETRY_MAX_SECONDS": 1,
    "TASK_MAX_RETRIES": 10,  # every kill costs the task it interrupts one attempt
}


def test_sigkilled_workers_lose_no_task_and_count_none_twice(workers: Workers, ctx: AppContext) -> None:
    seed = int(os.environ.get("GEOETL_CHAOS_SEED") or random.SystemRandom().randrange(2**32))
    print(f"\nchaos seed {seed} (GEOETL_CHAOS_SEED={seed} repeats the choices, not the timing)")
    rng = random.Random(seed)
    workers.start_many(3, **CHAOS_SETTINGS)
    driver = Driver.of(ctx)
    t0 = time.monotonic()
    job_ids = [
        driver.machine.submit(
            "hello_world", {"n": rng.randint(50, 150), "sleep_ms": rng.randint(20, 50), "message": f"chaos {i}"}
        ).job.job_id
        for i in range(4)
    ]
    job_ids.append(driver.machine.submit("diamond", {"parts": rng.randint(20, 60), "page_size": 7}).job.job_id)

    deadline = time.monotonic() + 60
    while not number(driver, "SELECT count(*) FROM geoetl.tasks WHERE status = 'processing'"):
        assert time.monotonic() < deadline, f"no task started in 60 s:\n{workers.tails()}"
        time.sleep(0.05)
    kills_wanted = rng.randint(6, 10)
    kills: list[str] = []
    interrupted = 0  # tasks the victims were running a moment before they were killed
    while len(kills) < kills_wanted:
        time.sleep(rng.uniform(0.3, 1.5))
        if all(s in TERMINAL for s in job_statuses(driver, job_ids).values()):
            break
        victim = rng.choice([w for w in workers.alive() if w.ready()] or workers.alive())
        running = number(
            driver,
            "SELECT count(*) FROM geoetl.tasks WHERE status = 'processing' AND worker LIKE %s",
            (f"%:{victim.pid}:%",),
        )
        workers.kill(victim)
        kills.append(f"{victim.name}@{time.monotonic() - t0:.1f}s ({running} running)")
        interrupted += running
        workers.start(**CHAOS_SETTINGS)  # the replacement; at least 2 stay alive throughout
    print(f"{len(kills)} kill(s): {', '.join(kills)}")

    statuses = wait_for_jobs(driver, job_ids, workers, timeout=240)
    elapsed = time.monotonic() - t0
    failed = {j: s for j, s in statuses.items() if s != "completed"}
    assert not failed, driver.sql("SELECT job_id, status, error_details FROM geoetl.jobs WHERE status <> 'completed'")
    assert_each_task_counted_once(driver, job_ids)
    assert not driver.sql("SELECT id, reason FROM geoetl.dead_letters")
    leftover = wait_for_empty_queue(driver, timeout=30)  # killed workers' messages come back and are no-ops
    assert leftover == 0, driver.sql("SELECT message_id, visible_at, delivery_count FROM geoetl.queue_messages")
    for job_id in job_ids[:4]:
        n = number(driver, "SELECT (parameters ->> 'n')::int FROM geoetl.jobs WHERE job_id = %s", (job_id,))
        result = result_of(driver, job_id)
        assert result["greetings"] == result["replies"] == n
    diamond = result_of(driver, job_ids[4])
    assert diamond["squares"] == diamond["parts"]

    tasks = number(driver, "SELECT count(*) FROM geoetl.tasks")
    retried = number(driver, "SELECT count(*) FROM geoetl.tasks WHERE attempt > 1")
    most = number(driver, "SELECT max(attempt) FROM geoetl.tasks")
    lease_events = number(
        driver,
        "SELECT count(*) FROM geoetl.job_events WHERE event = 'task_retried' "
        "AND details -> 'error' ->> 'code' = 'lease_expired'",
    )
    janitor = workers.janitor_totals()
    print(
        f"chaos run {elapsed:.1f} s: {tasks} tasks, {retried} needed more than one attempt "
        f"(most {most}), {lease_events} lease expiries; janitor: {dict(janitor)}"
    )
    assert janitor["runs"] > 0, "the janitor timer ran in the workers"
    if interrupted >= 3:  # some of those were still running when SIGKILL came: their leases expired
        assert lease_events > 0 and retried > 0


# --- 3. lost queue messages ---------------------------------------------------------------------------


@pytest.mark.parametrize("lost_when", ["submitted", "stage 1 planned", "stage 1 completed"])
def test_deleted_queue_messages_are_redriven_by_the_janitor(workers: Workers, ctx: AppContext, lost_when: str) -> None:
    driver = Driver.of(ctx)
    job_id = driver.machine.submit("hello_world", {"n": 5, "message": f"lost {lost_when}"}).job.job_id
    if lost_when == "stage 1 planned":  # the job message only: stage 1's tasks are queued, their messages lost
        for message in driver.receive(driver.machine.jobs_queue):
            assert driver.machine.handle_job_message(message.body, message.message_id) == "planned"
            driver.queue.complete(driver.machine.jobs_queue, message)
    elif lost_when == "stage 1 completed":  # one step: plans stage 1 and runs its tasks; stage 2's message lost
        driver.step()
    lost = driver.sql("DELETE FROM geoetl.queue_messages RETURNING queue_name, message_id")
    assert lost, "there was a message to lose"
    before = driver.sql("SELECT stage, status::text AS status FROM geoetl.jobs WHERE job_id = %s", (job_id,))[0]
    print(f"\nlost {len(lost)} message(s) with the job {before}")

    t0 = time.monotonic()
    workers.start_many(1, LOCAL_HOST_TIMERS="true", JANITOR_SCHEDULE="* * * * * *", JANITOR_STALE_SECONDS=1)
    statuses = wait_for_jobs(driver, [job_id], workers, timeout=60)
    print(f"completed {time.monotonic() - t0:.1f} s after the worker started")
    assert statuses[job_id] == "completed"
    assert_each_task_counted_once(driver, [job_id])
    result = result_of(driver, job_id)
    assert result["greetings"] == result["replies"] == 5
    janitor = workers.janitor_totals()
    assert janitor["tasks_redriven"] + janitor["jobs_redriven"] > 0, dict(janitor)
    assert wait_for_empty_queue(driver, timeout=10) == 0
