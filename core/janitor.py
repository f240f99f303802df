"""The janitor: re-drives what a crash can strand (invariant 6). Runs on a timer, every minute by default.

Every repair is a conditional update (or a re-sent message, which the machine
treats as a duplicate when it is one), so several janitors at once, or a
janitor racing a worker, do no harm.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

from core.machine import CoreMachine
from core.models import JobStatus, StageStatus, job_message, task_message

log = logging.getLogger("geoetl.janitor")

BATCH = 500


@dataclass
class JanitorReport:
    leases_expired: int = 0  # processing tasks whose worker vanished: retried or failed
    tasks_redriven: int = 0  # queued tasks whose message was lost: message sent again
    jobs_redriven: int = 0  # jobs waiting for a planning or finalizing message that was lost
    stages_repaired: int = 0  # stages with every task done but not finished

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def run_janitor(machine: CoreMachine) -> JanitorReport:
    report = JanitorReport()
    stale = machine.settings.janitor_stale_seconds
    store = machine.store
    for task in store.expired_leases(BATCH):
        if machine.expire_lease(task) != "not_counted":
            report.leases_expired += 1
    queued = store.stale_queued_tasks(stale, BATCH)
    if queued:
        with store.unit() as u:
            touched = u.touch_queued_tasks(queued, stale)
            u.send(machine.tasks_queue, [task_message(t.task_id, t.attempt + 1, t.not_before) for t in touched])
        report.tasks_redriven += len(touched)
    for job, stage in store.stale_jobs(stale, BATCH):
        step = "final" if stage.status == StageStatus.COMPLETED and job.stage == job.total_stages else f"s{job.stage}"
        if job.status == JobStatus.QUEUED:
            step = "s1"
        with store.unit() as u:
            u.touch_job(job.job_id)
            u.send(machine.jobs_queue, [job_message(job.job_id, job.run, step)])
        report.jobs_redriven += 1
    for job_id, number in store.stuck_stages(stale, BATCH):
        if machine.repair_stage(job_id, number) != "ignored":
            report.stages_repaired += 1
    if any(report.as_dict().values()):
        log.info("janitor: %s", report.as_dict())
    return report
