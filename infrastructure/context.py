"""The process-wide application context: settings plus the database and blob store, built lazily once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from core.settings import Settings, get_settings
from infrastructure.db.database import Database, TokenProvider

if TYPE_CHECKING:
    from core.ports import MessageSender
    from infrastructure.db.jobs import PostgresJobStore
    from infrastructure.queues import MessageSource
    from infrastructure.storage import BlobStore

T = TypeVar("T")


class AppContext:
    """Owns the connections of one process; triggers get it with :func:`get_app_context`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.RLock()  # singletons may build on each other
        self._db: Database | None = None
        self._storage: BlobStore | None = None
        self._singletons: dict[str, Any] = {}

    @property
    def db(self) -> Database:
        with self._lock:
            if self._db is None:
                self._db = Database(self.settings.database, self.db_token_provider)
            return self._db

    @property
    def storage(self) -> BlobStore:
        from infrastructure.storage import create_blob_store

        with self._lock:
            if self._storage is None:
                self._storage = create_blob_store(self.settings.storage, self.settings.app.managed_identity_client_id)
            return self._storage

    def singleton(self, name: str, factory: Callable[[], T]) -> T:
        """One ``factory()`` result per context (e.g. the CoreMachine, composed in ``triggers``)."""
        with self._lock:
            if name not in self._singletons:
                self._singletons[name] = factory()
            return self._singletons[name]  # type: ignore[no-any-return]

    @property
    def queue_sender(self) -> MessageSender:
        from infrastructure.queues import create_sender

        db, client_id = self.db, self.settings.app.managed_identity_client_id
        return self.singleton("queue_sender", lambda: create_sender(self.settings.queue, db, client_id))

    @property
    def message_source(self) -> MessageSource:
        from infrastructure.queues import PostgresQueue, create_message_source

        sender = self.queue_sender
        if isinstance(sender, PostgresQueue):  # one object: a send wakes this process's waiting workers
            return sender
        db, client_id = self.db, self.settings.app.managed_identity_client_id
        return self.singleton("message_source", lambda: create_message_source(self.settings.queue, db, client_id))

    @property
    def job_store(self) -> PostgresJobStore:
        from infrastructure.db.jobs import PostgresJobStore

        db, sender = self.db, self.queue_sender
        return self.singleton("job_store", lambda: PostgresJobStore(db, sender))

    @cached_property
    def db_token_provider(self) -> TokenProvider | None:
        """Entra ID tokens as database passwords when PG_AUTH_MODE=entra, else None."""
        if self.settings.database.pg_auth_mode != "entra":
            return None
        from infrastructure.identity import get_credential, token_provider

        credential = get_credential(self.settings.app.managed_identity_client_id)
        return token_provider(credential, self.settings.database.pg_entra_scope)

    def close(self) -> None:
        """Close what was built, users first (a queue flushes its acks), the pool and the blob store last."""
        with self._lock:
            for item in reversed(list(self._singletons.values())):
                close = getattr(item, "close", None)
                if callable(close):
                    close()
            self._singletons.clear()
            if self._db is not None:
                self._db.close()
                self._db = None
            if self._storage is not None:
                self._storage.close()
                self._storage = None


_context: AppContext | None = None
_context_lock = threading.Lock()


def get_app_context() -> AppContext:
    global _context
    with _context_lock:
        if _context is None:
            _context = AppContext(get_settings())
        return _context


def set_app_context(context: AppContext | None) -> AppContext | None:
    """Replace the process context (tests, the local host); returns the previous one."""
    global _context
    with _context_lock:
        previous, _context = _context, context
        return previous
