"""The CoreMachine: jobs as ordered stages of parallel tasks, exactly once on top of at-least-once messages.

PostgreSQL holds the truth; messages carry ids and only wake workers up.

* **Job messages** plan the job's current stage (tasks inserted if absent, then
  enqueued) or, when every stage is complete, finalize the job.
* **Task messages** claim the task (queued → processing, attempt + 1, a lease),
  run its handler while a heartbeat renews the lease, then record the outcome.
  Completing counts the task in its stage's counter in the same statement; the
  one completion that makes the counter reach the stage's task count finishes
  the stage and moves the job on (invariants 2 to 4).
* A retryable error re-queues the task after an exponential backoff; a
  permanent one, or the last attempt, fails the task and its job, cancelling
  the job's queued tasks (invariants 5 and 7). :mod:`core.janitor` re-drives
  whatever a crash leaves behind (invariant 6).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from core.contract import JobDefinition, JobEnd, Parallelism, PreviousStage
from core.errors import (
    Conflict,
    InvalidInput,
    InvalidMessage,
    LeaseExpired,
    NotFound,
    RetryableError,
)
from core.models import (
    JobMessage,
    JobRecord,
    JobStatus,
    NewTask,
    StageRecord,
    StageStatus,
    TaskMessage,
    TaskRecord,
    TaskStatus,
    canonical_json,
    cleanup_message,
    is_job_id,
    job_id_for,
    job_message,
    parse_message,
    parse_task_id,
    task_id_for,
    task_message,
)
from core.outcomes import as_json, dump, error_of, is_retryable, retry_busy
from core.ports import JobStore, PayloadStore, Unit
from core.registry import Registry, TaskHandler
from core.running import ClaimCheck, LeaseKeeper, RunningTask, StoredResults
from core.settings import OrchestrationSettings

log = logging.getLogger("geoetl.machine")

MAX_PARAMETERS_BYTES = 256 * 1024
CLEANUP_MAX_DELIVERIES = 3  # deliveries of one clean-up message that may end in a retryable error


@dataclass(frozen=True)
class Submission:
    job: JobRecord
    created: bool  # False: an identical job already existed (nothing new was made)


class CoreMachine:
    def __init__(
        self,
        registry: Registry,
        store: JobStore,
        settings: OrchestrationSettings,
        jobs_queue: str,
        tasks_queue: str,
        resources: Mapping[str, Callable[[], Any]] | None = None,
        payloads: PayloadStore | None = None,
        unique_redrive_ids: bool = True,
    ) -> None:
        self.registry, self.store, self.settings = registry, store, settings
        self.jobs_queue, self.tasks_queue = jobs_queue, tasks_queue
        self.resources = dict(resources or {})
        self.claim_check = ClaimCheck(payloads, settings.result_inline_max_bytes)
        self.leases = LeaseKeeper()
        self.unique_redrive_ids = unique_redrive_ids  # the janitor's re-sends (see core/janitor.py)
        self.host = socket.gethostname()

    # --- submission, resubmission, cancellation -------------------------------------------------

    def submit(self, job_type: str, raw_parameters: Mapping[str, Any]) -> Submission:
        """Validate and record a job (idempotent: the same validated parameters give the same job)."""
        definition = self.registry.job_definition(job_type)
        try:
            params = definition.parameters_model.model_validate(dict(raw_parameters))
        except ValidationError as exc:
            raise InvalidInput(
                "invalid parameters: " + error_of(exc)["message"],
                fields=[{"field": ".".join(map(str, e["loc"])), "problem": e["msg"]} for e in exc.errors()],
            ) from None
        definition.validate_submission(params)
        parameters = params.model_dump(mode="json")
        if len(canonical_json(parameters).encode()) > MAX_PARAMETERS_BYTES:
            raise InvalidInput(f"parameters exceed {MAX_PARAMETERS_BYTES} bytes; put large inputs in storage")
        job_id = job_id_for(job_type, parameters)
        with self.store.unit() as u:
            created = u.insert_job(job_id, job_type, parameters, definition.stages)
            if created:
                u.event(job_id, 1, "job_submitted", details={"job_type": job_type, "stages": len(definition.stages)})
                u.send(self.jobs_queue, [job_message(job_id, 1, "s1")])
            job = u.get_job(job_id)
        assert job is not None
        return Submission(job, created)

    def resubmit(self, job_id: str) -> JobRecord:
        """A new run of an ended job (same id): failed, cancelled, or completed when its inputs changed.

        Never silently: submitting the same parameters again returns the existing job. Its history stays
        in the event log."""
        with self.store.unit() as u:
            job = self._existing(u, job_id)
            if not job.status.terminal:
                raise Conflict(f"job {job_id} is {job.status}; only a job that has ended can be resubmitted")
            run = u.reset_job_for_rerun(job_id)
            u.event(
                job_id,
                run,
                "job_resubmitted",
                details={"previous_run": job.run, "previous_status": str(job.status), "error": job.error_details},
            )
            u.send(self.jobs_queue, [job_message(job_id, run, "s1")])
            rerun = u.get_job(job_id)
        assert rerun is not None
        return rerun

    def cancel(self, job_id: str) -> JobRecord:
        """queued/processing → cancelled, with every open task; running handlers finish but count for nothing."""
        with self.store.unit() as u:
            job = self._existing(u, job_id)
            if job.status == JobStatus.COMPLETED:
                raise Conflict(f"job {job_id} has completed; there is nothing to cancel")
            if not job.status.terminal:
                error = {"code": "cancelled", "message": "cancelled on request", "details": {}}
                if u.end_job(job_id, job.run, JobStatus.CANCELLED, error):
                    cancelled = u.cancel_open_tasks(job_id)
                    u.event(job_id, job.run, "job_cancelled", details={"cancelled_tasks": cancelled})
                    self._ask_cleanup(u, job)
            ended = u.get_job(job_id)
        assert ended is not None
        return ended

    @staticmethod
    def _existing(u: Unit, job_id: str) -> JobRecord:
        job = u.get_job(job_id, lock=True) if is_job_id(job_id) else None
        if job is None:
            raise NotFound(f"no job with id {job_id}")
        return job

    # --- job messages ---------------------------------------------------------------------------

    def handle_job_message(self, body: bytes | str, message_id: str = "", delivery_count: int = 1) -> str:
        """Run one job message; a message no worker can use is dead-lettered with the reason, never raised."""
        try:
            message: JobMessage = parse_message(body, JobMessage)
            if message.action == "cleanup":
                return self.cleanup(message.job_id, message.run, delivery_count)
            return self.advance(message.job_id, message.run)
        except InvalidMessage as exc:
            return self._dead_letter(self.jobs_queue, message_id, body, exc, delivery_count)

    def advance(self, job_id: str, run: int) -> str:
        """Do the job's next step: plan the current stage, or finalize. Safe to repeat."""
        while True:
            with self.store.unit() as u:
                job = u.get_job(job_id, lock=True)
                if job is None:
                    raise InvalidMessage(f"job {job_id} does not exist")
                if job.run != run or job.status.terminal:
                    return "ignored"
                definition = self.registry.jobs.get(job.job_type)
                if definition is None:
                    self._fail_job(
                        u,
                        job,
                        {
                            "code": "unknown_job_type",
                            "message": f"job type {job.job_type!r} is not registered in this deployment",
                            "details": {},
                        },
                    )
                    return "failed"
                stage = u.get_stage(job_id, job.stage, lock=True)
                assert stage is not None
                changed = self._definition_changed(definition, job, stage)
                if changed:
                    self._fail_job(u, job, {"code": "job_definition_changed", "message": changed, "details": {}})
                    return "failed"
                if job.status == JobStatus.QUEUED:
                    u.start_job(job_id)
                    u.event(job_id, run, "job_started")
                if stage.status == StageStatus.PLANNED:
                    return "waiting"
                if stage.status == StageStatus.PENDING:
                    planned = self._plan(u, job, definition, stage)
                    if planned != "empty":
                        return planned
                # the stage is complete (now or before): the next stage, or the end
                if job.stage == job.total_stages:
                    return self._finalize(u, job, definition)
                u.set_job_stage(job_id, run, job.stage + 1)

    @staticmethod
    def _definition_changed(definition: JobDefinition[Any], job: JobRecord, stage: StageRecord) -> str | None:
        """Why the code's job definition no longer fits the job's records (a deploy changed its stages)."""
        spec = definition.stages[stage.stage - 1] if stage.stage <= len(definition.stages) else None
        if len(definition.stages) != job.total_stages or spec is None or spec.task_type != stage.task_type:
            return (
                f"job type {job.job_type!r} changed since this job was submitted (its stages differ); submit it again"
            )
        return None

    def _plan(self, u: Unit, job: JobRecord, definition: JobDefinition[Any], stage: StageRecord) -> str:
        """Insert and enqueue the stage's tasks: 'planned', 'empty' (no tasks: complete at once) or 'failed'.

        Errors of the job's own code (create_tasks, validation) fail the job, except our retryable errors
        (a dependency down), which make the message come back; database errors reading the previous
        stage are raised as they are (translated, retryable)."""
        spec = definition.stages[stage.stage - 1]
        handler = self.registry.handler(spec.task_type)
        assert handler is not None  # the registry was checked at start-up
        fan_in = spec.parallelism == Parallelism.FAN_IN
        previous = PreviousStage(0) if fan_in else self._previous(u, job.job_id, stage.stage)
        try:
            parameters = [{}] if fan_in else self._task_parameters(job, definition, stage.stage, handler, previous)
        except RetryableError:
            raise
        except Exception as exc:
            self._fail_job(u, job, {**error_of(exc), "stage": stage.stage, "during": "planning"})
            return "failed"
        retries = self.settings.task_max_retries if spec.max_retries is None else spec.max_retries
        tasks = [
            NewTask(task_id_for(job.job_id, job.run, stage.stage, i), i, spec.task_type, p, retries + 1)
            for i, p in enumerate(parameters)
        ]
        u.insert_tasks(job.job_id, job.run, stage.stage, tasks)
        u.mark_stage_planned(job.job_id, stage.stage, len(tasks))
        u.event(
            job.job_id,
            job.run,
            "stage_planned",
            stage=stage.stage,
            details={"name": spec.name, "task_type": spec.task_type, "tasks": len(tasks)},
        )
        if not tasks:
            u.finish_stage(job.job_id, stage.stage)
            u.event(job.job_id, job.run, "stage_completed", stage=stage.stage, details={"tasks": 0})
            return "empty"
        batch = self.settings.plan_batch_size
        for start in range(0, len(tasks), batch):
            u.send(self.tasks_queue, [task_message(t.task_id, 1) for t in tasks[start : start + batch]])
        return "planned"

    @staticmethod
    def _task_parameters(
        job: JobRecord, definition: JobDefinition[Any], number: int, handler: TaskHandler, previous: PreviousStage
    ) -> list[dict[str, Any]]:
        spec = definition.stages[number - 1]
        params = definition.parameters_model.model_validate(job.parameters)
        created = list(definition.create_tasks(number, params, previous))
        if spec.parallelism == Parallelism.SINGLE and len(created) != 1:
            raise InvalidInput(f"stage {number} ({spec.name}) is single but create_tasks returned {len(created)} tasks")
        return [as_json(handler.input_model.model_validate(dump(p)).model_dump(mode="json")) for p in created]

    def _previous(self, u: Unit, job_id: str, number: int) -> PreviousStage:
        if number == 1:
            return PreviousStage(0)
        rows = u.stage_results(job_id, number - 1)
        merged: dict[str, Any] = {}
        for _, published in rows:
            merged.update(published or {})
        return PreviousStage(number - 1, [self.claim_check.load(r) for r, _ in rows], merged)

    def _finalize(self, u: Unit, job: JobRecord, definition: JobDefinition[Any]) -> str:
        """The job's result from every stage's results; a large one is kept as a blob (claim check)."""
        try:
            params = definition.parameters_model.model_validate(job.parameters)
            output = dump(definition.finalize(params, StoredResults(self.store, job.job_id, self.claim_check)))
            result = self.claim_check.store(f"results/{job.job_id}/job-r{job.run}.json", as_json(output))
        except RetryableError:
            raise
        except Exception as exc:
            self._fail_job(u, job, {**error_of(exc), "during": "finalize"})
            return "failed"
        if u.complete_job(job.job_id, job.run, result):
            u.event(job.job_id, job.run, "job_completed")
        return "completed"

    # --- task messages --------------------------------------------------------------------------

    def handle_task_message(self, body: bytes | str, message_id: str = "", delivery_count: int = 1) -> str:
        try:
            message: TaskMessage = parse_message(body, TaskMessage)
            return self.run_task(message.task_id, message.attempt)
        except InvalidMessage as exc:
            return self._dead_letter(self.tasks_queue, message_id, body, exc, delivery_count)

    def run_task(self, task_id: str, attempt: int) -> str:
        """Claim, run and record attempt ``attempt`` of a task; any other delivery is a no-op."""
        lease = self.settings.task_lease_seconds
        worker = f"{self.host}:{os.getpid()}:{threading.current_thread().name}"
        claimed = self.store.claim_task(task_id, attempt, lease, worker)
        if claimed is None:
            return self._unclaimed(task_id, attempt)
        task = claimed.task
        handler = self.registry.handler(task.task_type)
        if handler is None:
            missing = InvalidInput(f"no handler for task type {task.task_type!r} in this deployment")
            return self._task_failed(task, missing)
        renew = lambda: self.store.renew_lease(task.task_id, task.attempt, lease)  # noqa: E731
        with self.leases.hold(renew, lease / 3) as held:
            context = RunningTask(claimed, self.store, self.claim_check, self.resources, held)
            try:
                result = as_json(self._run_handler(handler, task, context))
                published = as_json(context.next_stage_params) if context.next_stage_params is not None else None
                key = f"results/{task.job_id}/{task.task_id}-a{task.attempt}.json"
                stored = self.claim_check.store(key, result)
            except Exception as exc:
                log.info("task %s attempt %d failed: %s", task.task_id, task.attempt, exc)
                return self._task_failed(task, exc)
        return self._task_completed(task, stored, published)

    @staticmethod
    def _run_handler(handler: TaskHandler, task: TaskRecord, context: RunningTask) -> dict[str, Any]:
        params = handler.input_model.model_validate(task.parameters)
        output = handler.fn(params, context)
        if handler.output_model is not None and not isinstance(output, handler.output_model):
            output = handler.output_model.model_validate(output)
        return dump(output)

    def _unclaimed(self, task_id: str, attempt: int) -> str:
        task = self.store.task(task_id)
        if task is None:
            return self._missing_task(task_id)
        not_before = self.store.early(task_id, attempt)  # compared in database time
        if task.status == TaskStatus.QUEUED and not_before is not None:
            # delivered before its backoff ended: deliver again when it has
            later = f":later{int(not_before.timestamp())}"
            with self.store.unit() as u:
                u.send(self.tasks_queue, [task_message(task_id, attempt, not_before, later)])
            return "early"
        return "duplicate"

    def _missing_task(self, task_id: str) -> str:
        """A message of an earlier run (the job was resubmitted) is stale; any other is dead-lettered."""
        parsed = parse_task_id(task_id)
        if parsed is not None:
            with self.store.unit() as u:
                job = u.get_job(parsed[0])
            if job is not None and job.run != parsed[1]:
                return "stale"
        raise InvalidMessage(f"task {task_id} does not exist")

    def _task_completed(self, task: TaskRecord, stored: dict[str, Any], published: dict[str, Any] | None) -> str:
        progress = self.store.complete_task(task.task_id, task.attempt, stored, published)
        if progress is None:
            return "not_counted"  # a duplicate run, or the lease was lost and another attempt owns the task
        if progress.done:  # this completion made the count: this caller moves the job on
            retry_busy(lambda: self._advance_after(task.job_id, progress.run, task.stage))
        return "completed"

    def _advance_after(self, job_id: str, run: int, stage: int) -> str:
        with self.store.unit() as u:
            self._stage_done(u, job_id, run, stage)
        return "advanced"

    def _stage_done(self, u: Unit, job_id: str, run: int, stage: int) -> None:
        """The one caller for whom finish_stage succeeds moves the job on (invariant 3). Locks the job row
        before the stage row, as every other path does."""
        job = u.get_job(job_id, lock=True)
        if job is None or job.run != run or job.status != JobStatus.PROCESSING:
            return  # failed or cancelled meanwhile: never advances again (invariant 5)
        if not u.finish_stage(job_id, stage):
            return
        u.event(job_id, run, "stage_completed", stage=stage)
        if stage < job.total_stages:
            if u.set_job_stage(job_id, run, stage + 1):
                u.send(self.jobs_queue, [job_message(job_id, run, f"s{stage + 1}")])
        else:
            u.send(self.jobs_queue, [job_message(job_id, run, "final")])

    def _task_failed(self, task: TaskRecord, exc: BaseException, lease_expired: bool = False) -> str:
        return retry_busy(lambda: self._record_failure(task, exc, lease_expired))

    def _record_failure(self, task: TaskRecord, exc: BaseException, lease_expired: bool) -> str:
        error = error_of(exc)
        with self.store.unit() as u:
            job = u.get_job(task.job_id, lock=True)
            if job is None or job.run != task.run or job.status != JobStatus.PROCESSING:
                u.cancel_task(task.task_id, task.attempt)
                return "cancelled"  # its job ended meanwhile: nothing to retry (invariant 5)
            if is_retryable(exc) and task.attempt < task.max_attempts:
                delay = self.backoff(task.attempt)
                retried = u.retry_task(task.task_id, task.attempt, delay, error, lease_expired)
                if retried is None:
                    return "not_counted"
                u.event(
                    task.job_id,
                    task.run,
                    "task_retried",
                    stage=task.stage,
                    task_id=task.task_id,
                    details={
                        "attempt": task.attempt,
                        "delay_seconds": delay,
                        "error": error,
                        "not_before": retried.not_before.isoformat() if retried.not_before else None,
                    },
                )
                u.send(self.tasks_queue, [task_message(task.task_id, task.attempt + 1, retried.not_before)])
                return "retried"
            failed = u.fail_task(task.task_id, task.attempt, error, lease_expired)
            if failed is None:
                return "not_counted"
            reason = "permanent error" if not is_retryable(exc) else f"out of retries after {task.attempt} attempts"
            details = {
                "task_id": task.task_id,
                "stage": task.stage,
                "task_index": task.task_index,
                "task_type": task.task_type,
                "attempts": task.attempt,
                "reason": reason,
                "error": error,
            }
            u.event(task.job_id, task.run, "task_failed", stage=task.stage, task_id=task.task_id, details=details)
            message = f"task {task.task_id} failed ({reason}): {error['message']}"
            self._fail_job(u, job, {"code": "task_failed", "message": message, "details": details})
            u.count_failure(task.job_id, task.stage)  # the stage row last (lock order: tasks, then stage)
        return "failed"

    def _fail_job(self, u: Unit, job: JobRecord, error: dict[str, Any]) -> None:
        if u.end_job(job.job_id, job.run, JobStatus.FAILED, error):
            cancelled = u.cancel_open_tasks(job.job_id)
            u.event(job.job_id, job.run, "job_failed", details={**error, "cancelled_tasks": cancelled})
            self._ask_cleanup(u, job)

    def _ask_cleanup(self, u: Unit, job: JobRecord) -> None:
        """In the transaction that ends the run: a message for the job type's clean-up, if it has one."""
        definition = self.registry.jobs.get(job.job_type)
        if definition is not None and definition.has_cleanup():
            u.set_cleanup(job.job_id, job.run)  # pending until done: the janitor re-sends a lost message
            u.send(self.jobs_queue, [cleanup_message(job.job_id, job.run)])

    def cleanup(self, job_id: str, run: int, delivery_count: int = 1) -> str:
        """Run the job type's clean-up of run ``run`` if it is pending: 'cleaned', 'cleanup_failed' or 'ignored'.

        The job row stays locked meanwhile, so a resubmit or a second delivery waits for it. A retryable error
        is raised (the message comes back; the janitor re-sends a lost one) for the first
        ``CLEANUP_MAX_DELIVERIES`` deliveries; then, or for a permanent error, ``cleanup_failed`` is recorded."""
        with self.store.unit() as u:
            job = u.get_job(job_id)
            if job is None:
                raise InvalidMessage(f"job {job_id} does not exist")
            definition = self.registry.jobs.get(job.job_type)
            if u.lock_cleanup(job_id) != run or definition is None:
                return "ignored"  # done already, or nothing to clean
            status = str(job.status) if job.run == run else "ended"  # a newer run may be going on already
            end = JobEnd(job_id, run, status, job.error_details if job.run == run else None, self.resources)
            try:
                params = definition.parameters_model.model_validate(job.parameters)
                details = as_json(dump(definition.cleanup(params, end) or {}))
                event, outcome = "job_cleaned_up", "cleaned"
            except Exception as exc:
                if is_retryable(exc) and delivery_count < CLEANUP_MAX_DELIVERIES:
                    raise
                log.exception("clean-up of job %s run %s failed", job_id, run)
                details = {"error": error_of(exc), "deliveries": delivery_count}
                event, outcome = "cleanup_failed", "cleanup_failed"
            u.event(job_id, run, event, details=details)
            u.set_cleanup(job_id, None)
        return outcome

    def backoff(self, attempt: int) -> float:
        """Seconds before the retry after failed attempt ``attempt`` (5, 10, 20 s with the defaults)."""
        return float(
            min(self.settings.task_retry_max_seconds, self.settings.task_retry_base_seconds * 2 ** (attempt - 1))
        )

    # --- used by the janitor --------------------------------------------------------------------

    def expire_lease(self, task: TaskRecord) -> str:
        """A task whose worker stopped renewing its lease: a new attempt, or failed when out of attempts."""
        expired = LeaseExpired(f"the worker running attempt {task.attempt} stopped renewing its lease")
        return self._task_failed(task, expired, lease_expired=True)

    def repair_stage(self, job_id: str, stage: int) -> str:
        """The current stage of a processing job with no queued or running task left but not finished
        (its last completer died before moving the job on): recount and move on, or fail the job."""
        with self.store.unit() as u:
            job = u.get_job(job_id, lock=True)
            if job is None or job.status != JobStatus.PROCESSING or job.stage != stage:
                return "ignored"
            if u.open_tasks(job_id, stage) > 0:
                return "ignored"  # still running: not stuck (the janitor's list was a moment old)
            record = u.recount_stage(job_id, stage)
            if record is None or record.status != StageStatus.PLANNED:
                return "ignored"
            if record.completed_count == record.task_count:
                self._stage_done(u, job_id, job.run, stage)
                return "advanced"
            error = {
                "code": "stage_incomplete",
                "message": f"stage {stage} ended with {record.completed_count} of {record.task_count} tasks "
                f"completed ({record.failed_count} failed)",
                "details": {"stage": stage},
            }
            self._fail_job(u, job, error)
            return "failed"

    def _dead_letter(self, queue: str, message_id: str, body: bytes | str, exc: InvalidMessage, count: int) -> str:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        text = text.replace("\x00", "\\u0000")  # a text column cannot hold NUL
        self.store.dead_letter(queue, message_id, text, exc.message, count)
        return "dead_lettered"
