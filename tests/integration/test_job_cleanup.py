"""The clean-up hook: a failed or cancelled run gets its job type's clean-up, once per run, on a worker."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from core.contract import JobDefinition, JobEnd, JobResults, Parallelism, PreviousStage, Stage, TaskContext
from core.errors import InvalidInput, StorageUnavailable
from core.machine import CoreMachine
from core.registry import Registry
from infrastructure.context import AppContext
from tests.helpers.driver import Driver
from tests.plugins.machine import FAST

registry = Registry()
cleanups: list[tuple[str, int, str]] = []
flaky: list[str] = []


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fail: bool = False
    tag: str = "a"


class Part(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fail: bool


@registry.task("cleanup_demo.write")
def write(params: Part, context: TaskContext) -> dict[str, Any]:
    context.storage.write_bytes("silver", f"demo/{context.job_id}/out.txt", b"partial")
    if params.fail:
        raise InvalidInput("this input is bad")
    return {"ok": True}


@registry.job
class CleanupDemo(JobDefinition[Params]):
    job_type = "cleanup_demo"
    parameters_model = Params
    stages = (Stage("write", "cleanup_demo.write", Parallelism.SINGLE),)

    def create_tasks(self, stage: int, params: Params, previous: PreviousStage) -> Sequence[BaseModel]:
        return [Part(fail=params.fail)]

    def finalize(self, params: Params, results: JobResults) -> dict[str, Any]:
        return {}

    def cleanup(self, params: Params, end: JobEnd) -> Mapping[str, Any]:
        if flaky:
            raise StorageUnavailable(flaky.pop())
        removed = end.storage.delete("silver", f"demo/{end.job_id}/out.txt")
        cleanups.append((end.job_id, end.run, end.status))
        return {"removed": removed}


registry.check()


def demo_driver(ctx: AppContext) -> Driver:
    settings = ctx.settings
    machine = CoreMachine(
        registry,
        ctx.job_store,
        FAST,
        settings.queue.jobs_queue_name,
        settings.queue.tasks_queue_name,
        resources={"storage": lambda: ctx.storage, "db": lambda: ctx.db, "settings": lambda: ctx.settings},
    )
    return Driver(ctx, machine)


def events(driver: Driver, job_id: str) -> list[dict[str, object]]:
    return driver.sql("SELECT event, details FROM geoetl.job_events WHERE job_id = %s ORDER BY event_id", (job_id,))


def test_a_failed_run_is_cleaned_up_once(machine_context: AppContext) -> None:
    driver, cleanups[:] = demo_driver(machine_context), []
    job = driver.machine.submit("cleanup_demo", {"fail": True}).job
    assert driver.run(job.job_id) == "failed"
    driver.step()  # the clean-up message, sent with the failure
    assert cleanups == [(job.job_id, 1, "failed")]
    assert not machine_context.storage.exists("silver", f"demo/{job.job_id}/out.txt")
    cleaned = [e for e in events(driver, job.job_id) if e["event"] == "job_cleaned_up"]
    assert cleaned == [{"event": "job_cleaned_up", "details": {"removed": True}}]
    assert driver.machine.cleanup(job.job_id, 1) == "cleaned"  # idempotent when repeated
    assert driver.machine.cleanup(job.job_id, 2) == "ignored"  # not a run of this job


def test_a_completed_job_is_not_cleaned_up(machine_context: AppContext) -> None:
    driver, cleanups[:] = demo_driver(machine_context), []
    job = driver.machine.submit("cleanup_demo", {"fail": False}).job
    assert driver.run(job.job_id) == "completed"
    driver.step()
    assert cleanups == []
    assert machine_context.storage.exists("silver", f"demo/{job.job_id}/out.txt")
    assert driver.machine.cleanup(job.job_id, 1) == "ignored"


def test_a_cancelled_run_is_cleaned_up_and_a_retryable_error_brings_the_message_back(
    machine_context: AppContext,
) -> None:
    driver, cleanups[:] = demo_driver(machine_context), []
    job = driver.machine.submit("cleanup_demo", {"tag": "cancel"}).job
    driver.step_jobs()
    driver.step_tasks()  # the output is written; the job completes only at its next job message
    driver.machine.cancel(job.job_id)
    flaky.append("storage down")
    messages = driver.receive(driver.machine.jobs_queue)
    cleanup = [m for m in messages if m.message_id.endswith(":cleanup")]
    assert len(cleanup) == 1
    try:
        driver.machine.handle_job_message(cleanup[0].body, cleanup[0].message_id, 1)
        raise AssertionError("a retryable clean-up error must come back to the transport")
    except StorageUnavailable:
        pass
    assert driver.machine.handle_job_message(cleanup[0].body, cleanup[0].message_id, 2) == "cleaned"
    assert cleanups == [(job.job_id, 1, "cancelled")]


def test_a_broken_cleanup_is_recorded_not_retried(machine_context: AppContext) -> None:
    driver = demo_driver(machine_context)
    job = driver.machine.submit("cleanup_demo", {"fail": True, "tag": "broken"}).job
    assert driver.run(job.job_id) == "failed"
    original = CleanupDemo.cleanup
    try:
        CleanupDemo.cleanup = lambda self, params, end: {}["missing"]  # type: ignore[assignment, index, method-assign]
        assert driver.machine.cleanup(job.job_id, 1) == "cleanup_failed"
    finally:
        CleanupDemo.cleanup = original  # type: ignore[method-assign]
    failed = [e for e in events(driver, job.job_id) if e["event"] == "cleanup_failed"]
    assert len(failed) == 1 and "KeyError" in str(failed[0]["details"])
