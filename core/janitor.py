"""The janitor: re-drives what a crash can strand (invariant 6). Runs on a timer, every minute by default.

Every repair is a conditional update (or a re-sent message, which the machine
treats as a duplicate when it is one), so several janitors at once, or a
janitor racing a worker, do no harm.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from core.machine import CoreMachine
from core.models import JobStatus, StageStatus, cleanup_message, job_message, task_message

log = logging.getLogger("geoetl.janitor")
T = TypeVar("T")

BATCH = 500


@dataclass
class JanitorReport:
    leases_expired: int = 0  # processing tasks whose worker vanished: retried or failed
    tasks_redriven: int = 0  # queued tasks whose message was lost: message sent again
    jobs_redriven: int = 0  # jobs waiting for a planning or finalizing message that was lost
    stages_repaired: int = 0  # stages with every task done but not finished
    cleanups_redriven: int = 0  # failed or cancelled runs whose clean-up message was lost

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def run_janitor(machine: CoreMachine) -> JanitorReport:
    """One pass. Where the transport drops duplicates by message id for a time (Service Bus), re-sent
    messages carry ids of their own (``:j<minute>``) so they are not dropped as copies of the lost
    original; where it only refuses a copy of a message still queued (postgres), they keep the original
    id, so a re-send of a message that is not lost is a no-op. One item's error never ends the pass."""
    report = JanitorReport()
    stale = machine.settings.janitor_stale_seconds
    store = machine.store
    suffix = f":j{int(time.time() // 60)}" if machine.unique_redrive_ids else ""
    for task in _listed(store.expired_leases, BATCH):
        if _guarded(machine.expire_lease, task) not in (None, "not_counted"):
            report.leases_expired += 1
    queued = _listed(store.stale_queued_tasks, stale, BATCH)
    if queued:
        report.tasks_redriven += _guarded(_redrive_tasks, machine, queued, stale, suffix) or 0
    for job, stage in _listed(store.stale_jobs, stale, BATCH):
        step = "final" if stage.status == StageStatus.COMPLETED and job.stage == job.total_stages else f"s{job.stage}"
        if job.status == JobStatus.QUEUED:
            step = "s1"
        if _guarded(_redrive_job, machine, job.job_id, job.run, step, suffix) is not None:
            report.jobs_redriven += 1
    for job_id, number in _listed(store.stuck_stages, stale, BATCH):
        if _guarded(machine.repair_stage, job_id, number) not in (None, "ignored"):
            report.stages_repaired += 1
    for job_id, run in _listed(store.pending_cleanups, stale, BATCH):
        if _guarded(_redrive_cleanup, machine, job_id, run, suffix) is not None:
            report.cleanups_redriven += 1
    if any(report.as_dict().values()):
        log.info("janitor: %s", report.as_dict())
    return report


def _redrive_tasks(machine: CoreMachine, task_ids: list[str], stale: float, suffix: str) -> int:
    with machine.store.unit() as u:
        touched = u.touch_queued_tasks(task_ids, stale)
        messages = [task_message(t.task_id, t.attempt + 1, t.not_before, suffix) for t in touched]
        u.send(machine.tasks_queue, messages)
    return len(touched)


def _redrive_job(machine: CoreMachine, job_id: str, run: int, step: str, suffix: str) -> str:
    with machine.store.unit() as u:
        u.touch_job(job_id)
        u.event(job_id, run, "job_redriven", details={"step": step, "reason": "no progress: message re-sent"})
        u.send(machine.jobs_queue, [job_message(job_id, run, step + suffix)])
    return "sent"


def _redrive_cleanup(machine: CoreMachine, job_id: str, run: int, suffix: str) -> str:
    with machine.store.unit() as u:
        u.touch_job(job_id)
        u.event(job_id, run, "job_redriven", details={"step": "cleanup", "reason": "clean-up pending: message re-sent"})
        u.send(machine.jobs_queue, [cleanup_message(job_id, run, suffix)])
    return "sent"


def _listed(query: Callable[..., list[T]], *args: Any) -> list[T]:
    try:
        return query(*args)
    except Exception:
        log.exception("janitor: %s failed; the next pass tries again", getattr(query, "__name__", query))
        return []


def _guarded(action: Callable[..., T], *args: Any) -> T | None:
    try:
        return action(*args)
    except Exception:
        log.exception("janitor: %s%s failed; the next pass tries again", getattr(action, "__name__", action), args)
        return None
