"""DESIGN.md section 4, one test (or more) per invariant, on a real database with the machine in-thread."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from core.errors import Conflict
from core.models import JobStatus, TaskMessage, task_message
from infrastructure.db.database import connect
from infrastructure.db.jobs.unit import COMPLETE_TASK
from tests.helpers.driver import Driver


def count(driver: Driver, query: str, *params: object) -> int:
    return int(driver.sql(query, params)[0]["n"])  # type: ignore[call-overload]


def events(driver: Driver, job_id: str, event: str) -> list[dict[str, object]]:
    return driver.sql(
        "SELECT * FROM geoetl.job_events WHERE job_id = %s AND event = %s ORDER BY event_id", (job_id, event)
    )


# --- 1. idempotent submission --------------------------------------------------------------------


def test_concurrent_identical_submissions_make_one_job(driver: Driver) -> None:
    barrier = threading.Barrier(8)

    def submit(_: int) -> tuple[str, bool]:
        barrier.wait()
        s = driver.machine.submit("hello_world", {"n": 3, "message": "same"})
        return s.job.job_id, s.created

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(submit, range(8)))
    assert len({job_id for job_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert count(driver, "SELECT count(*) AS n FROM geoetl.jobs") == 1
    assert count(driver, "SELECT count(*) AS n FROM geoetl.job_events WHERE event = 'job_submitted'") == 1
    assert driver.queue.depth(driver.machine.jobs_queue) == 1


def test_a_failed_job_is_not_rerun_by_submitting_again_only_by_resubmit(driver: Driver) -> None:
    params = {"n": 2, "fail_indices": [0], "fail_kind": "permanent"}
    job = driver.machine.submit("hello_world", params).job
    assert driver.run(job.job_id) == JobStatus.FAILED
    again = driver.machine.submit("hello_world", params)
    assert not again.created and again.job.status == JobStatus.FAILED and again.job.run == 1
    assert driver.queue.depth(driver.machine.jobs_queue) == 0
    rerun = driver.machine.resubmit(job.job_id)
    assert rerun.run == 2 and rerun.status == JobStatus.QUEUED
    assert driver.run(job.job_id) == JobStatus.FAILED  # the same permanent error, in run 2
    assert [e["run"] for e in events(driver, job.job_id, "job_failed")] == [1, 2]
    assert len(events(driver, job.job_id, "job_resubmitted")) == 1


# --- 2. a task is counted once -------------------------------------------------------------------


def test_the_same_task_message_twice_runs_no_extra_work(driver: Driver) -> None:
    job = driver.machine.submit("hello_world", {"n": 3}).job
    driver.step_jobs()  # plans stage 1
    messages = driver.receive(driver.machine.tasks_queue)
    assert len(messages) == 3
    for m in messages:
        assert driver.machine.handle_task_message(m.body) == "completed"
        assert driver.machine.handle_task_message(m.body) == "duplicate"
        driver.queue.complete(driver.machine.tasks_queue, m)
    stage = driver.sql(
        "SELECT completed_count, task_count FROM geoetl.stages WHERE job_id = %s AND stage = 1", (job.job_id,)
    )
    assert stage == [{"completed_count": 3, "task_count": 3}]
    assert driver.run(job.job_id) == JobStatus.COMPLETED
    assert len(events(driver, job.job_id, "stage_planned")) == 2


def test_only_the_current_attempt_can_complete_a_task(driver: Driver) -> None:
    job = driver.machine.submit("hello_world", {"n": 1}).job
    driver.step_jobs()
    [message] = driver.receive(driver.machine.tasks_queue)
    task_id = TaskMessage.model_validate_json(message.body).task_id
    claimed = driver.ctx.job_store.claim_task(task_id, 1, 30, "test")
    assert claimed is not None
    store = driver.ctx.job_store
    assert store.complete_task(task_id, 2, {}, None) is None  # attempt 2 is not running: no transition, no count
    progress = store.complete_task(task_id, 1, {"index": 0, "greeting": "x", "attempt": 1}, None)
    assert progress is not None and progress.completed_count == 1
    assert store.complete_task(task_id, 1, {}, None) is None  # a second completion of the same attempt: a no-op
    assert (
        count(driver, "SELECT completed_count AS n FROM geoetl.stages WHERE job_id = %s AND stage = 1", job.job_id) == 1
    )


# --- 3. exactly one completer advances a stage ---------------------------------------------------


def test_concurrent_completions_advance_the_stage_once(driver: Driver) -> None:
    job = driver.machine.submit("hello_world", {"n": 40}).job
    driver.step_jobs()
    messages = driver.receive(driver.machine.tasks_queue)
    barrier = threading.Barrier(8)

    def work(chunk: list[bytes]) -> list[str]:
        barrier.wait()
        return [driver.machine.handle_task_message(body) for body in chunk]

    bodies = [m.body for m in messages]
    with ThreadPoolExecutor(8) as pool:
        outcomes = [o for chunk in pool.map(work, [bodies[i::8] for i in range(8)]) for o in chunk]
    assert outcomes.count("completed") == 40
    assert len(events(driver, job.job_id, "stage_completed")) == 1
    # exactly one job message for stage 2 (besides the completed submission message)
    assert [m.message_id.rsplit(":", 1)[-1] for m in driver.receive(driver.machine.jobs_queue)] == ["s2"]


def test_a_duplicate_job_message_plans_nothing_twice(driver: Driver) -> None:
    job = driver.machine.submit("hello_world", {"n": 5}).job
    [message] = driver.receive(driver.machine.jobs_queue)
    assert driver.machine.handle_job_message(message.body) == "planned"
    assert driver.machine.handle_job_message(message.body) == "waiting"
    assert count(driver, "SELECT count(*) AS n FROM geoetl.tasks WHERE job_id = %s", job.job_id) == 5
    assert driver.queue.depth(driver.machine.tasks_queue) == 5
    assert len(events(driver, job.job_id, "stage_planned")) == 1


def test_concurrent_planners_insert_each_task_once(driver: Driver) -> None:
    job = driver.machine.submit("hello_world", {"n": 300}).job
    [message] = driver.receive(driver.machine.jobs_queue)
    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(lambda _: driver.machine.handle_job_message(message.body), range(4)))
    assert sorted(outcomes) == ["planned", "waiting", "waiting", "waiting"]
    assert count(driver, "SELECT count(*) AS n FROM geoetl.tasks WHERE job_id = %s", job.job_id) == 300
    assert driver.queue.depth(driver.machine.tasks_queue) == 300


# --- 4. completing a task is O(1) ----------------------------------------------------------------


@pytest.mark.parametrize("stage_size", [10, 3000])
def test_completing_a_task_reads_a_constant_number_of_rows(driver: Driver, stage_size: int) -> None:
    """Counted with pg_stat_xact_user_tables inside the completing transaction, on a new backend (whose
    pending statistics hold nothing else): no scan over the stage, one row updated in each table."""
    job = driver.machine.submit("hello_world", {"n": stage_size}).job
    driver.step_jobs()
    task_id = f"{job.job_id}-r1-s1-t{stage_size // 2}"
    assert driver.ctx.job_store.claim_task(task_id, 1, 30, "test") is not None
    with connect(driver.ctx.settings.database, row_factory=dict_row) as conn, conn.transaction():
        result = Jsonb({"index": 0, "greeting": "x", "attempt": 1})
        assert conn.execute(COMPLETE_TASK, (result, None, task_id, 1)).fetchone() is not None
        stats = {
            r["relname"]: r
            for r in conn.execute(
                "SELECT relname, seq_scan, seq_tup_read, idx_tup_fetch, n_tup_upd "
                "FROM pg_stat_xact_user_tables WHERE schemaname = 'geoetl'"
            ).fetchall()
        }
    assert stats["tasks"]["seq_scan"] == 0 and stats["stages"]["seq_scan"] == 0
    assert stats["tasks"]["idx_tup_fetch"] <= 2 and stats["stages"]["idx_tup_fetch"] <= 2
    assert stats["tasks"]["n_tup_upd"] == 1 and stats["stages"]["n_tup_upd"] == 1


# --- 5. terminal states are final ----------------------------------------------------------------


def test_a_failed_job_never_advances_and_late_tasks_are_ignored(driver: Driver) -> None:
    job = driver.machine.submit("hello_world", {"n": 3, "fail_indices": [2], "fail_kind": "permanent"}).job
    driver.step_jobs()
    messages = {TaskMessage.model_validate_json(m.body).task_id: m for m in driver.receive(driver.machine.tasks_queue)}
    late = f"{job.job_id}-r1-s1-t0"
    claimed = driver.ctx.job_store.claim_task(late, 1, 30, "slow-worker")  # running while the job fails
    assert claimed is not None
    assert driver.machine.handle_task_message(messages[f"{job.job_id}-r1-s1-t2"].body) == "failed"
    assert driver.status(job.job_id) == JobStatus.FAILED
    # the third task was queued: cancelled with the job, and its message is now a no-op
    assert driver.machine.handle_task_message(messages[f"{job.job_id}-r1-s1-t1"].body) == "duplicate"
    statuses = driver.sql(
        "SELECT task_index, status::text FROM geoetl.tasks WHERE job_id = %s ORDER BY 1", (job.job_id,)
    )
    assert [r["status"] for r in statuses] == ["cancelled", "cancelled", "failed"]  # the running one too
    # the running task finishes late: not counted, the job stays failed and stage 2 is never planned
    assert driver.ctx.job_store.complete_task(late, 1, {"index": 0, "greeting": "x", "attempt": 1}, None) is None
    assert not driver.ctx.job_store.renew_lease(late, 1, 30)  # its heartbeat() says stop
    driver.machine.advance(job.job_id, 1)
    assert driver.status(job.job_id) == JobStatus.FAILED
    assert count(driver, "SELECT count(*) AS n FROM geoetl.tasks WHERE job_id = %s AND stage = 2", job.job_id) == 0
    assert driver.machine.cancel(job.job_id).status == JobStatus.FAILED  # cancelling changes nothing either


def test_completed_jobs_cannot_be_cancelled_and_run_again_only_when_resubmitted(driver: Driver) -> None:
    job = driver.machine.submit("hello_world", {"n": 1}).job
    assert driver.run(job.job_id) == JobStatus.COMPLETED
    with pytest.raises(Conflict):
        driver.machine.cancel(job.job_id)
    assert driver.machine.submit("hello_world", {"n": 1}).created is False  # never silently
    assert driver.status(job.job_id) == JobStatus.COMPLETED
    rerun = driver.machine.resubmit(job.job_id)  # explicitly (its inputs changed): the next run
    assert rerun.run == 2 and rerun.status == JobStatus.QUEUED and rerun.result_data is None
    with pytest.raises(Conflict):
        driver.machine.resubmit(job.job_id)  # not while it runs
    assert driver.run(job.job_id) == JobStatus.COMPLETED
    assert count(driver, "SELECT count(*) AS n FROM geoetl.tasks WHERE job_id = %s", job.job_id) == 2


def test_a_cancelled_job_stops_and_can_be_resubmitted(driver: Driver) -> None:
    job = driver.machine.submit("hello_world", {"n": 4}).job
    driver.step_jobs()  # stage 1 planned, 4 tasks queued
    cancelled = driver.machine.cancel(job.job_id)
    assert cancelled.status == JobStatus.CANCELLED
    assert driver.step_tasks() == 4  # the four task messages: no-ops
    assert set(driver.outcomes[-4:]) == {"duplicate"}
    assert (
        count(driver, "SELECT count(*) AS n FROM geoetl.tasks WHERE job_id = %s AND status = 'cancelled'", job.job_id)
        == 4
    )
    assert driver.machine.cancel(job.job_id).status == JobStatus.CANCELLED  # twice: harmless
    driver.machine.resubmit(job.job_id)
    assert driver.run(job.job_id) == JobStatus.COMPLETED
    row = driver.ctx.job_store.job(job.job_id)
    assert row is not None and row["run"] == 2 and row["result_data"]["greetings"] == 4


# --- 7. retries ----------------------------------------------------------------------------------


def test_retries_follow_the_exponential_backoff(driver: Driver) -> None:
    job = driver.machine.submit("hello_world", {"n": 2, "fail_indices": [1], "fail_attempts": 3}).job
    assert driver.run(job.job_id) == JobStatus.COMPLETED
    retried = events(driver, job.job_id, "task_retried")
    assert [e["details"]["attempt"] for e in retried] == [1, 2, 3]  # type: ignore[index]
    base = driver.machine.settings.task_retry_base_seconds
    assert [e["details"]["delay_seconds"] for e in retried] == [base, 2 * base, 4 * base]  # type: ignore[index]
    task = driver.sql("SELECT attempt, status::text FROM geoetl.tasks WHERE task_id = %s", (f"{job.job_id}-r1-s1-t1",))
    assert task == [{"attempt": 4, "status": "completed"}]
    # each retry was scheduled its backoff after the failure, in database time
    gaps = driver.sql(
        "SELECT round(extract(epoch FROM (details->>'not_before')::timestamptz - created_at)::numeric, 2)::float AS s "
        "FROM geoetl.job_events WHERE job_id = %s AND event = 'task_retried' ORDER BY event_id",
        (job.job_id,),
    )
    assert [g["s"] for g in gaps] == pytest.approx([base, 2 * base, 4 * base], abs=0.02)


def test_default_backoff_is_5_10_20_seconds(driver: Driver) -> None:
    from core.settings import OrchestrationSettings

    machine = driver.machine
    original = machine.settings
    machine.settings = OrchestrationSettings()
    try:
        assert [machine.backoff(a) for a in (1, 2, 3)] == [5.0, 10.0, 20.0]
        assert machine.settings.task_max_retries == 3
    finally:
        machine.settings = original


def test_a_retry_is_not_claimable_before_its_backoff(driver: Driver) -> None:
    driver.machine.settings = driver.machine.settings.model_copy(update={"task_retry_base_seconds": 60})
    job = driver.machine.submit("hello_world", {"n": 1, "fail_indices": [0]}).job
    driver.step_jobs()
    [message] = driver.receive(driver.machine.tasks_queue)
    assert driver.machine.handle_task_message(message.body) == "retried"
    task_id = f"{job.job_id}-r1-s1-t0"
    early = task_message(task_id, 2)  # a stray early delivery of attempt 2
    assert driver.machine.handle_task_message(early.body) == "early"
    assert driver.ctx.job_store.claim_task(task_id, 2, 30, "test") is None
    row = driver.sql(
        "SELECT not_before - now() > interval '55 seconds' AS later FROM geoetl.tasks WHERE task_id = %s", (task_id,)
    )
    assert row == [{"later": True}]
    visible = driver.sql(
        "SELECT count(*) AS n FROM geoetl.queue_messages WHERE queue_name = %s AND message_id LIKE %s "
        "AND visible_at <= now()",
        (driver.machine.tasks_queue, f"{task_id}:a2%"),
    )
    assert visible == [{"n": 0}]  # attempt 2's messages (the retry and the re-sent early one) wait for the backoff
