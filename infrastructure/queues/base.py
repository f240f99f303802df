"""What every queue transport offers: sending (core.ports.MessageSender) and receiving (MessageSource)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True)
class ReceivedMessage:
    """A message as a transport hands it to a worker."""

    message_id: str
    body: bytes
    delivery_count: int = 1
    enqueued_time: datetime | None = None
    content_type: str | None = "application/json"
    application_properties: dict[str, Any] = field(default_factory=dict)
    receipt: Any = None  # transport-specific handle (lock token, row id)


class MessageSource(Protocol):
    """Receiving side of a transport, used by workers outside the Functions host (the local host).

    A received message stays invisible to other workers until it is completed or abandoned, or until the
    transport's visibility timeout (postgres) or lock (Service Bus) expires; then it is delivered again.
    That is harmless (the CoreMachine ignores a message for a task already running), but costs a delivery.
    """

    def receive(self, queue_name: str, max_messages: int, max_wait_seconds: float) -> Sequence[ReceivedMessage]: ...

    def complete(self, queue_name: str, message: ReceivedMessage) -> None: ...

    def abandon(self, queue_name: str, message: ReceivedMessage, reason: str) -> None: ...

    def release(self, queue_name: str, message: ReceivedMessage) -> None:
        """Give back a message received (prefetched) but not started: at once visible to other workers."""
        ...
