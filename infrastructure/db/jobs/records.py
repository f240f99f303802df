"""Rows to core records."""

from __future__ import annotations

from typing import Any

from core.models import JobRecord, JobStatus, StageRecord, StageStatus, TaskRecord, TaskStatus

JOB_COLUMNS = (
    "job_id, job_type, parameters, status, stage, total_stages, run, result_data, error_details, "
    "created_at, updated_at, started_at, completed_at"
)
TASK_COLUMNS = (
    "task_id, job_id, run, stage, task_index, task_type, parameters, status, attempt, max_attempts, "
    "result_data, error_details, created_at, started_at, completed_at, not_before, lease_expires_at"
)
# what running a task needs (fewer columns: less to decode on the hot path)
CLAIM_COLUMNS = "task_id, job_id, run, stage, task_index, task_type, parameters, status, attempt, max_attempts"
STAGE_COLUMNS = (
    "stage, name, task_type, parallelism, status, task_count, completed_count, failed_count, planned_at, completed_at"
)


def job_record(row: dict[str, Any]) -> JobRecord:
    values = {k: row[k] for k in JOB_COLUMNS.split(", ")}
    values["status"] = JobStatus(values["status"])
    return JobRecord(**values)


def task_record(row: dict[str, Any], columns: str = TASK_COLUMNS) -> TaskRecord:
    values = {k: row[k] for k in columns.split(", ")}
    values["status"] = TaskStatus(values["status"])
    return TaskRecord(**values)


def stage_record(row: dict[str, Any]) -> StageRecord:
    values = {k: row[k] for k in STAGE_COLUMNS.split(", ")}
    values["status"] = StageStatus(values["status"])
    return StageRecord(**values)
