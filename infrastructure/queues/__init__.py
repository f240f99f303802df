"""Queue transports: ``postgres`` (the default, a table in the database) and ``servicebus``."""

from __future__ import annotations

from core.ports import MessageSender
from core.settings import QueueSettings
from infrastructure.db.database import Database
from infrastructure.queues.base import MessageSource, ReceivedMessage
from infrastructure.queues.postgres import PostgresQueue

__all__ = ["MessageSource", "PostgresQueue", "ReceivedMessage", "create_message_source", "create_sender"]


def create_sender(settings: QueueSettings, db: Database, client_id: str | None = None) -> MessageSender:
    if settings.queue_backend == "postgres":
        return PostgresQueue(db, settings)
    from infrastructure.queues.servicebus import ServiceBusSender

    return ServiceBusSender(settings, client_id)


def create_message_source(settings: QueueSettings, db: Database, client_id: str | None = None) -> MessageSource:
    """The receiving side for workers outside the Functions host (the local host, containers)."""
    if settings.queue_backend == "postgres":
        return PostgresQueue(db, settings)
    from infrastructure.queues.servicebus import ServiceBusSource

    return ServiceBusSource(settings, client_id)
