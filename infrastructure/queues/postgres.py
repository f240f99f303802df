"""The postgres queue transport (the default): a table in the orchestration database.

Receiving claims visible rows with ``FOR UPDATE SKIP LOCKED`` and hides them for
the visibility timeout; completing deletes the row — batched: the deletes ride
along with this process's next receive, in the same statement (a crash before
then only means a redelivery, which the CoreMachine ignores); abandoning makes it visible
again after a short pause; a message delivered more than QUEUE_MAX_DELIVERIES
times is moved to ``geoetl.dead_letters``. Sending is transactional: the
CoreMachine writes its messages in the same transaction as the state change.
``message_id`` is unique per queue among live messages, so re-sending a
message that is still queued is a no-op. Idle workers poll with a growing
pause (up to QUEUE_POLL_INTERVAL_MS); a send in this process wakes them at once, and a send
in another process through LISTEN/NOTIFY (the notification is part of the sending transaction,
delivered at its commit, to a listener on a direct connection: PgBouncer in transaction mode
cannot LISTEN). Without the listener (QUEUE_LISTEN=false, or the connection fails) polling alone
still delivers everything.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from core.models import QueueMessage
from core.settings import QueueSettings
from infrastructure.db.database import Database, connect
from infrastructure.db.dead_letters import record_dead_letter
from infrastructure.queues.base import ReceivedMessage

log = logging.getLogger("geoetl.queue")

_MIN_POLL_SECONDS = 0.01
CHANNEL = "geoetl_queue"
_LISTEN_RETRY_SECONDS = (1.0, 60.0)


class PostgresQueue:
    """Sender (transactional) and MessageSource over ``geoetl.queue_messages``."""

    transactional = True
    refuses_live_duplicates = True  # a message id still queued is not queued twice
    max_prefetch = 100  # releasing a prefetched message is one cheap update

    def __init__(self, db: Database, settings: QueueSettings) -> None:
        self.db = db
        self.settings = settings
        self._wakeup = threading.Condition()
        self._generations: dict[str, int] = {}  # per queue: bumped when messages for it were committed
        self._acks: list[int] = []  # completed messages not yet deleted
        self._acks_lock = threading.Lock()
        self._listener: threading.Thread | None = None
        self._closed = threading.Event()
        self.listening = threading.Event()  # set while notifications arrive

    # --- sending --------------------------------------------------------------------------------

    def send(self, queue: str, messages: Sequence[QueueMessage], conn: Any = None) -> None:
        if not messages:
            return
        if conn is None:
            with self.db.transaction() as own:
                self._insert(own, queue, messages)
            self.wake(queue)
        else:  # inside the caller's transaction: the caller wakes the workers after its commit
            self._insert(conn, queue, messages)

    def wake(self, queue_name: str | None = None) -> None:
        """Wake this process's receivers waiting on ``queue_name`` (all when None): messages are committed.
        Receivers of other queues wake, see nothing new for theirs and wait again without a query."""
        with self._wakeup:
            for name in [queue_name] if queue_name is not None else list(self._generations):
                self._generations[name] = self._generations.get(name, 0) + 1
            self._wakeup.notify_all()

    @staticmethod
    def _insert(conn: psycopg.Connection[Any], queue: str, messages: Sequence[QueueMessage]) -> None:
        """One statement; the messages travel as one JSON document (fast to encode, whatever their number)."""
        rows = [
            {
                "id": m.message_id,
                "body": m.body,
                "props": m.properties,
                "at": m.not_before.isoformat() if m.not_before is not None else None,
            }
            for m in messages
        ]
        conn.execute(
            "WITH added AS (INSERT INTO geoetl.queue_messages (queue_name, message_id, body, properties, visible_at) "
            "SELECT %s, m.id, m.body, coalesce(m.props, '{}'), coalesce(m.at, now()) "
            "FROM jsonb_to_recordset(%s) AS m(id text, body text, props jsonb, at timestamptz) "
            "ON CONFLICT (queue_name, message_id) DO NOTHING RETURNING visible_at) "
            "SELECT pg_notify(%s, %s) WHERE EXISTS (SELECT 1 FROM added WHERE visible_at <= now())",
            (queue, Jsonb(rows), CHANNEL, queue),
        )

    # --- receiving ------------------------------------------------------------------------------

    def receive(self, queue_name: str, max_messages: int, max_wait_seconds: float) -> Sequence[ReceivedMessage]:
        if self._listener is None and self._may_listen():
            self._start_listener()
        deadline = time.monotonic() + max_wait_seconds
        pause = _MIN_POLL_SECONDS
        longest = self.settings.queue_poll_interval_ms / 1000
        while True:
            with self._wakeup:
                generation = self._generations.setdefault(queue_name, 0)
            messages = self._claim(queue_name, max_messages)
            if messages:
                return messages
            if time.monotonic() >= deadline:
                return []
            poll_at = min(time.monotonic() + pause, deadline)
            with self._wakeup:  # until new messages for this queue, or the next poll (wake-ups for others: wait on)
                while self._generations[queue_name] == generation and (left := poll_at - time.monotonic()) > 0:
                    self._wakeup.wait(left)
            pause = min(pause * 2, longest)

    def _may_listen(self) -> bool:
        """LISTEN needs a session of its own: the private cluster, or an explicit direct port (PgBouncer in
        transaction mode would run it on a shared server connection and deliver nothing)."""
        db = self.db.settings
        return self.settings.queue_listen and (db.embedded or db.pg_direct_port is not None)

    def _claim(self, queue: str, limit: int) -> list[ReceivedMessage]:
        """One statement: delete the messages completed since the last call, claim up to ``limit``."""
        acks = self._take_acks()
        try:
            rows = self.db.quick(
                "WITH acked AS (DELETE FROM geoetl.queue_messages WHERE id = ANY(%s)), "
                "picked AS (SELECT id FROM geoetl.queue_messages WHERE queue_name = %s AND visible_at <= now() "
                "AND (locked_until IS NULL OR locked_until <= now()) "
                "ORDER BY visible_at, id LIMIT %s FOR UPDATE SKIP LOCKED) "
                "UPDATE geoetl.queue_messages m SET locked_until = now() + make_interval(secs => %s), "
                "delivery_count = m.delivery_count + 1 FROM picked WHERE m.id = picked.id "
                "RETURNING m.id, m.message_id, m.body, m.properties, m.delivery_count, m.enqueued_at, m.last_error",
                (acks, queue, limit, self.settings.queue_visibility_timeout_seconds),
            )
        except BaseException:
            self._return_acks(acks)
            raise
        received = []
        for row in rows:
            if row["delivery_count"] > self.settings.queue_max_deliveries:
                reason = f"delivered {row['delivery_count'] - 1} times without completing"
                if row["last_error"]:
                    reason += f"; last error: {row['last_error']}"
                try:
                    with self.db.transaction() as conn:
                        self._move_to_dead_letters(conn, queue, row, reason)
                except Exception:  # it comes back after the visibility timeout and is dead-lettered then
                    log.warning("dead-lettering message %s failed", row["message_id"], exc_info=True)
                continue
            received.append(
                ReceivedMessage(
                    message_id=row["message_id"],
                    body=row["body"].encode(),
                    delivery_count=row["delivery_count"],
                    enqueued_time=row["enqueued_at"],
                    application_properties=dict(row["properties"] or {}),
                    receipt=row["id"],
                )
            )
        return received

    def _take_acks(self) -> list[int]:
        with self._acks_lock:
            acks, self._acks = self._acks, []
        return acks

    def _return_acks(self, acks: list[int]) -> None:
        with self._acks_lock:
            self._acks.extend(acks)

    def flush(self) -> None:
        """Delete the completed messages now (receive does it on the way; tests and shutdown call this)."""
        acks = self._take_acks()
        if acks:
            try:
                self.db.quick("DELETE FROM geoetl.queue_messages WHERE id = ANY(%s)", (acks,))
            except BaseException:
                self._return_acks(acks)
                raise

    def _start_listener(self) -> None:
        with self._wakeup:
            if self._listener is not None:
                return
            self._listener = threading.Thread(
                target=_listen, args=(weakref.ref(self), self._closed), name="queue-listen", daemon=True
            )
            self._listener.start()

    def close(self) -> None:
        self._closed.set()
        try:
            self.flush()
        except Exception:  # the messages come back after the visibility timeout: harmless duplicates
            log.warning("could not delete %d completed message(s) on close", len(self._acks), exc_info=True)

    def complete(self, queue_name: str, message: ReceivedMessage) -> None:
        with self._acks_lock:
            self._acks.append(message.receipt)

    def release(self, queue_name: str, message: ReceivedMessage) -> None:
        """Visible again at once, and this delivery not counted (the message was never started)."""
        self.db.quick(
            "UPDATE geoetl.queue_messages SET locked_until = NULL, delivery_count = greatest(delivery_count - 1, 0) "
            "WHERE id = %s AND delivery_count = %s",  # still this delivery's (not re-received meanwhile)
            (message.receipt, message.delivery_count),
        )

    def abandon(self, queue_name: str, message: ReceivedMessage, reason: str) -> None:
        """Visible again after a pause growing with the deliveries (1 s, 2 s, 4 s... at most 60 s)."""
        pause = min(60.0, 2.0 ** (message.delivery_count - 1))
        with self.db.transaction() as conn:
            if message.delivery_count >= self.settings.queue_max_deliveries:
                row = conn.execute(
                    "SELECT id, message_id, body, delivery_count FROM geoetl.queue_messages WHERE id = %s FOR UPDATE",
                    (message.receipt,),
                ).fetchone()
                if row is not None:
                    self._move_to_dead_letters(
                        conn, queue_name, row, f"failed on each of {row['delivery_count']} deliveries: {reason}"
                    )
                return
            conn.execute(
                "UPDATE geoetl.queue_messages SET visible_at = now() + make_interval(secs => %s), "
                "locked_until = NULL, last_error = %s WHERE id = %s AND delivery_count = %s",
                (pause, reason[:2000], message.receipt, message.delivery_count),
            )

    @staticmethod
    def _move_to_dead_letters(conn: psycopg.Connection[Any], queue: str, row: dict[str, Any], reason: str) -> None:
        log.warning("dead-lettering message %s on %s: %s", row["message_id"], queue, reason)
        conn.execute("DELETE FROM geoetl.queue_messages WHERE id = %s", (row["id"],))
        record_dead_letter(conn, queue, row["message_id"], row["body"], reason, row["delivery_count"])

    # --- for operators and tests ----------------------------------------------------------------

    def stats(self) -> dict[str, dict[str, int]]:
        """Per queue: messages, how many are being worked on, how many wait for a later time."""
        self.flush()
        with self.db.transaction() as conn:
            rows = conn.execute(
                "SELECT queue_name, count(*) AS messages, "
                "count(*) FILTER (WHERE locked_until > now()) AS in_flight, "
                "count(*) FILTER (WHERE visible_at > now()) AS scheduled "
                "FROM geoetl.queue_messages GROUP BY queue_name"
            ).fetchall()
        return {r["queue_name"]: {k: int(r[k]) for k in ("messages", "in_flight", "scheduled")} for r in rows}

    def depth(self, queue_name: str) -> int:
        """Messages in the queue (visible or not), after deleting the completed ones."""
        self.flush()
        row = self.db.fetch_one("SELECT count(*) AS n FROM geoetl.queue_messages WHERE queue_name = %s", (queue_name,))
        return int(row["n"]) if row else 0


def _listen(queue_ref: weakref.ref[PostgresQueue], closed: threading.Event) -> None:
    """LISTEN on a direct connection and wake the queue's receivers on each notification; reconnect with a
    growing pause when the connection fails; end when the queue is closed or garbage."""
    pause = _LISTEN_RETRY_SECONDS[0]
    while not closed.is_set():
        try:
            queue = queue_ref()
            if queue is None:
                return
            settings, token_provider = queue.db.settings.for_schema_changes(), queue.db.token_provider
            del queue
            with connect(settings, token_provider, autocommit=True) as conn:
                conn.execute(f"LISTEN {CHANNEL}")
                pause = _LISTEN_RETRY_SECONDS[0]
                _set_listening(queue_ref, True)
                while not closed.is_set():
                    names = {n.payload for n in conn.notifies(timeout=1.0, stop_after=1)}
                    queue = queue_ref()
                    if queue is None:
                        return
                    for name in names:
                        queue.wake(name)
                    del queue
        except Exception as exc:  # polling still delivers; try again later
            if closed.is_set() or queue_ref() is None:
                return  # the queue was closed (and its database perhaps dropped) meanwhile
            log.warning("queue listener: %s; polling until it reconnects", getattr(exc, "message", exc))
        _set_listening(queue_ref, False)
        if closed.wait(pause):
            return
        pause = min(pause * 2, _LISTEN_RETRY_SECONDS[1])


def _set_listening(queue_ref: weakref.ref[PostgresQueue], on: bool) -> None:
    queue = queue_ref()
    if queue is not None:
        (queue.listening.set if on else queue.listening.clear)()
