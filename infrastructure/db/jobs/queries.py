"""The read side: job status with per-stage progress, job and task listings, the event log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from infrastructure.db.database import Database
from infrastructure.db.jobs.records import JOB_COLUMNS, STAGE_COLUMNS, TASK_COLUMNS

_LIST_COLUMNS = "job_id, job_type, status, stage, total_stages, run, created_at, updated_at, started_at, completed_at"


class JobQueries:
    def __init__(self, db: Database) -> None:
        self.db = db

    def _all(self, query: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
        with self.db.transaction() as conn:
            return conn.execute(query, params).fetchall()  # type: ignore[arg-type]

    def active_jobs(self) -> dict[str, Any]:
        """How many jobs are queued and processing, and how long the oldest of them has been waiting."""
        row = self.db.fetch_one(
            "SELECT count(*) FILTER (WHERE status = 'queued') AS queued, "
            "count(*) FILTER (WHERE status = 'processing') AS processing, "
            "round(extract(epoch FROM now() - min(created_at))::numeric, 1)::float AS oldest_seconds "
            "FROM geoetl.jobs WHERE status IN ('queued', 'processing')"
        )
        return dict(row) if row else {}

    def job(self, job_id: str) -> dict[str, Any] | None:
        return self.db.fetch_one(f"SELECT {JOB_COLUMNS} FROM geoetl.jobs WHERE job_id = %s", (job_id,))

    def stage_progress(self, job_id: str) -> list[dict[str, Any]]:
        """Each stage with task counts by status and its timings (one grouped scan of the job's tasks)."""
        return self._all(
            f"SELECT {', '.join('s.' + c for c in STAGE_COLUMNS.split(', '))}, "
            "coalesce(c.queued, 0) AS queued, coalesce(c.processing, 0) AS processing, "
            "coalesce(c.completed, 0) AS completed, coalesce(c.failed, 0) AS failed, "
            "coalesce(c.cancelled, 0) AS cancelled, c.first_started_at, c.last_completed_at "
            "FROM geoetl.stages s LEFT JOIN ("
            "SELECT stage, count(*) FILTER (WHERE status = 'queued') AS queued, "
            "count(*) FILTER (WHERE status = 'processing') AS processing, "
            "count(*) FILTER (WHERE status = 'completed') AS completed, "
            "count(*) FILTER (WHERE status = 'failed') AS failed, "
            "count(*) FILTER (WHERE status = 'cancelled') AS cancelled, "
            "min(started_at) AS first_started_at, max(completed_at) AS last_completed_at "
            "FROM geoetl.tasks WHERE job_id = %s GROUP BY stage) c ON c.stage = s.stage "
            "WHERE s.job_id = %s ORDER BY s.stage",
            (job_id, job_id),
        )

    def list_jobs(
        self,
        status: str | None,
        job_type: str | None,
        since: datetime | None,
        limit: int,
        after: tuple[datetime, str] | None,
    ) -> list[dict[str, Any]]:
        """Newest first; ``after`` is the (created_at, job_id) of the last row of the previous page."""
        return self._all(
            f"SELECT {_LIST_COLUMNS}, error_details FROM geoetl.jobs "
            "WHERE (%s::geoetl.job_status IS NULL OR status = %s::geoetl.job_status) "
            "AND (%s::text IS NULL OR job_type = %s) AND (%s::timestamptz IS NULL OR created_at >= %s) "
            "AND (%s::timestamptz IS NULL OR (created_at, job_id) < (%s, %s)) "
            "ORDER BY created_at DESC, job_id DESC LIMIT %s",
            (
                status,
                status,
                job_type,
                job_type,
                since,
                since,
                after[0] if after else None,
                after[0] if after else None,
                after[1] if after else None,
                limit,
            ),
        )

    def list_tasks(
        self, job_id: str, stage: int | None, status: str | None, limit: int, after: tuple[int, int] | None
    ) -> list[dict[str, Any]]:
        """In (stage, task_index) order; ``after`` is the (stage, task_index) of the previous page's last row."""
        return self._all(
            f"SELECT {TASK_COLUMNS}, worker, heartbeat_at, updated_at FROM geoetl.tasks WHERE job_id = %s "
            "AND (%s::int IS NULL OR stage = %s) "
            "AND (%s::geoetl.task_status IS NULL OR status = %s::geoetl.task_status) "
            "AND (%s::int IS NULL OR (stage, task_index) > (%s, %s)) ORDER BY stage, task_index LIMIT %s",
            (
                job_id,
                stage,
                stage,
                status,
                status,
                after[0] if after else None,
                after[0] if after else None,
                after[1] if after else None,
                limit,
            ),
        )

    def events(self, job_id: str, after_id: int | None, limit: int) -> list[dict[str, Any]]:
        return self._all(
            "SELECT event_id, job_id, run, event, stage, task_id, details, created_at FROM geoetl.job_events "
            "WHERE job_id = %s AND event_id > %s ORDER BY event_id LIMIT %s",
            (job_id, after_id or 0, limit),
        )
