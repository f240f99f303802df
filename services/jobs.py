"""What the job endpoints return: status with progress, listings with cursor paging, the event log."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field

from core.errors import InvalidInput, NotFound
from core.models import is_job_id
from core.running import CLAIM_CHECK
from infrastructure.context import AppContext
from infrastructure.db.dead_letters import list_dead_letters
from infrastructure.storage.payloads import BlobPayloads


class Progress(BaseModel):
    total: int = Field(description="Tasks planned so far (later stages are planned when they start)")
    queued: int
    processing: int
    completed: int
    failed: int
    cancelled: int
    percent: float = Field(description="Share of the job done: each stage weighs 1/total_stages")


class StageView(BaseModel):
    stage: int
    name: str
    task_type: str
    parallelism: str
    status: str = Field(description="pending (not planned yet), planned or completed")
    tasks: int
    queued: int
    processing: int
    completed: int
    failed: int
    cancelled: int
    percent: float
    planned_at: datetime | None
    first_started_at: datetime | None
    completed_at: datetime | None
    duration_seconds: float | None = Field(
        description="From planning to completion (or to the job's end, or now while it runs)"
    )


class JobStatusView(BaseModel):
    job_id: str
    job_type: str
    status: str
    stage: int
    total_stages: int
    run: int = Field(description="1, plus one per resubmission")
    parameters: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    duration_seconds: float | None
    progress: Progress
    stages: list[StageView]
    result_data: dict[str, Any] | None
    error_details: dict[str, Any] | None


class JobSummary(BaseModel):
    job_id: str
    job_type: str
    status: str
    stage: int
    total_stages: int
    run: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    error: str | None = Field(None, description="The error message of a failed job")


class JobList(BaseModel):
    jobs: list[JobSummary]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last page")


class TaskView(BaseModel):
    task_id: str
    stage: int
    task_index: int
    task_type: str
    status: str
    attempt: int
    max_attempts: int
    parameters: dict[str, Any]
    result_data: dict[str, Any] | None
    error_details: dict[str, Any] | None
    worker: str | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    not_before: datetime | None
    lease_expires_at: datetime | None


class TaskList(BaseModel):
    job_id: str
    tasks: list[TaskView]
    next_cursor: str | None


class EventView(BaseModel):
    event_id: int
    run: int
    event: str
    stage: int | None
    task_id: str | None
    details: dict[str, Any]
    created_at: datetime


class EventList(BaseModel):
    job_id: str
    events: list[EventView]
    next_cursor: str | None


class DeadLetterView(BaseModel):
    id: int
    queue_name: str
    message_id: str
    body: str
    reason: str
    delivery_count: int
    dead_lettered_at: datetime


def encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values, default=str).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, kinds: tuple[Callable[[Any], Any], ...]) -> list[Any] | None:
    """The values of a cursor this API returned, converted with ``kinds``; anything else is a 400."""
    if not cursor:
        return None
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(values, list) or len(values) != len(kinds):
            raise ValueError("wrong shape")
        return [kind(value) for kind, value in zip(kinds, values, strict=True)]
    except (ValueError, TypeError, UnicodeDecodeError, OverflowError):
        raise InvalidInput("cursor is not one this API returned", field="cursor") from None


def _timestamp(value: Any) -> datetime:
    if not isinstance(value, str):
        raise TypeError("not a timestamp")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("timestamp without a time zone")
    return parsed


def _int4(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**31:
        raise ValueError("not a position")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 200:
        raise ValueError("not an id")
    return value


def _bigint(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
        raise ValueError("not an event id")
    return value


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None:
        return None
    return round(((end or datetime.now(UTC)) - start).total_seconds(), 3)


def _stage_view(row: dict[str, Any], job_ended: datetime | None) -> StageView:
    total = row["task_count"]
    done = row["status"] == "completed"
    percent = 100.0 if done else (100.0 * row["completed"] / total if total else 0.0)
    return StageView(
        stage=row["stage"],
        name=row["name"],
        task_type=row["task_type"],
        parallelism=row["parallelism"],
        status=str(row["status"]),
        tasks=total,
        queued=row["queued"],
        processing=row["processing"],
        completed=row["completed"],
        failed=row["failed"],
        cancelled=row["cancelled"],
        percent=round(percent, 2),
        planned_at=row["planned_at"],
        first_started_at=row["first_started_at"],
        completed_at=row["completed_at"],
        duration_seconds=_seconds(row["planned_at"], row["completed_at"] or job_ended),
    )


def job_status(ctx: AppContext, job_id: str) -> JobStatusView:
    store = ctx.job_store
    row = store.job(job_id) if is_job_id(job_id) else None
    if row is None:
        raise NotFound(f"no job with id {job_id}", job_id=job_id)
    stages = [_stage_view(r, row["completed_at"]) for r in store.stage_progress(job_id)]
    counts = {
        k: sum(getattr(s, k) for s in stages) for k in ("queued", "processing", "completed", "failed", "cancelled")
    }
    percent = 100.0 if row["status"] == "completed" else sum(s.percent for s in stages) / max(1, row["total_stages"])
    return JobStatusView(
        **{k: row[k] for k in ("job_id", "job_type", "stage", "total_stages", "run", "parameters")},
        status=str(row["status"]),
        **{k: row[k] for k in ("created_at", "updated_at", "started_at", "completed_at")},
        duration_seconds=_seconds(row["started_at"], row["completed_at"]),
        progress=Progress(total=sum(s.tasks for s in stages), percent=round(percent, 2), **counts),
        stages=stages,
        result_data=_resolved(ctx, row["result_data"]),
        error_details=row["error_details"],
    )


def _resolved(ctx: AppContext, result: dict[str, Any] | None) -> dict[str, Any] | None:
    """A job result kept as a blob (claim check: larger than RESULT_INLINE_MAX_BYTES) read back for the caller."""
    if result is None or set(result) != {CLAIM_CHECK}:
        return result
    reference = result[CLAIM_CHECK]
    loaded: dict[str, Any] = json.loads(BlobPayloads(lambda: ctx.storage, str(reference["container"])).get(reference))
    return loaded


def list_jobs(
    ctx: AppContext, status: str | None, job_type: str | None, since_hours: float | None, limit: int, cursor: str | None
) -> JobList:
    after = decode_cursor(cursor, (_timestamp, _text))
    since = datetime.now(UTC) - timedelta(hours=since_hours) if since_hours is not None else None
    rows = ctx.job_store.list_jobs(status, job_type, since, limit + 1, (after[0], after[1]) if after else None)
    page, more = rows[:limit], len(rows) > limit
    jobs = [
        JobSummary(
            **{k: v for k, v in r.items() if k != "error_details"},
            error=(r["error_details"] or {}).get("message") if r["error_details"] else None,
        )
        for r in page
    ]
    next_cursor = encode_cursor([page[-1]["created_at"].isoformat(), page[-1]["job_id"]]) if more else None
    return JobList(jobs=jobs, next_cursor=next_cursor)


def _require_job(ctx: AppContext, job_id: str) -> None:
    if not is_job_id(job_id) or ctx.job_store.job(job_id) is None:
        raise NotFound(f"no job with id {job_id}", job_id=job_id)


def list_tasks(
    ctx: AppContext, job_id: str, stage: int | None, status: str | None, limit: int, cursor: str | None
) -> TaskList:
    _require_job(ctx, job_id)
    after = decode_cursor(cursor, (_int4, _int4))
    rows = ctx.job_store.list_tasks(job_id, stage, status, limit + 1, (after[0], after[1]) if after else None)
    page, more = rows[:limit], len(rows) > limit
    tasks = [TaskView(**{k: v for k, v in r.items() if k in TaskView.model_fields}) for r in page]
    next_cursor = encode_cursor([page[-1]["stage"], page[-1]["task_index"]]) if more else None
    return TaskList(job_id=job_id, tasks=tasks, next_cursor=next_cursor)


def job_events(ctx: AppContext, job_id: str, limit: int, cursor: str | None) -> EventList:
    _require_job(ctx, job_id)
    after = decode_cursor(cursor, (_bigint,))
    rows = ctx.job_store.events(job_id, after[0] if after else None, limit + 1)
    page, more = rows[:limit], len(rows) > limit
    events = [EventView(**{k: v for k, v in r.items() if k in EventView.model_fields}) for r in page]
    return EventList(job_id=job_id, events=events, next_cursor=encode_cursor([page[-1]["event_id"]]) if more else None)


def dead_letters(ctx: AppContext, queue: str | None, limit: int) -> list[DeadLetterView]:
    return [DeadLetterView(**r) for r in list_dead_letters(ctx.db, queue, limit)]
