"""Runs a CoreMachine's messages in the test's own thread, one at a time, from the postgres queue."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from core.janitor import run_janitor
from core.machine import CoreMachine
from core.models import JobStatus
from infrastructure.context import AppContext
from infrastructure.queues import PostgresQueue
from infrastructure.queues.base import ReceivedMessage
from triggers.runtime import build_machine


@dataclass
class Driver:
    ctx: AppContext
    machine: CoreMachine
    outcomes: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, ctx: AppContext) -> Driver:
        return cls(ctx, ctx.singleton("machine", lambda: build_machine(ctx)))

    @property
    def queue(self) -> PostgresQueue:
        source = self.ctx.message_source
        assert isinstance(source, PostgresQueue)
        return source

    def receive(self, queue: str, limit: int = 1000) -> list[ReceivedMessage]:
        return list(self.queue.receive(queue, limit, 0))

    def step(self) -> int:
        """Handle every visible message once (job messages first); returns how many were handled."""
        return self.step_jobs() + self.step_tasks()

    def step_jobs(self) -> int:
        """Handle the visible job messages (planning, finalizing)."""
        return self._handle(self.machine.jobs_queue, self.machine.handle_job_message)

    def step_tasks(self) -> int:
        return self._handle(self.machine.tasks_queue, self.machine.handle_task_message)

    def _handle(self, queue: str, handle: Callable[[bytes, str, int], str]) -> int:
        handled = 0
        for message in self.receive(queue):
            self.outcomes.append(handle(message.body, message.message_id, message.delivery_count))
            self.queue.complete(queue, message)
            handled += 1
        return handled

    def run(self, job_id: str, timeout: float = 30.0) -> JobStatus:
        """Handle messages until the job is terminal (waiting for scheduled retries when there are any)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status(job_id)
            if status.terminal:
                return status
            if not self.step():
                time.sleep(0.02)
        raise AssertionError(f"job {job_id} still {self.status(job_id)} after {timeout} s")

    def status(self, job_id: str) -> JobStatus:
        row = self.ctx.job_store.job(job_id)
        assert row is not None
        return JobStatus(row["status"])

    def janitor(self) -> dict[str, int]:
        return run_janitor(self.machine).as_dict()

    def sql(self, query: str, params: tuple[object, ...] = ()) -> list[dict[str, object]]:
        with self.ctx.db.transaction() as conn:
            cur = conn.execute(query, params)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []
