"""Records, states and messages of the CoreMachine (DESIGN.md section 4)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import InvalidMessage


class JobStatus(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


class TaskStatus(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StageStatus(StrEnum):
    PENDING = "pending"  # not planned yet
    PLANNED = "planned"  # tasks exist
    COMPLETED = "completed"  # every task completed


TERMINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace: the same parameters always give the same text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def job_id_for(job_type: str, parameters: dict[str, Any]) -> str:
    """SHA-256 of the job type and the canonical JSON of the validated parameters (invariant 1)."""
    return hashlib.sha256(f"{job_type}\n{canonical_json(parameters)}".encode()).hexdigest()


def task_id_for(job_id: str, run: int, stage: int, index: int) -> str:
    """Deterministic: planning a stage twice gives the same ids, so the second insert is a no-op."""
    return f"{job_id}-r{run}-s{stage}-t{index}"


_JOB_ID = re.compile(r"[0-9a-f]{64}")


def is_job_id(value: str) -> bool:
    return _JOB_ID.fullmatch(value) is not None


_TASK_ID = re.compile(r"([0-9a-f]{64})-r(\d{1,9})-s\d{1,9}-t\d{1,9}")


def parse_task_id(task_id: str) -> tuple[str, int] | None:
    """(job_id, run) of a task id made by :func:`task_id_for`, or None."""
    match = _TASK_ID.fullmatch(task_id)
    return (match.group(1), int(match.group(2))) if match else None


@dataclass(frozen=True)
class JobRecord:
    job_id: str
    job_type: str
    parameters: dict[str, Any]
    status: JobStatus
    stage: int
    total_stages: int
    run: int
    result_data: dict[str, Any] | None = None
    error_details: dict[str, Any] | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None


@dataclass(frozen=True)
class TaskRecord:
    task_id: str
    job_id: str
    run: int
    stage: int
    task_index: int
    task_type: str
    parameters: dict[str, Any]
    status: TaskStatus
    attempt: int
    max_attempts: int
    result_data: dict[str, Any] | None = None
    error_details: dict[str, Any] | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    not_before: datetime | None = None
    lease_expires_at: datetime | None = None


@dataclass(frozen=True)
class StageRecord:
    stage: int
    name: str
    task_type: str
    parallelism: str
    status: StageStatus
    task_count: int
    completed_count: int
    failed_count: int
    planned_at: datetime | None = None
    completed_at: datetime | None = None


@dataclass(frozen=True)
class NewTask:
    """A task as planning creates it."""

    task_id: str
    task_index: int
    task_type: str
    parameters: dict[str, Any]
    max_attempts: int


# --- messages: ids, never data -------------------------------------------------------------------


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class JobMessage(_Message):
    """Wake-up for a job: plan its current stage, or finalize it when every stage is complete;
    ``action="cleanup"``: run the job type's clean-up after the run failed or was cancelled."""

    kind: str = Field("job", pattern="^job$")
    job_id: str = Field(min_length=64, max_length=64, pattern="^[0-9a-f]{64}$")
    run: int = Field(ge=1)
    action: Literal["advance", "cleanup"] = "advance"


class TaskMessage(_Message):
    """Wake-up for a task: start attempt ``attempt`` of it."""

    kind: str = Field("task", pattern="^task$")
    task_id: str = Field(min_length=1, max_length=200)
    attempt: int = Field(ge=1)


@dataclass(frozen=True)
class QueueMessage:
    """A message to send. ``message_id`` is deterministic, for duplicate detection."""

    message_id: str
    body: str
    not_before: datetime | None = None
    properties: dict[str, Any] = field(default_factory=dict)


def job_message(job_id: str, run: int, step: str) -> QueueMessage:
    """``step`` names what the message is for (``s<stage>`` planning, ``final``), for duplicate detection."""
    body = JobMessage(job_id=job_id, run=run).model_dump_json()
    return QueueMessage(f"{job_id}:r{run}:{step}", body, properties={"kind": "job", "job_id": job_id})


def cleanup_message(job_id: str, run: int, suffix: str = "") -> QueueMessage:
    """Asks a worker to run the job type's clean-up for run ``run`` (it ended failed or cancelled)."""
    body = JobMessage(job_id=job_id, run=run, action="cleanup").model_dump_json()
    return QueueMessage(f"{job_id}:r{run}:cleanup{suffix}", body, properties={"kind": "job", "job_id": job_id})


def task_message(task_id: str, attempt: int, not_before: datetime | None = None, suffix: str = "") -> QueueMessage:
    body = TaskMessage(task_id=task_id, attempt=attempt).model_dump_json()
    return QueueMessage(f"{task_id}:a{attempt}{suffix}", body, not_before, {"kind": "task", "task_id": task_id})


def parse_message(body: bytes | str, model: type[_Message]) -> Any:
    """The message, or InvalidMessage saying why it cannot be one (the worker dead-letters it)."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
        raise InvalidMessage(f"not a {model.__name__}: {problems}") from None
