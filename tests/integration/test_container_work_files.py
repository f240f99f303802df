"""The container jobs' work files under ``inventory-work/<job_id>/``: deleted when the job succeeds (a retried
inventory write after that still succeeds) and by the clean-up of a failed or cancelled run."""

from __future__ import annotations

from typing import Any

from core.models import JobStatus
from core.running import Lease, RunningTask
from infrastructure.context import AppContext
from jobs import list_container_contents as list_job
from tests.helpers.driver import Driver


def _fill(ctx: AppContext, n: int = 12) -> None:
    for i in range(n):
        ctx.storage.write_bytes("bronze", f"w/{i:02d}.txt", b"x" * (i + 1))


def _work_files(ctx: AppContext, job_id: str) -> list[str]:
    return [b.name for b in ctx.storage.iter_blobs("silver", f"inventory-work/{job_id}/")]


def _running(driver: Driver, task_id: str, worker: str) -> RunningTask:
    claimed = driver.ctx.job_store.claim_task(task_id, 1, 30, worker)
    assert claimed is not None
    lease = Lease(lambda: driver.ctx.job_store.renew_lease(task_id, 1, 30), 10)
    return RunningTask(claimed, driver.ctx.job_store, driver.machine.claim_check, driver.machine.resources, lease)


def _step_until(driver: Driver, job_id: str, stage: int) -> None:
    """Handle messages until stage ``stage`` is planned, none of its tasks run."""
    while True:
        handled = driver.step_jobs()
        if driver.sql("SELECT 1 FROM geoetl.tasks WHERE job_id = %s AND stage = %s", (job_id, stage)):
            return
        assert handled + driver.step_tasks(), f"stage {stage} of {job_id} was never planned"


def test_a_successful_inventory_deletes_its_work_files_and_a_retried_write_still_succeeds(
    driver: Driver, machine_context: AppContext
) -> None:
    """Attempt 1 of the write commits the inventory and deletes the work files, then its worker dies before
    reporting; attempt 2 finds the page files gone and the inventory complete: the job completes, same result."""
    _fill(machine_context)
    job_id = driver.machine.submit("list_container_contents", {"container_name": "bronze"}).job.job_id
    _step_until(driver, job_id, 3)
    assert len(_work_files(machine_context, job_id)) == 1  # the listing page
    task_id = f"{job_id}-r1-s3-t0"
    first = list_job.write(list_job.Write(), _running(driver, task_id, "dying-worker"))
    assert first["blobs"] == 12 and _work_files(machine_context, job_id) == []
    driver.sql("UPDATE geoetl.tasks SET lease_expires_at = now() - interval '1 second' WHERE task_id = %s", (task_id,))
    assert driver.janitor()["leases_expired"] == 1
    assert driver.run(job_id) == JobStatus.COMPLETED
    [task] = driver.sql("SELECT attempt, result_data FROM geoetl.tasks WHERE task_id = %s", (task_id,))
    assert task["attempt"] == 2 and task["result_data"] == first
    [row] = driver.sql("SELECT count(*) AS n FROM geoetl.inventory WHERE job_id = %s", (job_id,))
    assert row["n"] == 12


def test_a_summary_deletes_its_work_files(driver: Driver, machine_context: AppContext) -> None:
    _fill(machine_context)
    job_id = driver.machine.submit("summarize_container", {"container_name": "bronze"}).job.job_id
    _step_until(driver, job_id, 3)
    assert _work_files(machine_context, job_id)  # listing pages and partial summaries
    assert driver.run(job_id) == JobStatus.COMPLETED
    [job] = driver.sql("SELECT result_data FROM geoetl.jobs WHERE job_id = %s", (job_id,))
    result: dict[str, Any] = job["result_data"]  # type: ignore[assignment]
    assert result["blobs"] == 12 and "work_prefix" not in result
    assert _work_files(machine_context, job_id) == []


def test_a_cancelled_run_has_its_work_files_deleted(driver: Driver, machine_context: AppContext) -> None:
    _fill(machine_context)
    for job_type in ("list_container_contents", "summarize_container"):
        job_id = driver.machine.submit(job_type, {"container_name": "bronze"}).job.job_id
        _step_until(driver, job_id, 2)
        assert _work_files(machine_context, job_id)
        driver.machine.cancel(job_id)
        while driver.step():
            pass
        assert driver.status(job_id) == JobStatus.CANCELLED
        assert _work_files(machine_context, job_id) == [], job_type
        [event] = driver.sql(
            "SELECT details FROM geoetl.job_events WHERE job_id = %s AND event = 'job_cleaned_up'", (job_id,)
        )
        assert event["details"]["deleted_work_files"] >= 1  # type: ignore[index]
