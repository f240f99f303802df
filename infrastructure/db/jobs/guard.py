"""Publishing steps that must not outlive their job: a table swap, a catalogue upsert.

A task that publishes (swaps a table into place, upserts a STAC item) calls
:func:`ensure_run_alive` inside the transaction that publishes. It share-locks
the job row until that transaction ends; cancelling or failing a job locks the
row for update, so the two serialise: the publication commits while the run is
still processing, or the job has ended and nothing is published.
"""

from __future__ import annotations

from typing import Any

from core.errors import Conflict
from core.models import parse_task_id


def ensure_run_alive(conn: Any, task_id: str) -> None:
    """Raise Conflict unless the task's job run is still processing; hold a share lock on the job row."""
    parsed = parse_task_id(task_id)
    if parsed is None:
        raise ValueError(f"not a task id: {task_id!r}")
    job_id, run = parsed
    row = conn.execute("SELECT status::text AS status, run FROM geoetl.jobs WHERE job_id = %s FOR SHARE", (job_id,))
    found = row.fetchone()
    if found is None or found["status"] != "processing" or found["run"] != run:
        state = "gone" if found is None else f"{found['status']} (run {found['run']})"
        raise Conflict(f"job {job_id} run {run} has ended ({state}); nothing is published")
