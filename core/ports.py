"""The interfaces through which the CoreMachine reaches the outside; ``infrastructure`` implements them.

* :class:`JobStore` and :class:`Unit`: the job, stage, task and event records (PostgreSQL).
* :class:`MessageSender`: a queue transport's sending side. A ``transactional``
  sender writes messages inside the unit's transaction (the postgres queue), so
  a state change and its message commit together; any other sender is called
  after the commit, and what a crash loses in between the janitor re-drives.
* :class:`PayloadStore`: the claim check for task results too large for a row.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from core.contract import Stage
from core.models import JobRecord, NewTask, QueueMessage, StageRecord, TaskRecord


@dataclass(frozen=True)
class StageProgress:
    """A stage's counters right after a task completed."""

    job_id: str
    run: int
    stage: int
    completed_count: int
    task_count: int

    @property
    def done(self) -> bool:
        return self.completed_count == self.task_count


@dataclass(frozen=True)
class ClaimedTask:
    task: TaskRecord
    job_type: str
    job_parameters: dict[str, Any]


class MessageSender(Protocol):
    transactional: bool

    def send(self, queue: str, messages: Sequence[QueueMessage], conn: Any = None) -> None: ...


class PayloadStore(Protocol):
    def put(self, key: str, data: bytes) -> dict[str, Any]:
        """Store ``data``; returns the reference kept in the record."""
        ...

    def get(self, reference: dict[str, Any]) -> bytes: ...


class Unit(Protocol):
    """Statements of one transaction (see infrastructure/db/jobs/unit.py for their SQL)."""

    def send(self, queue: str, messages: Sequence[QueueMessage]) -> None: ...

    def event(
        self,
        job_id: str,
        run: int,
        event: str,
        stage: int | None = None,
        task_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None: ...

    def insert_job(self, job_id: str, job_type: str, parameters: dict[str, Any], stages: Sequence[Stage]) -> bool: ...
    def get_job(self, job_id: str, lock: bool = False) -> JobRecord | None: ...
    def start_job(self, job_id: str) -> None: ...
    def touch_job(self, job_id: str) -> None: ...
    def set_job_stage(self, job_id: str, run: int, stage: int) -> bool: ...
    def complete_job(self, job_id: str, run: int, result: dict[str, Any]) -> bool: ...
    def end_job(self, job_id: str, run: int, status: str, error: dict[str, Any] | None) -> bool: ...
    def cancel_open_tasks(self, job_id: str) -> int: ...
    def cancel_task(self, task_id: str, attempt: int) -> bool: ...
    def open_tasks(self, job_id: str, stage: int) -> int: ...
    def reset_job_for_rerun(self, job_id: str) -> int: ...
    def get_stage(self, job_id: str, stage: int, lock: bool = False) -> StageRecord | None: ...
    def stage_results(self, job_id: str, stage: int) -> list[tuple[dict[str, Any] | None, dict[str, Any] | None]]: ...
    def insert_tasks(self, job_id: str, run: int, stage: int, tasks: Sequence[NewTask]) -> int: ...
    def mark_stage_planned(self, job_id: str, stage: int, task_count: int) -> None: ...
    def finish_stage(self, job_id: str, stage: int) -> bool: ...
    def recount_stage(self, job_id: str, stage: int) -> StageRecord | None: ...
    def retry_task(
        self, task_id: str, attempt: int, delay_seconds: float, error: dict[str, Any], lease_expired: bool = False
    ) -> TaskRecord | None: ...
    def fail_task(
        self, task_id: str, attempt: int, error: dict[str, Any], lease_expired: bool = False
    ) -> TaskRecord | None: ...
    def count_failure(self, job_id: str, stage: int) -> None: ...
    def lock_cleanup(self, job_id: str) -> int | None: ...
    def set_cleanup(self, job_id: str, run: int | None) -> None: ...
    def touch_queued_tasks(self, task_ids: Sequence[str], older_than_seconds: float) -> list[TaskRecord]: ...


class JobStore(Protocol):
    """Units of work plus the single-statement operations of the task path and the janitor."""

    def unit(self) -> AbstractContextManager[Unit]: ...

    def claim_task(self, task_id: str, attempt: int, lease_seconds: float, worker: str) -> ClaimedTask | None:
        """queued → processing as attempt ``attempt``, only while the job is processing."""
        ...

    def complete_task(
        self, task_id: str, attempt: int, result: dict[str, Any], next_stage_params: dict[str, Any] | None
    ) -> StageProgress | None:
        """processing → completed for this attempt, counted in its stage, as one statement (O(1));
        None when nothing changed (a duplicate, or the attempt lost its lease)."""
        ...

    def task(self, task_id: str) -> TaskRecord | None: ...

    def early(self, task_id: str, attempt: int) -> datetime | None:
        """``not_before`` of a queued task whose attempt ``attempt`` may not start yet (database time), or None."""
        ...

    def renew_lease(self, task_id: str, attempt: int, lease_seconds: float) -> bool: ...

    def results_page(
        self, job_id: str, stage: int, after_index: int, limit: int
    ) -> list[tuple[int, dict[str, Any] | None]]:
        """(task_index, result_data) of completed tasks after ``after_index``, in index order."""
        ...

    def count_completed(self, job_id: str, stage: int) -> int: ...

    def expired_leases(self, limit: int) -> list[TaskRecord]: ...

    def stale_queued_tasks(self, older_than_seconds: float, limit: int) -> list[str]: ...

    def stale_jobs(self, older_than_seconds: float, limit: int) -> list[tuple[JobRecord, StageRecord]]: ...

    def stuck_stages(self, older_than_seconds: float, limit: int) -> list[tuple[str, int]]: ...
    def pending_cleanups(self, older_than_seconds: float, limit: int) -> list[tuple[str, int]]: ...

    def dead_letter(self, queue: str, message_id: str, body: str, reason: str, delivery_count: int) -> None:
        """Record a message no worker can use, with the reason."""
        ...


def iterate_pages(store: JobStore, job_id: str, stage: int, page_size: int) -> Iterator[tuple[int, Any]]:
    """(index, result) of a stage's completed tasks, read with keyset paging."""
    after = -1
    while True:
        page = store.results_page(job_id, stage, after, page_size)
        yield from page
        if len(page) < page_size:
            return
        after = page[-1][0]
