"""Edges found in review: errors in a job's own code, ended jobs, stale messages, changed definitions."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from core.errors import InvalidInput, RetryableError
from core.models import JobStatus, task_message
from core.outcomes import as_json
from tests.helpers.driver import Driver


def test_a_bug_in_planning_fails_the_job_instead_of_looping(driver: Driver) -> None:
    job = driver.machine.submit("diamond", {"parts": 3}).job
    driver.step_jobs()
    driver.step_tasks()  # split ran and published {"parts": 3}; the stage-2 message is queued
    driver.sql("UPDATE geoetl.tasks SET next_stage_params = NULL WHERE job_id = %s", (job.job_id,))
    assert driver.step_jobs() == 1  # create_tasks now raises KeyError
    row = driver.ctx.job_store.job(job.job_id)
    assert row is not None and row["status"] == "failed"
    assert row["error_details"]["during"] == "planning" and "KeyError" in row["error_details"]["message"]


def test_a_retryable_error_of_a_task_whose_job_ended_does_not_requeue_it(driver: Driver) -> None:
    job = driver.machine.submit("hello_world", {"n": 2}).job
    driver.step_jobs()
    claimed = driver.ctx.job_store.claim_task(f"{job.job_id}-r1-s1-t0", 1, 30, "w")
    assert claimed is not None
    driver.machine.cancel(job.job_id)
    assert driver.machine._task_failed(claimed.task, RetryableError("late")) == "cancelled"
    statuses = driver.sql("SELECT status::text FROM geoetl.tasks WHERE job_id = %s", (job.job_id,))
    assert {r["status"] for r in statuses} == {"cancelled"}
    assert driver.sql("SELECT count(*) AS n FROM geoetl.job_events WHERE event = 'task_retried'") == [{"n": 0}]


def test_messages_of_an_earlier_run_are_stale_not_dead_letters(driver: Driver) -> None:
    job = driver.machine.submit("hello_world", {"n": 2}).job
    driver.step_jobs()
    old = driver.receive(driver.machine.tasks_queue)
    driver.machine.cancel(job.job_id)
    driver.machine.resubmit(job.job_id)
    assert {driver.machine.handle_task_message(m.body, m.message_id) for m in old} == {"stale"}
    assert driver.sql("SELECT count(*) AS n FROM geoetl.dead_letters") == [{"n": 0}]
    assert driver.run(job.job_id) == JobStatus.COMPLETED


def test_a_job_whose_definition_changed_fails_with_a_clear_reason(driver: Driver) -> None:
    job = driver.machine.submit("hello_world", {"n": 1}).job
    driver.sql("UPDATE geoetl.stages SET task_type = 'renamed' WHERE job_id = %s AND stage = 1", (job.job_id,))
    driver.step_jobs()
    row = driver.ctx.job_store.job(job.job_id)
    assert row is not None and row["error_details"]["code"] == "job_definition_changed"


def test_an_early_delivery_is_judged_in_database_time(driver: Driver) -> None:
    driver.machine.settings = driver.machine.settings.model_copy(update={"task_retry_base_seconds": 60})
    job = driver.machine.submit("hello_world", {"n": 1, "fail_indices": [0]}).job
    driver.step_jobs()
    driver.step_tasks()  # attempt 1 fails: attempt 2 not before a minute from now
    task_id = f"{job.job_id}-r1-s1-t0"
    assert driver.machine.handle_task_message(task_message(task_id, 2).body) == "early"
    assert driver.machine.handle_task_message(task_message(task_id, 2).body) == "early"  # twice: one message
    later = driver.sql(
        "SELECT count(*) AS n FROM geoetl.queue_messages WHERE message_id LIKE %s", (f"{task_id}:a2:later%",)
    )
    assert later == [{"n": 1}]


def test_results_must_be_json_data() -> None:
    assert as_json({"a": [1, "x", None]}) == {"a": [1, "x", None]}
    with pytest.raises(InvalidInput, match="not JSON"):
        as_json({"when": datetime.now(UTC)})
    with pytest.raises(InvalidInput, match="NUL"):
        as_json({"text": "a\x00b"})
    with pytest.raises(InvalidInput, match="not JSON"):
        as_json({"x": float("nan")})


def test_bad_identifiers_and_filters_are_4xx_not_500(api: str) -> None:
    for path in ("jobs/status/%00", "jobs/status/not-an-id", "jobs/" + "a" * 64 + "/events"):
        assert httpx.get(f"{api}/{path}").status_code == 404, path
    assert httpx.post(f"{api}/jobs/%00/cancel").status_code == 404
    assert httpx.get(f"{api}/db/jobs", params={"since_hours": "inf"}).status_code == 400
    assert httpx.get(f"{api}/db/jobs", params={"job_type": "a\x00b"}).status_code == 400
    assert httpx.get(f"{api}/db/tasks/" + "a" * 64, params={"stage": str(2**40)}).status_code == 400
    submitted = httpx.post(f"{api}/jobs/submit/hello_world", json={"message": "nul \u0000 here"})
    assert submitted.status_code == 400, submitted.text
