"""Job endpoints: submit, status, resubmit, cancel, events, job types; listings under db/."""

from __future__ import annotations

import json
from typing import Any, Literal

import azure.functions as func
from pydantic import BaseModel, Field

from core.errors import InvalidInput
from core.models import JobRecord
from infrastructure.context import get_app_context
from services import jobs as views
from triggers.http.api import endpoint, parse_query
from triggers.runtime import get_machine

bp = func.Blueprint()  # type: ignore[no-untyped-call]

StatusName = Literal["queued", "processing", "completed", "failed", "cancelled"]  # jobs and tasks alike


class SubmitResponse(BaseModel):
    job_id: str = Field(description="SHA-256 of the job type and the validated parameters")
    job_type: str
    status: str
    created: bool = Field(description="False when an identical job already existed: nothing new was made")
    status_url: str


class JobTypeView(BaseModel):
    job_type: str
    description: str
    stages: list[dict[str, str]]
    parameters: dict[str, Any] = Field(description="JSON schema of the parameters")


class JobTypeList(BaseModel):
    job_types: list[JobTypeView]


class JobListQuery(BaseModel):
    status: StatusName | None = None
    job_type: str | None = Field(None, max_length=200)
    since_hours: float | None = Field(
        None, gt=0, le=24 * 366 * 100, allow_inf_nan=False, description="Only jobs created in the last N hours"
    )
    limit: int = Field(50, ge=1, le=500)
    cursor: str | None = Field(None, max_length=1000)


class TaskListQuery(BaseModel):
    stage: int | None = Field(None, ge=1, le=2**31 - 1)
    status: StatusName | None = None
    limit: int = Field(100, ge=1, le=1000)
    cursor: str | None = Field(None, max_length=1000)


class EventQuery(BaseModel):
    limit: int = Field(200, ge=1, le=1000)
    cursor: str | None = Field(None, max_length=1000)


class DeadLetterQuery(BaseModel):
    queue: str | None = Field(None, max_length=200)
    limit: int = Field(100, ge=1, le=1000)


class DeadLetterList(BaseModel):
    dead_letters: list[views.DeadLetterView]


def _status_url(req: func.HttpRequest, job_id: str) -> str:
    base = req.url.split("/jobs/", 1)[0]
    return f"{base}/jobs/status/{job_id}"


def _submitted(req: func.HttpRequest, job: JobRecord, created: bool) -> SubmitResponse:
    return SubmitResponse(
        job_id=job.job_id,
        job_type=job.job_type,
        status=str(job.status),
        created=created,
        status_url=_status_url(req, job.job_id),
    )


def _json_object(req: func.HttpRequest) -> dict[str, Any]:
    body = req.get_body() or b"{}"
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("the body is not valid JSON") from None
    if not isinstance(value, dict):
        raise InvalidInput("the body must be a JSON object of job parameters")
    return value


@endpoint(
    bp,
    route="jobs/submit/{job_type}",
    methods=("POST",),
    auth_level=func.AuthLevel.FUNCTION,
    tags=("jobs",),
    summary="Submit a job (idempotent: identical parameters return the same job)",
    response_model=SubmitResponse,
    status_code=202,
    error_statuses=(400, 404, 503),
)
def submit_job(req: func.HttpRequest) -> SubmitResponse:
    """The body is the job's parameters as a JSON object (GET /api/jobs/types lists them)."""
    submission = get_machine().submit(req.route_params["job_type"], _json_object(req))
    return _submitted(req, submission.job, submission.created)


@endpoint(
    bp,
    route="jobs/status/{job_id}",
    methods=("GET",),
    auth_level=func.AuthLevel.FUNCTION,
    tags=("jobs",),
    summary="Status of a job: progress, per-stage counts and timings, result or error",
    response_model=views.JobStatusView,
    error_statuses=(404, 503),
)
def job_status(req: func.HttpRequest) -> views.JobStatusView:
    return views.job_status(get_app_context(), req.route_params["job_id"])


@endpoint(
    bp,
    route="jobs/{job_id}/resubmit",
    methods=("POST",),
    auth_level=func.AuthLevel.FUNCTION,
    tags=("jobs",),
    summary="Run an ended job again (same id, a new run): failed, cancelled, or completed with changed inputs",
    response_model=SubmitResponse,
    status_code=202,
    error_statuses=(404, 409, 503),
)
def resubmit_job(req: func.HttpRequest) -> SubmitResponse:
    """A job that is still queued or processing cannot be resubmitted (409)."""
    return _submitted(req, get_machine().resubmit(req.route_params["job_id"]), True)


@endpoint(
    bp,
    route="jobs/{job_id}/cancel",
    methods=("POST",),
    auth_level=func.AuthLevel.FUNCTION,
    tags=("jobs",),
    summary="Cancel a queued or processing job",
    response_model=views.JobStatusView,
    error_statuses=(404, 409, 503),
)
def cancel_job(req: func.HttpRequest) -> views.JobStatusView:
    """Queued tasks are cancelled; running tasks finish but count for nothing. Cancelling twice is harmless."""
    job = get_machine().cancel(req.route_params["job_id"])
    return views.job_status(get_app_context(), job.job_id)


@endpoint(
    bp,
    route="jobs/{job_id}/events",
    methods=("GET",),
    auth_level=func.AuthLevel.FUNCTION,
    tags=("jobs",),
    summary="The job's event log, oldest first (kept across resubmissions)",
    response_model=views.EventList,
    query_model=EventQuery,
    error_statuses=(400, 404, 503),
)
def job_events(req: func.HttpRequest) -> views.EventList:
    query = parse_query(req, EventQuery)
    return views.job_events(get_app_context(), req.route_params["job_id"], query.limit, query.cursor)


@endpoint(
    bp,
    route="jobs/types",
    methods=("GET",),
    auth_level=func.AuthLevel.FUNCTION,
    tags=("jobs",),
    summary="The job types this deployment runs, with their stages and parameter schemas",
    response_model=JobTypeList,
)
def job_types(req: func.HttpRequest) -> JobTypeList:
    registry = get_machine().registry
    return JobTypeList(
        job_types=[
            JobTypeView(
                job_type=name,
                description=job.description,
                stages=[
                    {"name": s.name, "task_type": s.task_type, "parallelism": str(s.parallelism)} for s in job.stages
                ],
                parameters=job.parameters_model.model_json_schema(),
            )
            for name, job in registry.describe().items()
        ]
    )


@endpoint(
    bp,
    route="db/jobs",
    methods=("GET",),
    auth_level=func.AuthLevel.FUNCTION,
    tags=("jobs",),
    summary="Jobs, newest first, with filters and cursor paging",
    response_model=views.JobList,
    query_model=JobListQuery,
    error_statuses=(400, 503),
)
def list_jobs(req: func.HttpRequest) -> views.JobList:
    q = parse_query(req, JobListQuery)
    return views.list_jobs(get_app_context(), q.status, q.job_type, q.since_hours, q.limit, q.cursor)


@endpoint(
    bp,
    route="db/tasks/{job_id}",
    methods=("GET",),
    auth_level=func.AuthLevel.FUNCTION,
    tags=("jobs",),
    summary="A job's tasks in stage and index order, with filters and cursor paging",
    response_model=views.TaskList,
    query_model=TaskListQuery,
    error_statuses=(400, 404, 503),
)
def list_tasks(req: func.HttpRequest) -> views.TaskList:
    q = parse_query(req, TaskListQuery)
    return views.list_tasks(get_app_context(), req.route_params["job_id"], q.stage, q.status, q.limit, q.cursor)


@endpoint(
    bp,
    route="db/dead-letters",
    methods=("GET",),
    auth_level=func.AuthLevel.FUNCTION,
    tags=("jobs",),
    summary="Messages no worker could use, newest first, with the reason",
    response_model=DeadLetterList,
    query_model=DeadLetterQuery,
    error_statuses=(400, 503),
)
def list_dead_letters(req: func.HttpRequest) -> DeadLetterList:
    q = parse_query(req, DeadLetterQuery)
    return DeadLetterList(dead_letters=views.dead_letters(get_app_context(), q.queue, q.limit))
