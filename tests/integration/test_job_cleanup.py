"""The clean-up hook: a failed or cancelled run gets its job type's clean-up, once per run, on a worker."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from core.contract import JobDefinition, JobEnd, JobResults, Parallelism, PreviousStage, Stage, TaskContext
from core.errors import InvalidInput, StorageUnavailable
from core.machine import CLEANUP_MAX_DELIVERIES, CoreMachine
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
    assert driver.machine.cleanup(job.job_id, 1) == "ignored"  # done: a second delivery does nothing
    assert driver.machine.cleanup(job.job_id, 2) == "ignored"  # not a run of this job
    assert driver.sql("SELECT cleanup_run FROM geoetl.jobs WHERE job_id = %s", (job.job_id,)) == [{"cleanup_run": None}]


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
    with pytest.raises(StorageUnavailable):  # a retryable clean-up error comes back to the transport
        driver.machine.handle_job_message(cleanup[0].body, cleanup[0].message_id, 1)
    assert driver.machine.handle_job_message(cleanup[0].body, cleanup[0].message_id, 2) == "cleaned"
    assert cleanups == [(job.job_id, 1, "cancelled")]


def test_a_broken_cleanup_is_retried_a_few_times_then_recorded(machine_context: AppContext) -> None:
    driver = demo_driver(machine_context)
    job = driver.machine.submit("cleanup_demo", {"fail": True, "tag": "broken"}).job
    assert driver.run(job.job_id) == "failed"
    original = CleanupDemo.cleanup
    try:
        CleanupDemo.cleanup = lambda self, params, end: {}["missing"]  # type: ignore[assignment, index, method-assign]
        for delivery in range(1, CLEANUP_MAX_DELIVERIES):
            with pytest.raises(KeyError):
                driver.machine.cleanup(job.job_id, 1, delivery)  # maybe a passing fault: the message comes back
        assert driver.machine.cleanup(job.job_id, 1, CLEANUP_MAX_DELIVERIES) == "cleanup_failed"
    finally:
        CleanupDemo.cleanup = original  # type: ignore[method-assign]
    failed = [e for e in events(driver, job.job_id) if e["event"] == "cleanup_failed"]
    assert len(failed) == 1 and "KeyError" in str(failed[0]["details"])
    assert driver.machine.cleanup(job.job_id, 1) == "ignored"  # recorded: no longer pending


def test_the_janitor_resends_a_lost_cleanup_message(machine_context: AppContext) -> None:
    driver, cleanups[:] = demo_driver(machine_context), []
    job = driver.machine.submit("cleanup_demo", {"fail": True, "tag": "lost"}).job
    assert driver.run(job.job_id) == "failed"
    driver.sql("DELETE FROM geoetl.queue_messages WHERE message_id LIKE %s", (f"{job.job_id}:%cleanup%",))
    assert driver.step() == 0 and cleanups == []  # the message is lost
    assert driver.janitor()["cleanups_redriven"] == 1
    driver.step()
    assert cleanups == [(job.job_id, 1, "failed")]
    assert driver.janitor()["cleanups_redriven"] == 0  # done: nothing pending


def test_a_resubmit_waits_for_a_running_cleanup_and_the_new_run_is_not_cleaned(machine_context: AppContext) -> None:
    driver, cleanups[:] = demo_driver(machine_context), []
    job = driver.machine.submit("cleanup_demo", {"fail": True, "tag": "resubmit"}).job
    assert driver.run(job.job_id) == "failed"
    entered, release = threading.Event(), threading.Event()
    original = CleanupDemo.cleanup

    def slow(self: CleanupDemo, params: Params, end: JobEnd) -> Mapping[str, Any]:
        entered.set()
        release.wait(10)
        return original(self, params, end)

    resubmitted: list[int] = []
    try:
        CleanupDemo.cleanup = slow  # type: ignore[method-assign]
        cleaner = threading.Thread(target=driver.machine.cleanup, args=(job.job_id, 1))
        cleaner.start()
        assert entered.wait(10)
        resubmit = threading.Thread(target=lambda: resubmitted.append(driver.machine.resubmit(job.job_id).run))
        resubmit.start()
        resubmit.join(0.3)
        assert resubmitted == []  # waits for the clean-up of run 1
        release.set()
        cleaner.join(10)
        resubmit.join(10)
    finally:
        CleanupDemo.cleanup = original  # type: ignore[method-assign]
    assert resubmitted == [2] and cleanups == [(job.job_id, 1, "failed")]
    assert driver.machine.cleanup(job.job_id, 1) == "ignored"
