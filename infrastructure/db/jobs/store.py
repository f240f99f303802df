"""PostgresJobStore: units of work and the single-statement operations of the task path and the janitor."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from core.models import JobRecord, StageRecord, TaskRecord
from core.ports import ClaimedTask, MessageSender, StageProgress
from infrastructure.db.database import Database
from infrastructure.db.dead_letters import record_dead_letter
from infrastructure.db.jobs.queries import JobQueries
from infrastructure.db.jobs.records import (
    CLAIM_COLUMNS,
    JOB_COLUMNS,
    STAGE_COLUMNS,
    TASK_COLUMNS,
    job_record,
    stage_record,
    task_record,
)
from infrastructure.db.jobs.unit import COMPLETE_TASK, PostgresUnit

log = logging.getLogger("geoetl.jobs")


def _prefixed(alias: str, columns: str) -> str:
    return ", ".join(f"{alias}.{c}" for c in columns.split(", "))


class PostgresJobStore(JobQueries):
    def __init__(self, db: Database, sender: MessageSender) -> None:
        super().__init__(db)
        self.sender = sender

    @contextmanager
    def unit(self) -> Iterator[PostgresUnit]:
        """One transaction; messages of a non-transactional sender go out after the commit."""
        with self.db.transaction() as conn:
            unit = PostgresUnit(conn, self.sender)
            yield unit
        wake = getattr(self.sender, "wake", None)
        if callable(wake):
            for queue in unit.sent_in_transaction:
                wake(queue)  # after the commit: woken workers find the messages
        for queue, messages in unit.outbox:
            try:
                self.sender.send(queue, messages)
            except Exception:  # the state is committed; the janitor re-sends what is missing
                log.warning(
                    "sending %d message(s) to %s failed; the janitor will re-drive them",
                    len(messages),
                    queue,
                    exc_info=True,
                )

    # --- the task path --------------------------------------------------------------------------

    def claim_task(self, task_id: str, attempt: int, lease_seconds: float, worker: str) -> ClaimedTask | None:
        rows = self.db.quick(
            "UPDATE geoetl.tasks t SET status = 'processing', attempt = t.attempt + 1, "
            "started_at = now(), heartbeat_at = now(), "
            "lease_expires_at = now() + make_interval(secs => %s), worker = %s, updated_at = now() "
            "FROM geoetl.jobs j WHERE t.task_id = %s AND t.status = 'queued' AND t.attempt = %s - 1 "
            "AND t.not_before <= now() + interval '1 second' "
            "AND j.job_id = t.job_id AND j.status = 'processing' AND j.run = t.run "
            f"RETURNING {_prefixed('t', CLAIM_COLUMNS)}, j.job_type, j.parameters AS job_parameters",
            (lease_seconds, worker, task_id, attempt),
        )
        if not rows:
            return None
        return ClaimedTask(task_record(rows[0], CLAIM_COLUMNS), rows[0]["job_type"], rows[0]["job_parameters"])

    def complete_task(
        self, task_id: str, attempt: int, result: dict[str, Any], next_stage_params: dict[str, Any] | None
    ) -> StageProgress | None:
        """processing → completed for this attempt, counted in its stage: COMPLETE_TASK, one round trip."""
        rows = self.db.quick(
            COMPLETE_TASK,
            (Jsonb(result), None if next_stage_params is None else Jsonb(next_stage_params), task_id, attempt),
        )
        return StageProgress(**rows[0]) if rows else None

    def task(self, task_id: str) -> TaskRecord | None:
        row = self.db.fetch_one(f"SELECT {TASK_COLUMNS} FROM geoetl.tasks WHERE task_id = %s", (task_id,))
        return task_record(row) if row else None

    def early(self, task_id: str, attempt: int) -> datetime | None:
        rows = self.db.quick(
            "SELECT not_before FROM geoetl.tasks WHERE task_id = %s AND status = 'queued' AND attempt = %s - 1 "
            "AND not_before > now() + interval '1 second'",
            (task_id, attempt),
        )
        return rows[0]["not_before"] if rows else None  # type: ignore[no-any-return]

    def renew_lease(self, task_id: str, attempt: int, lease_seconds: float) -> bool:
        """Only while the task is this attempt's and its job still runs (a cancel shows in heartbeat())."""
        rows = self.db.quick(
            "UPDATE geoetl.tasks t SET lease_expires_at = now() + make_interval(secs => %s), heartbeat_at = now() "
            "FROM geoetl.jobs j WHERE t.task_id = %s AND t.status = 'processing' AND t.attempt = %s "
            "AND j.job_id = t.job_id AND j.status = 'processing' AND j.run = t.run RETURNING t.task_id",
            (lease_seconds, task_id, attempt),
        )
        return bool(rows)

    def results_page(
        self, job_id: str, stage: int, after_index: int, limit: int
    ) -> list[tuple[int, dict[str, Any] | None]]:
        with self.db.transaction() as conn:
            rows = conn.execute(
                "SELECT task_index, result_data FROM geoetl.tasks WHERE job_id = %s AND stage = %s "
                "AND status = 'completed' AND task_index > %s ORDER BY task_index LIMIT %s",
                (job_id, stage, after_index, limit),
            ).fetchall()
        return [(r["task_index"], r["result_data"]) for r in rows]

    def count_completed(self, job_id: str, stage: int) -> int:
        row = self.db.fetch_one(
            "SELECT completed_count FROM geoetl.stages WHERE job_id = %s AND stage = %s", (job_id, stage)
        )
        return int(row["completed_count"]) if row else 0

    # --- what the janitor looks for -------------------------------------------------------------

    def expired_leases(self, limit: int) -> list[TaskRecord]:
        with self.db.transaction() as conn:
            rows = conn.execute(
                f"SELECT {_prefixed('t', TASK_COLUMNS)} FROM geoetl.jobs j JOIN geoetl.tasks t "
                "ON t.job_id = j.job_id AND t.stage = j.stage WHERE j.status = 'processing' "
                "AND t.status = 'processing' AND t.lease_expires_at < now() ORDER BY t.lease_expires_at LIMIT %s",
                (limit,),
            ).fetchall()
        return [task_record(r) for r in rows]

    def stale_queued_tasks(self, older_than_seconds: float, limit: int) -> list[str]:
        with self.db.transaction() as conn:
            rows = conn.execute(
                "SELECT t.task_id FROM geoetl.jobs j JOIN geoetl.stages s ON s.job_id = j.job_id AND s.stage = j.stage "
                "JOIN geoetl.tasks t ON t.job_id = j.job_id AND t.stage = j.stage "
                "WHERE j.status = 'processing' AND s.status = 'planned' "
                "AND s.updated_at < now() - make_interval(secs => %s) AND t.status = 'queued' "
                "AND t.enqueued_at < now() - make_interval(secs => %s) "
                "AND t.not_before < now() - make_interval(secs => %s) "
                "AND NOT EXISTS (SELECT 1 FROM geoetl.tasks r WHERE r.job_id = j.job_id AND r.stage = j.stage "
                "AND r.started_at > now() - make_interval(secs => %s)) ORDER BY t.enqueued_at LIMIT %s",
                (older_than_seconds, older_than_seconds, older_than_seconds, older_than_seconds, limit),
            ).fetchall()
        return [r["task_id"] for r in rows]

    def stale_jobs(self, older_than_seconds: float, limit: int) -> list[tuple[JobRecord, StageRecord]]:
        """Jobs waiting for a job message: queued, or their current stage pending or completed."""
        with self.db.transaction() as conn:
            rows = conn.execute(
                f"SELECT {_prefixed('j', JOB_COLUMNS)}, "
                + ", ".join(f"s.{c} AS s_{c}" for c in STAGE_COLUMNS.split(", "))
                + " FROM geoetl.jobs j JOIN geoetl.stages s ON s.job_id = j.job_id AND s.stage = j.stage "
                "WHERE j.status IN ('queued', 'processing') AND j.updated_at < now() - make_interval(secs => %s) "
                "AND (j.status = 'queued' OR s.status <> 'planned') ORDER BY j.updated_at LIMIT %s",
                (older_than_seconds, limit),
            ).fetchall()
        stage_keys = STAGE_COLUMNS.split(", ")
        return [(job_record(r), stage_record({k: r[f"s_{k}"] for k in stage_keys})) for r in rows]

    def pending_cleanups(self, older_than_seconds: float, limit: int) -> list[tuple[str, int]]:
        """(job_id, run) of clean-ups still pending ``older_than_seconds`` after the job last changed, for jobs
        that ended within the last day (a clean-up failing for longer is left to the operator)."""
        with self.db.transaction() as conn:
            rows = conn.execute(
                "SELECT job_id, cleanup_run FROM geoetl.jobs WHERE cleanup_run IS NOT NULL "
                "AND updated_at < now() - make_interval(secs => %s) AND completed_at > now() - interval '1 day' "
                "ORDER BY updated_at LIMIT %s",
                (older_than_seconds, limit),
            ).fetchall()
        return [(r["job_id"], r["cleanup_run"]) for r in rows]

    def stuck_stages(self, older_than_seconds: float, limit: int) -> list[tuple[str, int]]:
        """Current stages still 'planned' although none of their tasks is queued or running."""
        with self.db.transaction() as conn:
            rows = conn.execute(
                "SELECT s.job_id, s.stage FROM geoetl.stages s JOIN geoetl.jobs j "
                "ON j.job_id = s.job_id AND j.stage = s.stage "
                "WHERE j.status = 'processing' AND s.status = 'planned' "
                "AND s.updated_at < now() - make_interval(secs => %s) "
                "AND NOT EXISTS (SELECT 1 FROM geoetl.tasks t WHERE t.job_id = s.job_id AND t.stage = s.stage "
                "AND t.status IN ('queued', 'processing')) LIMIT %s",
                (older_than_seconds, limit),
            ).fetchall()
        return [(r["job_id"], r["stage"]) for r in rows]

    def dead_letter(self, queue: str, message_id: str, body: str, reason: str, delivery_count: int) -> None:
        log.warning("dead-lettering message %s on %s: %s", message_id, queue, reason)
        with self.db.transaction() as conn:
            record_dead_letter(conn, queue, message_id, body, reason, delivery_count)
