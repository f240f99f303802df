"""Jobs run through the CoreMachine on a real database: stages, fan-out, fan-in, results, events."""

from __future__ import annotations

import pytest

from core.errors import InvalidInput
from core.models import JobStatus, job_id_for
from core.registry import UnknownJobType
from tests.helpers.driver import Driver


def events_of(driver: Driver, job_id: str) -> list[str]:
    return [
        str(r["event"])
        for r in driver.sql("SELECT event FROM geoetl.job_events WHERE job_id = %s ORDER BY event_id", (job_id,))
    ]


def test_hello_world_runs_both_stages_and_aggregates(driver: Driver) -> None:
    submission = driver.machine.submit("hello_world", {"n": 5, "message": "hi"})
    assert submission.created and submission.job.status == JobStatus.QUEUED
    assert driver.run(submission.job.job_id) == JobStatus.COMPLETED
    row = driver.ctx.job_store.job(submission.job.job_id)
    assert row is not None
    assert row["result_data"] == {
        "greetings": 5,
        "replies": 5,
        "retried_greetings": 0,
        "first_greeting": "hi #0",
        "last_reply": "reply to 'hi #4'",
    }
    stages = driver.sql(
        "SELECT stage, status::text, task_count, completed_count FROM geoetl.stages WHERE job_id = %s ORDER BY stage",
        (submission.job.job_id,),
    )
    assert stages == [
        {"stage": 1, "status": "completed", "task_count": 5, "completed_count": 5},
        {"stage": 2, "status": "completed", "task_count": 5, "completed_count": 5},
    ]
    assert events_of(driver, submission.job.job_id) == [
        "job_submitted",
        "job_started",
        "stage_planned",
        "stage_completed",
        "stage_planned",
        "stage_completed",
        "job_completed",
    ]


def test_diamond_passes_next_stage_params_and_fans_in_page_by_page(driver: Driver) -> None:
    job = driver.machine.submit("diamond", {"parts": 25, "page_size": 7}).job
    assert driver.run(job.job_id) == JobStatus.COMPLETED
    row = driver.ctx.job_store.job(job.job_id)
    assert row is not None and row["result_data"] == {"parts": 25, "sum_of_squares": 5525, "squares": 25}


def test_an_empty_fan_out_stage_completes_at_once(driver: Driver) -> None:
    job = driver.machine.submit("diamond", {"parts": 0}).job
    assert driver.run(job.job_id) == JobStatus.COMPLETED
    row = driver.ctx.job_store.job(job.job_id)
    assert row is not None and row["result_data"]["sum_of_squares"] == 0


def test_submission_is_idempotent_on_the_validated_parameters(driver: Driver) -> None:
    first = driver.machine.submit("hello_world", {"n": 2, "message": "x"})
    again = driver.machine.submit("hello_world", {"message": "x", "n": 2, "sleep_ms": 0})
    assert again.job.job_id == first.job.job_id and not again.created
    assert first.job.job_id == job_id_for("hello_world", first.job.parameters)
    assert driver.sql("SELECT count(*) AS n FROM geoetl.jobs")[0]["n"] == 1
    assert driver.queue.depth(driver.machine.jobs_queue) == 1


def test_unknown_job_type_lists_the_known_ones(driver: Driver) -> None:
    with pytest.raises(UnknownJobType) as err:
        driver.machine.submit("nope", {})
    assert "hello_world" in err.value.message and "diamond" in err.value.details["known_job_types"]


def test_invalid_parameters_name_each_field(driver: Driver) -> None:
    with pytest.raises(InvalidInput) as err:
        driver.machine.submit("hello_world", {"n": 0, "colour": "red"})
    fields = {f["field"] for f in err.value.details["fields"]}
    assert fields == {"n", "colour"}
    assert driver.sql("SELECT count(*) AS n FROM geoetl.jobs")[0]["n"] == 0
