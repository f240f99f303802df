"""Composition of the CoreMachine for this process: registry (jobs), store, queue, storage from the context."""

from __future__ import annotations

from core.machine import CoreMachine
from infrastructure.context import AppContext, get_app_context
from infrastructure.storage.payloads import BlobPayloads


def get_machine(context: AppContext | None = None) -> CoreMachine:
    ctx = context or get_app_context()
    return ctx.singleton("machine", lambda: build_machine(ctx))


def build_machine(ctx: AppContext) -> CoreMachine:
    from jobs import registry  # importing jobs checks every job and handler (fails at start-up, not later)

    settings = ctx.settings
    return CoreMachine(
        registry,
        ctx.job_store,
        settings.orchestration,
        jobs_queue=settings.queue.jobs_queue_name,
        tasks_queue=settings.queue.tasks_queue_name,
        resources={"storage": lambda: ctx.storage, "db": lambda: ctx.db, "settings": lambda: ctx.settings},
        payloads=BlobPayloads(lambda: ctx.storage, settings.orchestration.results_container),
        unique_redrive_ids=not getattr(ctx.queue_sender, "refuses_live_duplicates", False),
    )
