"""Invariant 6: whatever a crash strands, the janitor finds and re-drives."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from core.models import JobStatus
from tests.helpers.driver import Driver


def test_a_lost_submission_message_is_re_sent(driver: Driver) -> None:
    job = driver.machine.submit("hello_world", {"n": 2}).job
    driver.sql("DELETE FROM geoetl.queue_messages")
    assert driver.step() == 0
    assert driver.janitor()["jobs_redriven"] == 1
    assert driver.run(job.job_id) == JobStatus.COMPLETED
    [event] = driver.sql("SELECT details FROM geoetl.job_events WHERE event = 'job_redriven'")
    assert event["details"] == {"step": "s1", "reason": "no progress: message re-sent"}


def test_lost_task_messages_are_re_sent(driver: Driver) -> None:
    job = driver.machine.submit("hello_world", {"n": 5}).job
    driver.step_jobs()
    driver.sql("DELETE FROM geoetl.queue_messages")
    report = driver.janitor()
    assert report["tasks_redriven"] == 5
    assert driver.run(job.job_id) == JobStatus.COMPLETED
    assert driver.sql(
        "SELECT count(*) AS n FROM geoetl.tasks WHERE job_id = %s AND attempt = 1 AND status = 'completed'",
        (job.job_id,),
    ) == [{"n": 10}]


def test_a_lost_next_stage_message_is_re_sent(driver: Driver) -> None:
    job = driver.machine.submit("hello_world", {"n": 3}).job
    driver.step_jobs()
    driver.step_tasks()  # the last completion moved the job to stage 2 and sent its message...
    driver.sql("DELETE FROM geoetl.queue_messages")  # ...which is lost
    assert driver.sql("SELECT stage FROM geoetl.jobs") == [{"stage": 2}]
    assert driver.janitor()["jobs_redriven"] == 1
    assert driver.run(job.job_id) == JobStatus.COMPLETED


def test_a_lost_finalize_message_is_re_sent(driver: Driver) -> None:
    job = driver.machine.submit("diamond", {"parts": 2}).job
    for _ in range(20):
        driver.step()
        if driver.sql("SELECT status::text FROM geoetl.stages WHERE job_id = %s AND stage = 4", (job.job_id,)) == [
            {"status": "completed"}
        ]:
            break
    driver.sql("DELETE FROM geoetl.queue_messages")
    assert driver.status(job.job_id) == JobStatus.PROCESSING
    assert driver.janitor()["jobs_redriven"] == 1
    assert driver.run(job.job_id) == JobStatus.COMPLETED


def test_an_expired_lease_becomes_a_new_attempt(driver: Driver) -> None:
    job = driver.machine.submit("hello_world", {"n": 1}).job
    driver.step_jobs()
    task_id = f"{job.job_id}-r1-s1-t0"
    assert driver.ctx.job_store.claim_task(task_id, 1, 30, "killed-worker") is not None  # then the worker dies
    driver.sql("DELETE FROM geoetl.queue_messages")
    assert driver.janitor()["leases_expired"] == 0  # the lease still runs
    driver.sql("UPDATE geoetl.tasks SET lease_expires_at = now() - interval '1 second' WHERE task_id = %s", (task_id,))
    assert driver.janitor()["leases_expired"] == 1
    assert driver.run(job.job_id) == JobStatus.COMPLETED
    [retried] = driver.sql(
        "SELECT details FROM geoetl.job_events WHERE job_id = %s AND event = 'task_retried'", (job.job_id,)
    )
    assert retried["details"]["error"]["code"] == "lease_expired"  # type: ignore[index]
    assert driver.sql("SELECT attempt FROM geoetl.tasks WHERE task_id = %s", (task_id,)) == [{"attempt": 2}]


def test_an_expired_lease_on_the_last_attempt_fails_the_job(driver: Driver) -> None:
    job = driver.machine.submit("hello_world", {"n": 2}).job
    driver.step_jobs()
    task_id = f"{job.job_id}-r1-s1-t0"
    driver.sql("UPDATE geoetl.tasks SET max_attempts = 1 WHERE task_id = %s", (task_id,))
    assert driver.ctx.job_store.claim_task(task_id, 1, 0.01, "killed-worker") is not None
    driver.sql("UPDATE geoetl.tasks SET lease_expires_at = now() - interval '1 second' WHERE task_id = %s", (task_id,))
    assert driver.janitor()["leases_expired"] == 1
    assert driver.status(job.job_id) == JobStatus.FAILED
    row = driver.ctx.job_store.job(job.job_id)
    assert row is not None
    details = row["error_details"]["details"]
    assert details["task_id"] == task_id and details["attempts"] == 1
    assert details["error"]["code"] == "lease_expired"


def test_a_stage_whose_tasks_are_all_done_is_finished(driver: Driver) -> None:
    """A stage 'planned' with every task completed (counters lost) is recounted and the job moves on."""
    job = driver.machine.submit("hello_world", {"n": 3}).job
    driver.step_jobs()
    driver.sql("UPDATE geoetl.stages SET completed_count = 0 WHERE job_id = %s", (job.job_id,))  # ...as if
    for task_id in (f"{job.job_id}-r1-s1-t{i}" for i in range(3)):
        driver.sql(
            "UPDATE geoetl.tasks SET status = 'completed', attempt = 1, "
            "result_data = jsonb_build_object('index', task_index, 'greeting', 'g', 'attempt', 1) WHERE task_id = %s",
            (task_id,),
        )
    driver.sql("DELETE FROM geoetl.queue_messages")
    assert driver.janitor()["stages_repaired"] == 1
    assert driver.run(job.job_id) == JobStatus.COMPLETED


def test_janitors_running_at_once_re_drive_each_thing_once(driver: Driver) -> None:
    driver.machine.settings = driver.machine.settings.model_copy(update={"janitor_stale_seconds": 30})
    jobs = [driver.machine.submit("hello_world", {"n": 20, "message": str(i)}).job for i in range(3)]
    driver.step_jobs()
    driver.sql("DELETE FROM geoetl.queue_messages")
    driver.sql(
        "UPDATE geoetl.tasks SET enqueued_at = now() - interval '1 minute', not_before = now() - interval '1 minute'"
    )
    driver.sql("UPDATE geoetl.stages SET updated_at = now() - interval '1 minute'")
    with ThreadPoolExecutor(4) as pool:
        reports = list(pool.map(lambda _: driver.janitor(), range(4)))
    assert sum(r["tasks_redriven"] for r in reports) == 60
    assert driver.queue.depth(driver.machine.tasks_queue) == 60
    for job in jobs:
        assert driver.run(job.job_id) == JobStatus.COMPLETED


def test_the_janitor_leaves_healthy_work_alone(driver: Driver) -> None:
    driver.machine.settings = driver.machine.settings.model_copy(update={"janitor_stale_seconds": 300})
    job = driver.machine.submit("hello_world", {"n": 3}).job
    driver.step_jobs()
    assert driver.janitor() == {
        "leases_expired": 0,
        "tasks_redriven": 0,
        "jobs_redriven": 0,
        "stages_repaired": 0,
        "cleanups_redriven": 0,
    }
    assert driver.run(job.job_id) == JobStatus.COMPLETED
    assert driver.janitor() == {
        "leases_expired": 0,
        "tasks_redriven": 0,
        "jobs_redriven": 0,
        "stages_repaired": 0,
        "cleanups_redriven": 0,
    }


def test_a_crash_between_the_last_completion_and_advancing_is_repaired(driver: Driver) -> None:
    """The last completion counted (one statement) but its worker died before moving the job on."""
    job = driver.machine.submit("hello_world", {"n": 2}).job
    driver.step_jobs()
    store = driver.ctx.job_store
    for index in range(2):
        task_id = f"{job.job_id}-r1-s1-t{index}"
        assert store.claim_task(task_id, 1, 30, "doomed") is not None
        progress = store.complete_task(task_id, 1, {"index": index, "greeting": "g", "attempt": 1}, None)
        assert progress is not None
    assert progress.done  # ...and here the worker is killed
    driver.sql("DELETE FROM geoetl.queue_messages")
    assert driver.sql("SELECT status::text FROM geoetl.stages WHERE job_id = %s AND stage = 1", (job.job_id,)) == [
        {"status": "planned"}
    ]
    assert driver.janitor()["stages_repaired"] == 1
    assert driver.run(job.job_id) == JobStatus.COMPLETED
    assert len(driver.sql("SELECT 1 FROM geoetl.job_events WHERE event = 'stage_completed'")) == 2


def test_queued_tasks_of_a_stage_still_making_progress_are_left_alone(driver: Driver) -> None:
    """A long backlog is not a lost message: while any task of the stage runs, nothing is re-sent."""
    driver.machine.settings = driver.machine.settings.model_copy(update={"janitor_stale_seconds": 30})
    job = driver.machine.submit("hello_world", {"n": 3}).job
    driver.step_jobs()
    driver.sql("DELETE FROM geoetl.queue_messages")
    old = "now() - interval '1 minute'"
    driver.sql(f"UPDATE geoetl.tasks SET enqueued_at = {old}, not_before = {old}")
    driver.sql(f"UPDATE geoetl.stages SET updated_at = {old}")
    assert driver.ctx.job_store.claim_task(f"{job.job_id}-r1-s1-t0", 1, 30, "busy") is not None  # just now
    assert driver.janitor()["tasks_redriven"] == 0
    driver.sql(f"UPDATE geoetl.tasks SET started_at = {old}")  # ...and then nothing happens for a minute
    assert driver.janitor()["tasks_redriven"] == 2
