"""ensure_run_alive: a publishing transaction and a cancel serialise on the job row."""

from __future__ import annotations

import threading
import time

import pytest

from core.errors import Conflict
from infrastructure.db.jobs.guard import ensure_run_alive
from tests.helpers.driver import Driver


def test_publishing_needs_a_live_run_and_holds_off_a_cancel(driver: Driver) -> None:
    job = driver.machine.submit("hello_world", {"n": 1, "sleep_ms": 1}).job
    driver.step_jobs()  # processing, stage 1 planned
    task_id = f"{job.job_id}-r1-s1-t0"
    cancelled = threading.Event()

    def cancel() -> None:
        driver.machine.cancel(job.job_id)
        cancelled.set()

    with driver.ctx.db.transaction() as conn:
        ensure_run_alive(conn, task_id)
        canceller = threading.Thread(target=cancel)
        canceller.start()
        time.sleep(0.3)
        assert not cancelled.is_set()  # the cancel waits for the publishing transaction
    canceller.join(10)
    assert cancelled.is_set()
    with driver.ctx.db.transaction() as conn, pytest.raises(Conflict, match="cancelled"):
        ensure_run_alive(conn, task_id)
    with driver.ctx.db.transaction() as conn, pytest.raises(Conflict, match="has ended"):
        ensure_run_alive(conn, f"{job.job_id}-r2-s1-t0")  # another run
