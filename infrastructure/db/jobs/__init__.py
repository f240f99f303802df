"""The one owner of job, stage, task and event SQL (``geoetl.jobs``, ``stages``, ``tasks``, ``job_events``).

``store.PostgresJobStore`` opens units of work (one transaction each) for the
CoreMachine and answers the read side (status, listings, events).
"""

from infrastructure.db.jobs.store import PostgresJobStore

__all__ = ["PostgresJobStore"]
