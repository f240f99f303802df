"""One transaction of the CoreMachine: every statement that changes a job, its stages or its tasks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from core.contract import Stage
from core.models import JobRecord, NewTask, QueueMessage, StageRecord, TaskRecord
from core.ports import MessageSender
from infrastructure.db.jobs.records import (
    JOB_COLUMNS,
    STAGE_COLUMNS,
    TASK_COLUMNS,
    job_record,
    stage_record,
    task_record,
)

_INSERT_BATCH = 1000

# processing → completed for this attempt only, and the stage counter, in one O(1) statement
COMPLETE_TASK = (
    "WITH done AS (UPDATE geoetl.tasks SET status = 'completed', result_data = %s, next_stage_params = %s, "
    "completed_at = now(), updated_at = now(), lease_expires_at = NULL "
    "WHERE task_id = %s AND status = 'processing' AND attempt = %s RETURNING job_id, run, stage) "
    "UPDATE geoetl.stages s SET completed_count = s.completed_count + 1, updated_at = now() FROM done "
    "WHERE s.job_id = done.job_id AND s.stage = done.stage "
    "RETURNING s.job_id, done.run, s.stage, s.completed_count, s.task_count"
)


def _json(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value)


class PostgresUnit:
    """Statements inside one open transaction; messages are written in it (postgres queue) or sent after commit."""

    def __init__(self, conn: psycopg.Connection[dict[str, Any]], sender: MessageSender) -> None:
        self.conn = conn
        self.sender = sender
        self.outbox: list[tuple[str, list[QueueMessage]]] = []
        self.sent_in_transaction: set[str] = set()  # queues written to in this transaction

    def _one(self, query: str, params: dict[str, Any] | tuple[Any, ...] = ()) -> dict[str, Any] | None:
        return self.conn.execute(query, params).fetchone()  # type: ignore[arg-type]

    # --- messages -------------------------------------------------------------------------------

    def send(self, queue: str, messages: Sequence[QueueMessage]) -> None:
        if not messages:
            return
        if self.sender.transactional:
            self.sender.send(queue, messages, self.conn)
            self.sent_in_transaction.add(queue)
        else:
            self.outbox.append((queue, list(messages)))

    def event(
        self,
        job_id: str,
        run: int,
        event: str,
        stage: int | None = None,
        task_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.conn.execute(
            "INSERT INTO geoetl.job_events (job_id, run, event, stage, task_id, details) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            (job_id, run, event, stage, task_id, Jsonb(details or {})),
        )

    # --- jobs -----------------------------------------------------------------------------------

    def insert_job(self, job_id: str, job_type: str, parameters: dict[str, Any], stages: Sequence[Stage]) -> bool:
        row = self._one(
            "INSERT INTO geoetl.jobs (job_id, job_type, parameters, total_stages) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (job_id) DO NOTHING RETURNING job_id",
            (job_id, job_type, Jsonb(parameters), len(stages)),
        )
        if row is None:
            return False
        with self.conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO geoetl.stages (job_id, stage, name, task_type, parallelism) VALUES (%s, %s, %s, %s, %s)",
                [(job_id, n, s.name, s.task_type, str(s.parallelism)) for n, s in enumerate(stages, start=1)],
            )
        return True

    def get_job(self, job_id: str, lock: bool = False) -> JobRecord | None:
        row = self._one(
            f"SELECT {JOB_COLUMNS} FROM geoetl.jobs WHERE job_id = %s{' FOR UPDATE' if lock else ''}", (job_id,)
        )
        return job_record(row) if row else None

    def start_job(self, job_id: str) -> None:
        self.conn.execute(
            "UPDATE geoetl.jobs SET status = 'processing', started_at = coalesce(started_at, now()), "
            "updated_at = now() "
            "WHERE job_id = %s AND status = 'queued'",
            (job_id,),
        )

    def touch_job(self, job_id: str) -> None:
        self.conn.execute("UPDATE geoetl.jobs SET updated_at = now() WHERE job_id = %s", (job_id,))

    def set_job_stage(self, job_id: str, run: int, stage: int) -> bool:
        row = self._one(
            "UPDATE geoetl.jobs SET stage = %s, updated_at = now() "
            "WHERE job_id = %s AND run = %s AND status = 'processing' AND stage = %s - 1 RETURNING job_id",
            (stage, job_id, run, stage),
        )
        return row is not None

    def complete_job(self, job_id: str, run: int, result: dict[str, Any]) -> bool:
        row = self._one(
            "UPDATE geoetl.jobs SET status = 'completed', result_data = %s, completed_at = now(), updated_at = now() "
            "WHERE job_id = %s AND run = %s AND status = 'processing' RETURNING job_id",
            (Jsonb(result), job_id, run),
        )
        return row is not None

    def end_job(self, job_id: str, run: int, status: str, error: dict[str, Any] | None) -> bool:
        """queued/processing → failed or cancelled; terminal states never change (invariant 5)."""
        row = self._one(
            "UPDATE geoetl.jobs SET status = %s, error_details = %s, completed_at = now(), updated_at = now() "
            "WHERE job_id = %s AND run = %s AND status IN ('queued', 'processing') RETURNING job_id",
            (status, _json(error), job_id, run),
        )
        return row is not None

    def cancel_open_tasks(self, job_id: str) -> int:
        """Every queued or running task of an ended job → cancelled: a running handler can no longer record
        anything (its completion and lease renewals match nothing) and its heartbeat() turns False."""
        cur = self.conn.execute(
            "UPDATE geoetl.tasks SET status = 'cancelled', completed_at = now(), updated_at = now() "
            "WHERE job_id = %s AND status IN ('queued', 'processing')",
            (job_id,),
        )
        return cur.rowcount

    def cancel_task(self, task_id: str, attempt: int) -> bool:
        row = self._one(
            "UPDATE geoetl.tasks SET status = 'cancelled', completed_at = now(), updated_at = now() "
            "WHERE task_id = %s AND status = 'processing' AND attempt = %s RETURNING task_id",
            (task_id, attempt),
        )
        return row is not None

    def open_tasks(self, job_id: str, stage: int) -> int:
        """Queued or running tasks of a stage (the janitor's re-check; O(stage size))."""
        row = self._one(
            "SELECT count(*) AS n FROM geoetl.tasks WHERE job_id = %s AND stage = %s "
            "AND status IN ('queued', 'processing')",
            (job_id, stage),
        )
        return int(row["n"]) if row else 0

    def reset_job_for_rerun(self, job_id: str) -> int:
        """A new run of an ended job: tasks removed, stages reset, result cleared; the event log stays."""
        self.conn.execute("DELETE FROM geoetl.tasks WHERE job_id = %s", (job_id,))
        self.conn.execute(
            "UPDATE geoetl.stages SET status = 'pending', task_count = 0, completed_count = 0, failed_count = 0, "
            "planned_at = NULL, completed_at = NULL, updated_at = now() WHERE job_id = %s",
            (job_id,),
        )
        row = self._one(
            "UPDATE geoetl.jobs SET status = 'queued', stage = 1, run = run + 1, result_data = NULL, "
            "error_details = NULL, started_at = NULL, completed_at = NULL, updated_at = now() "
            "WHERE job_id = %s RETURNING run",
            (job_id,),
        )
        assert row is not None
        return int(row["run"])

    # --- stages ---------------------------------------------------------------------------------

    def get_stage(self, job_id: str, stage: int, lock: bool = False) -> StageRecord | None:
        row = self._one(
            f"SELECT {STAGE_COLUMNS} FROM geoetl.stages WHERE job_id = %s AND stage = %s"
            f"{' FOR UPDATE' if lock else ''}",
            (job_id, stage),
        )
        return stage_record(row) if row else None

    def stage_results(self, job_id: str, stage: int) -> list[tuple[dict[str, Any] | None, dict[str, Any] | None]]:
        """(result_data, next_stage_params) of a stage's tasks in index order."""
        rows = self.conn.execute(
            "SELECT result_data, next_stage_params FROM geoetl.tasks WHERE job_id = %s AND stage = %s "
            "AND status = 'completed' ORDER BY task_index",
            (job_id, stage),
        ).fetchall()
        return [(r["result_data"], r["next_stage_params"]) for r in rows]

    def insert_tasks(self, job_id: str, run: int, stage: int, tasks: Sequence[NewTask]) -> int:
        """Insert-if-absent, in batches; each batch travels as one JSON document (fast to encode)."""
        inserted = 0
        for start in range(0, len(tasks), _INSERT_BATCH):
            rows = [
                {
                    "id": t.task_id,
                    "idx": t.task_index,
                    "type": t.task_type,
                    "params": t.parameters,
                    "max": t.max_attempts,
                }
                for t in tasks[start : start + _INSERT_BATCH]
            ]
            cur = self.conn.execute(
                "INSERT INTO geoetl.tasks "
                "(task_id, job_id, run, stage, task_index, task_type, parameters, max_attempts) "
                "SELECT t.id, %s, %s, %s, t.idx, t.type, t.params, t.max "
                "FROM jsonb_to_recordset(%s) AS t(id text, idx int, type text, params jsonb, max int) "
                "ON CONFLICT (task_id) DO NOTHING",
                (job_id, run, stage, Jsonb(rows)),
            )
            inserted += cur.rowcount
        return inserted

    def mark_stage_planned(self, job_id: str, stage: int, task_count: int) -> None:
        self.conn.execute(
            "UPDATE geoetl.stages SET status = 'planned', task_count = %s, planned_at = now(), updated_at = now() "
            "WHERE job_id = %s AND stage = %s AND status = 'pending'",
            (task_count, job_id, stage),
        )

    def finish_stage(self, job_id: str, stage: int) -> bool:
        """planned → completed, true for exactly one caller."""
        row = self._one(
            "UPDATE geoetl.stages SET status = 'completed', completed_at = now(), updated_at = now() "
            "WHERE job_id = %s AND stage = %s AND status = 'planned' AND completed_count = task_count RETURNING stage",
            (job_id, stage),
        )
        return row is not None

    def recount_stage(self, job_id: str, stage: int) -> StageRecord | None:
        """Counters rebuilt from the tasks (the janitor's repair; O(stage size), never on the hot path)."""
        row = self._one(
            "UPDATE geoetl.stages s SET completed_count = c.completed, failed_count = c.failed, updated_at = now() "
            "FROM (SELECT count(*) FILTER (WHERE status = 'completed') AS completed, "
            "count(*) FILTER (WHERE status = 'failed') AS failed FROM geoetl.tasks WHERE job_id = %s AND stage = %s) c "
            f"WHERE s.job_id = %s AND s.stage = %s RETURNING {', '.join('s.' + c for c in STAGE_COLUMNS.split(', '))}",
            (job_id, stage, job_id, stage),
        )
        return stage_record(row) if row else None

    # --- tasks ----------------------------------------------------------------------------------

    def retry_task(
        self, task_id: str, attempt: int, delay_seconds: float, error: dict[str, Any], lease_expired: bool = False
    ) -> TaskRecord | None:
        """processing → queued for a later attempt, not before ``delay_seconds`` from now (database time)."""
        row = self._one(
            "UPDATE geoetl.tasks SET status = 'queued', not_before = now() + make_interval(secs => %s), "
            "enqueued_at = now(), error_details = %s, "
            "lease_expires_at = NULL, updated_at = now() "
            "WHERE task_id = %s AND status = 'processing' AND attempt = %s"
            f"{' AND lease_expires_at < now()' if lease_expired else ''} RETURNING {TASK_COLUMNS}",
            (delay_seconds, Jsonb(error), task_id, attempt),
        )
        return task_record(row) if row else None

    def fail_task(
        self, task_id: str, attempt: int, error: dict[str, Any], lease_expired: bool = False
    ) -> TaskRecord | None:
        """processing → failed for this attempt (the stage's counter is bumped last: count_failure)."""
        row = self._one(
            "UPDATE geoetl.tasks SET status = 'failed', error_details = %s, completed_at = now(), "
            "lease_expires_at = NULL, updated_at = now() WHERE task_id = %s AND status = 'processing' AND attempt = %s"
            f"{' AND lease_expires_at < now()' if lease_expired else ''} RETURNING {TASK_COLUMNS}",
            (Jsonb(error), task_id, attempt),
        )
        return task_record(row) if row else None

    def lock_cleanup(self, job_id: str) -> int | None:
        """The run whose clean-up is pending, with the job row locked until the unit ends (a resubmit or a
        second delivery of the clean-up waits), or None."""
        row = self._one("SELECT cleanup_run FROM geoetl.jobs WHERE job_id = %s FOR UPDATE", (job_id,))
        return int(row["cleanup_run"]) if row and row["cleanup_run"] is not None else None

    def set_cleanup(self, job_id: str, run: int | None) -> None:
        """Mark run ``run``'s clean-up pending (None: done)."""
        self.conn.execute("UPDATE geoetl.jobs SET cleanup_run = %s WHERE job_id = %s", (run, job_id))

    def count_failure(self, job_id: str, stage: int) -> None:
        """The stage's failed counter; called after every task row of the transaction is locked (task rows
        before the stage row, the order a completion takes them in, so the two cannot deadlock)."""
        self.conn.execute(
            "UPDATE geoetl.stages SET failed_count = failed_count + 1, updated_at = now() "
            "WHERE job_id = %s AND stage = %s",
            (job_id, stage),
        )

    def touch_queued_tasks(self, task_ids: Sequence[str], older_than_seconds: float) -> list[TaskRecord]:
        """Queued tasks still without a fresh message, marked as re-sent now; a janitor racing this one skips
        them (locked) or finds them fresh (re-checked after the lock)."""
        rows = self.conn.execute(
            "UPDATE geoetl.tasks SET enqueued_at = clock_timestamp() WHERE task_id IN (SELECT task_id "
            "FROM geoetl.tasks WHERE task_id = ANY(%s) AND status = 'queued' "
            "AND enqueued_at < clock_timestamp() - make_interval(secs => %s) FOR UPDATE SKIP LOCKED) "
            f"RETURNING {TASK_COLUMNS}",
            (list(task_ids), older_than_seconds),
        ).fetchall()
        return [task_record(r) for r in rows]
