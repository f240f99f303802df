"""The Service Bus queue transport (QUEUE_BACKEND=servicebus) over the azure-servicebus SDK.

Sending (:class:`ServiceBusSender`, a ``core.ports.MessageSender``) is not
transactional: the CoreMachine sends after its commit, and what a crash loses
in between the janitor re-drives. Each message keeps its deterministic
``message_id``, so a queue with duplicate detection drops a re-sent copy.
Messages due now go out in ``ServiceBusMessageBatch``es; a message whose
``not_before`` lies ahead is scheduled (Service Bus enqueues it then), which is
how retry backoff works on this transport.

Receiving (:class:`ServiceBusSource`, a ``MessageSource``) is for workers run
outside the Functions host, e.g. ``python -m triggers.localhost --workers-only``;
in Azure the Functions Service Bus trigger receives. Messages are received in
PEEK_LOCK mode and their locks renewed in the background for up to
:data:`LOCK_RENEWAL_SECONDS`; completing deletes a message, abandoning makes it
available again at once, and Service Bus itself dead-letters a message
abandoned more than the queue's MaxDeliveryCount times.

The SDK's clients, senders and receivers are not thread-safe: each queue's
sender or receiver is used under its own lock, so calls for one queue are
serialised within a process (a settlement waits for a receive in progress on the
same queue, at most its ``max_wait_seconds``).

SDK errors become ``ServiceUnavailable`` (retryable), with messages that never
quote the connection string's key or signature; an SDK exception whose text
holds a secret is not chained (logged tracebacks would print it).
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar
from urllib.parse import urlparse

from azure.servicebus import (
    AutoLockRenewer,
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusMessageBatch,
    ServiceBusReceivedMessage,
    ServiceBusReceiveMode,
    ServiceBusReceiver,
)
from azure.servicebus import ServiceBusSender as SdkSender
from azure.servicebus.amqp import AmqpMessageBodyType
from azure.servicebus.exceptions import (
    MessageAlreadySettled,
    MessageLockLostError,
    MessagingEntityDisabledError,
    MessagingEntityNotFoundError,
    OperationTimeoutError,
    ServiceBusAuthenticationError,
    ServiceBusAuthorizationError,
    ServiceBusCommunicationError,
    ServiceBusConnectionError,
    ServiceBusError,
    ServiceBusQuotaExceededError,
    ServiceBusServerBusyError,
)

from core.errors import Conflict, GeoetlError, InvalidInput, InvalidSetting, ServiceUnavailable
from core.models import QueueMessage, canonical_json
from core.settings import QueueSettings
from infrastructure.identity import get_credential
from infrastructure.queues.base import ReceivedMessage

log = logging.getLogger("geoetl.queue")

CONTENT_TYPE = "application/json"
# Longest a received message's lock is kept renewed while its function runs. A task running longer loses its
# lock: the message is delivered again (harmless, the CoreMachine ignores a message for a running task). Task
# leases and heartbeats, not this lock, decide whether a task is still alive.
LOCK_RENEWAL_SECONDS = 3600.0
# Service Bus limits MessageId to 128 characters; a longer id is replaced by its digest (still deterministic).
MAX_MESSAGE_ID_LENGTH = 128
# receive_messages refuses a wait of 0; a caller asking not to wait gets this much.
_MIN_WAIT_SECONDS = 0.05
_SETTINGS_HINT = (
    "set ServiceBusConnection (a connection string) or ServiceBusConnection__fullyQualifiedNamespace "
    "(<name>.servicebus.windows.net, reached with managed identity)"
)
# Secrets a connection string, a SAS token or an HTTP header can carry.
_SECRET_PATTERNS = (
    re.compile(r"(?i)\b(SharedAccessKey|SharedAccessSignature|AccountKey|sig)=[^;&\s'\"<>]*"),
    re.compile(r"(?i)\b(Bearer)\s+[^\s'\",;]+"),
)

# --- building messages (pure) ---------------------------------------------------------------------


def sdk_message_id(message_id: str) -> str:
    """``message_id`` itself, or ``sha256:<hex digest>`` of it when Service Bus would refuse its length."""
    if len(message_id) <= MAX_MESSAGE_ID_LENGTH:
        return message_id
    return "sha256:" + hashlib.sha256(message_id.encode()).hexdigest()


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC, timezone-aware; a naive datetime is taken to be UTC already (as the database gives)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _property_value(value: Any) -> str | int | float | bool:
    """AMQP application properties hold primitives; anything else travels as its canonical JSON text."""
    return value if isinstance(value, str | int | float | bool) else canonical_json(value)


def to_sdk_message(message: QueueMessage) -> ServiceBusMessage:
    """The Service Bus message for ``message``: same id, JSON text body, its properties (``None`` values left out)."""
    properties: dict[str | bytes, Any] = {
        key: _property_value(value) for key, value in message.properties.items() if value is not None
    }
    return ServiceBusMessage(
        message.body,
        message_id=sdk_message_id(message.message_id),
        content_type=CONTENT_TYPE,
        application_properties=properties or None,
    )


def build_messages(
    messages: Sequence[QueueMessage], now: datetime | None = None
) -> tuple[list[ServiceBusMessage], list[tuple[ServiceBusMessage, datetime]]]:
    """Split ``messages`` into those to send now and those to schedule, each with its UTC enqueue time.

    A message is scheduled when its ``not_before`` lies after ``now`` (default: the current time).
    """
    now = as_utc(now or datetime.now(UTC))
    immediate: list[ServiceBusMessage] = []
    scheduled: list[tuple[ServiceBusMessage, datetime]] = []
    for message in messages:
        due = as_utc(message.not_before) if message.not_before is not None else None
        if due is not None and due > now:
            scheduled.append((to_sdk_message(message), due))
        else:
            immediate.append(to_sdk_message(message))
    return immediate, scheduled


def group_by_time(scheduled: Sequence[tuple[ServiceBusMessage, datetime]]) -> dict[datetime, list[ServiceBusMessage]]:
    """One ``schedule_messages`` call per enqueue time (the call takes a single time for all its messages)."""
    groups: dict[datetime, list[ServiceBusMessage]] = {}
    for message, due in scheduled:
        groups.setdefault(due, []).append(message)
    return groups


# --- sending (SDK calls) ---------------------------------------------------------------------------


def _try_add(batch: ServiceBusMessageBatch, message: ServiceBusMessage) -> bool:
    try:
        batch.add_message(message)
    except ValueError:  # MessageSizeExceededError is a ValueError: the batch is full
        return False
    return True


def send_in_batches(sender: SdkSender, messages: Sequence[ServiceBusMessage]) -> int:
    """Send ``messages`` in as few batches as their size allows; returns the number of batches sent."""
    if not messages:
        return 0
    batch, sent = sender.create_message_batch(), 0
    for message in messages:
        if _try_add(batch, message):
            continue
        if len(batch):
            sender.send_messages(batch)
            sent += 1
            batch = sender.create_message_batch()
        if not _try_add(batch, message):
            raise InvalidInput(
                f"message {message.message_id} is larger than a Service Bus batch may be "
                f"({batch.max_size_in_bytes} bytes)",
                message_id=message.message_id,
            )
    sender.send_messages(batch)
    return sent + 1


def schedule_all(sender: SdkSender, scheduled: Sequence[tuple[ServiceBusMessage, datetime]]) -> None:
    """Schedule each message for its enqueue time."""
    for due, group in group_by_time(scheduled).items():
        sender.schedule_messages(group, due)


# --- receiving (pure) ------------------------------------------------------------------------------


def message_body(message: ServiceBusReceivedMessage) -> bytes:
    """The body as bytes: a data body is a sequence of byte sections, joined; a value body is encoded."""
    body = message.body
    if message.body_type == AmqpMessageBodyType.DATA:
        return b"".join(body)
    if isinstance(body, bytes):
        return body
    return body.encode() if isinstance(body, str) else canonical_json(body).encode()


def _text(value: Any) -> Any:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


def to_received(message: ServiceBusReceivedMessage) -> ReceivedMessage:
    """The transport-neutral view of a received message; ``receipt`` is the message itself (to settle it).

    The SDK reports the AMQP delivery count, the number of *earlier* deliveries (0 the first time); a
    ``ReceivedMessage`` counts this delivery too (1 the first time), as the postgres transport and the
    Functions trigger do. Application properties arrive with bytes keys and string values: decoded here.
    """
    properties = message.application_properties or {}
    return ReceivedMessage(
        message_id=_text(message.message_id) or "",
        body=message_body(message),
        delivery_count=(message.delivery_count or 0) + 1,
        enqueued_time=message.enqueued_time_utc,
        content_type=message.content_type,
        application_properties={str(_text(key)): _text(value) for key, value in properties.items()},
        receipt=message,
    )


# --- errors ----------------------------------------------------------------------------------------


def redact(text: str, *secrets: str) -> str:
    """``text`` without the given secrets, nor keys, signatures and tokens it may quote."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    text = _SECRET_PATTERNS[0].sub(r"\1=<redacted>", text)
    return _SECRET_PATTERNS[1].sub(r"\1 <redacted>", text)


def _quotes_secret(exc: BaseException, secrets: Sequence[str]) -> bool:
    """Whether ``exc``, or an exception it chains or wraps (SDK errors keep theirs), has text ``redact`` changes."""
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    while pending and len(seen) < 20:  # chains are short; never loop on a cycle
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        text = str(current)
        if redact(text, *secrets) != text:
            return True
        linked = (getattr(current, "inner_exception", None), current.__cause__, current.__context__)
        pending.extend(other for other in linked if isinstance(other, BaseException))
    return False


# What each kind of SDK error says about Service Bus, most specific first.
_CAUSES: tuple[tuple[tuple[type[ServiceBusError], ...], str], ...] = (
    (
        (ServiceBusAuthenticationError, ServiceBusAuthorizationError),
        "refused the credentials: check ServiceBusConnection, or the managed identity and its "
        "'Azure Service Bus Data Sender' / 'Data Receiver' role",
    ),
    ((MessagingEntityNotFoundError,), "has no such queue"),
    ((MessagingEntityDisabledError,), "has the queue disabled"),
    ((MessageLockLostError,), "lost the message's lock, so it will be delivered again"),
    ((ServiceBusServerBusyError,), "is busy (throttled)"),
    ((ServiceBusQuotaExceededError,), "is over a quota (queue full or too many connections)"),
    ((OperationTimeoutError,), "did not answer in time"),
    ((ServiceBusConnectionError, ServiceBusCommunicationError), "cannot be reached"),
)


def translate_error(exc: ServiceBusError, operation: str, queue: str, *secrets: str) -> ServiceUnavailable:
    """The ``ServiceUnavailable`` for an SDK error raised while doing ``operation`` on ``queue``."""
    cause = next((text for kind, text in _CAUSES if isinstance(exc, kind)), "failed")
    lines = redact(str(getattr(exc, "message", None) or exc), *secrets).strip().splitlines()
    reason = f"{type(exc).__name__}: {lines[0][:300]}" if lines else type(exc).__name__
    return ServiceUnavailable(
        f"{operation} on Service Bus queue {queue!r} failed: Service Bus {cause} ({reason})",
        queue=queue,
        operation=operation,
        azure_error=type(exc).__name__,
    )


@contextmanager
def translated(operation: str, queue: str, *secrets: str) -> Iterator[None]:
    """Run a block of SDK calls, raising SDK errors as core.errors exceptions."""
    try:
        yield
    except ServiceBusError as exc:
        error = translate_error(exc, operation, queue, *secrets)
        if _quotes_secret(exc, secrets):
            raise error from None
        raise error from exc
    except MessageAlreadySettled:
        raise Conflict(f"the message was already settled ({operation} on queue {queue!r})", queue=queue) from None


# --- clients ---------------------------------------------------------------------------------------


def _namespace_host(namespace: str) -> str:
    """``<name>.servicebus.windows.net`` also when given as a URL (``sb://...``)."""
    return (urlparse(namespace).hostname or namespace) if "://" in namespace else namespace.strip().strip("/")


def build_client(settings: QueueSettings, client_id: str | None) -> ServiceBusClient:
    """A client from the connection string when set, else for the namespace with an azure-identity credential."""
    connection = settings.servicebus_connection.get_secret_value() if settings.servicebus_connection else ""
    if connection:
        try:
            return ServiceBusClient.from_connection_string(connection)
        except ValueError as exc:  # the SDK's messages name the problem, never the value
            raise InvalidSetting(
                f"ServiceBusConnection is not a Service Bus connection string ({redact(str(exc), connection)})",
                setting="ServiceBusConnection",
            ) from None
    if settings.servicebus_namespace:
        host = _namespace_host(settings.servicebus_namespace)
        return ServiceBusClient(fully_qualified_namespace=host, credential=get_credential(client_id))
    raise InvalidSetting(
        f"the servicebus queue transport needs a namespace: {_SETTINGS_HINT}",
        settings=["ServiceBusConnection", "ServiceBusConnection__fullyQualifiedNamespace"],
    )


def _secrets_of(settings: QueueSettings) -> tuple[str, ...]:
    return (settings.servicebus_connection.get_secret_value(),) if settings.servicebus_connection else ()


Handler = TypeVar("Handler", SdkSender, ServiceBusReceiver)


@dataclass
class _Slot(Generic[Handler]):
    handler: Handler
    lock: threading.Lock = field(default_factory=threading.Lock)


class _PerQueue(Generic[Handler]):
    """One cached SDK handler (sender or receiver) per queue, each used under its own lock."""

    def __init__(self, open_handler: Callable[[str], Handler]) -> None:
        self._open: Callable[[str], Handler] = open_handler
        self._guard = threading.Lock()
        self._slots: dict[str, _Slot[Handler]] = {}
        self._closed = False

    @contextmanager
    def use(self, queue: str) -> Iterator[Handler]:
        with self._guard:
            if self._closed:
                raise GeoetlError(f"the Service Bus transport is closed (queue {queue!r})")
            slot = self._slots.get(queue)
            if slot is None:  # creating a handler opens nothing yet: the SDK connects on first use
                slot = self._slots[queue] = _Slot(self._open(queue))
        with slot.lock:
            yield slot.handler

    def close(self) -> None:
        """Close every handler, each once no call is using it; later ``use`` calls fail."""
        with self._guard:
            self._closed, slots = True, list(self._slots.items())
            self._slots.clear()
        for queue, slot in slots:
            with slot.lock:
                _close_quietly(slot.handler, f"handler of queue {queue!r}")


def _close_quietly(closable: Any, what: str) -> None:
    try:
        closable.close()
    except Exception:  # closing at shutdown: nothing left to do about a failure but note it
        log.debug("closing the Service Bus %s failed", what, exc_info=True)


# --- the transport ---------------------------------------------------------------------------------


class ServiceBusSender:
    """Sends job and task messages to Service Bus queues (``core.ports.MessageSender``)."""

    transactional = False

    def __init__(
        self, settings: QueueSettings, client_id: str | None, *, client: ServiceBusClient | None = None
    ) -> None:
        """``client`` replaces the one built from ``settings`` (tests)."""
        self._client = client if client is not None else build_client(settings, client_id)
        self._secrets = _secrets_of(settings)
        self._senders: _PerQueue[SdkSender] = _PerQueue(lambda queue: self._client.get_queue_sender(queue))

    def send(self, queue: str, messages: Sequence[QueueMessage], conn: Any = None) -> None:
        """Send ``messages`` to ``queue`` (``conn`` is ignored: this sender is not transactional)."""
        if not messages:
            return
        immediate, scheduled = build_messages(messages)
        with self._senders.use(queue) as sender, translated("send", queue, *self._secrets):
            send_in_batches(sender, immediate)
            schedule_all(sender, scheduled)
        log.debug("sent %d and scheduled %d messages to %s", len(immediate), len(scheduled), queue)

    def close(self) -> None:
        """Close the senders and the client's connection."""
        self._senders.close()
        _close_quietly(self._client, "client")


class ServiceBusSource:
    """Receives from Service Bus queues in PEEK_LOCK mode (``infrastructure.queues.base.MessageSource``)."""

    max_prefetch = 1  # giving a message back (abandon) counts as a delivery in Service Bus

    def __init__(
        self, settings: QueueSettings, client_id: str | None, *, client: ServiceBusClient | None = None
    ) -> None:
        """``client`` replaces the one built from ``settings`` (tests)."""
        self._client = client if client is not None else build_client(settings, client_id)
        self._secrets = _secrets_of(settings)
        self._renewer = AutoLockRenewer(
            max_lock_renewal_duration=LOCK_RENEWAL_SECONDS, on_lock_renew_failure=_lock_renewal_failed
        )
        self._receivers: _PerQueue[ServiceBusReceiver] = _PerQueue(self._open_receiver)

    def _open_receiver(self, queue: str) -> ServiceBusReceiver:
        """Every message this receiver returns is registered with the lock renewer."""
        return self._client.get_queue_receiver(
            queue, receive_mode=ServiceBusReceiveMode.PEEK_LOCK, auto_lock_renewer=self._renewer, prefetch_count=0
        )

    def receive(self, queue_name: str, max_messages: int, max_wait_seconds: float) -> Sequence[ReceivedMessage]:
        """Up to ``max_messages`` messages, waiting at most ``max_wait_seconds`` for the first."""
        if max_messages <= 0:
            return []
        with self._receivers.use(queue_name) as receiver, translated("receive", queue_name, *self._secrets):
            batch = receiver.receive_messages(
                max_message_count=max_messages, max_wait_time=max(max_wait_seconds, _MIN_WAIT_SECONDS)
            )
        return [to_received(message) for message in batch]

    def complete(self, queue_name: str, message: ReceivedMessage) -> None:
        """Delete the message from the queue."""
        with self._receivers.use(queue_name) as receiver, translated("complete", queue_name, *self._secrets):
            receiver.complete_message(message.receipt)

    def abandon(self, queue_name: str, message: ReceivedMessage, reason: str) -> None:
        """Release the message for another delivery; after MaxDeliveryCount Service Bus dead-letters it.

        ``reason`` is only logged: abandoning carries no text, and the dead-letter reason Service Bus records
        is MaxDeliveryCountExceeded.
        """
        log.debug("abandoning message %s on %s: %s", message.message_id, queue_name, reason)
        with self._receivers.use(queue_name) as receiver, translated("abandon", queue_name, *self._secrets):
            receiver.abandon_message(message.receipt)

    def release(self, queue_name: str, message: ReceivedMessage) -> None:
        """Give back a prefetched message that was not started (Service Bus counts it as a delivery)."""
        self.abandon(queue_name, message, "released unstarted")

    def close(self) -> None:
        """Stop renewing locks, close the receivers and the client's connection."""
        _close_quietly(self._renewer, "lock renewer")
        self._receivers.close()
        _close_quietly(self._client, "client")


def _lock_renewal_failed(renewable: Any, error: Exception | None) -> None:
    """The lock of a message still being processed could not be kept: it will be delivered again."""
    message_id = getattr(renewable, "message_id", None)
    log.warning("could not renew the lock of Service Bus message %s: %s", message_id, error)
