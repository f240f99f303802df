"""The one owner of the PostgreSQL connection pool.

Created once per process. Safe behind PgBouncer in transaction mode: no
prepared statements, no session state (settings are ``SET LOCAL`` inside a
transaction), transaction-scoped advisory locks only. psycopg errors that mean
"the database cannot be reached" become :class:`DatabaseUnavailable` here, and
timeouts, deadlocks and serialization conflicts :class:`DatabaseBusy` (both retryable).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from core.errors import DatabaseBusy, DatabaseUnavailable, GeoetlError, InvalidInput
from core.settings import DatabaseSettings

log = logging.getLogger(__name__)

TokenProvider = Callable[[], str]


def connection_kwargs(settings: DatabaseSettings, token_provider: TokenProvider | None = None) -> dict[str, Any]:
    """libpq keyword arguments, with the password or a fresh Entra ID token."""
    kwargs: dict[str, Any] = dict(settings.conninfo_kwargs())
    if token_provider is not None:
        kwargs["password"] = token_provider()
    elif settings.pgpassword is not None:
        kwargs["password"] = settings.pgpassword.get_secret_value()
    # PgBouncer transaction mode (before 1.21): no server-side prepared statements
    kwargs["prepare_threshold"] = 5 if settings.prepared_statements else None
    return kwargs


def connect(
    settings: DatabaseSettings, token_provider: TokenProvider | None = None, **extra: Any
) -> psycopg.Connection:
    """One direct connection (set-up tools and tests); the app uses :class:`Database`."""
    kwargs = connection_kwargs(settings, token_provider) | extra
    try:
        return psycopg.connect(**kwargs)
    except psycopg.OperationalError as exc:  # connecting: every operational error means "cannot reach"
        raise DatabaseUnavailable(_describe(settings, exc)) from exc


def _describe(settings: DatabaseSettings, exc: BaseException) -> str:
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"cannot reach PostgreSQL at {settings.host}:{settings.pgport}/{settings.pgdatabase}: {first_line}"


_BUSY_STATES = {
    "57014": "statement timeout or cancel",
    "40001": "serialization conflict",
    "40P01": "deadlock",
    "55P03": "lock not available",
}


def is_connection_failure(exc: psycopg.Error) -> bool:
    """Lost or refused connections and server shutdowns (not query errors such as a statement timeout)."""
    if isinstance(exc, psycopg.InterfaceError):
        return True
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in {"57P01", "57P02", "57P03"}


def translate(exc: psycopg.Error, settings: DatabaseSettings) -> GeoetlError | None:
    """The project error for a psycopg error that is worth retrying or caused by a value the caller gave
    (NUL characters, numbers out of range: a data exception), or None (a bug or bad SQL: re-raise)."""
    if isinstance(exc, psycopg.DataError):
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return InvalidInput(f"the database refused a value: {first_line}", sqlstate=exc.sqlstate)
    if exc.sqlstate in _BUSY_STATES:
        return DatabaseBusy(
            f"the database could not finish in time: {_BUSY_STATES[exc.sqlstate]}", sqlstate=exc.sqlstate
        )
    if is_connection_failure(exc):
        return DatabaseUnavailable(_describe(settings, exc))
    return None


IDLE_CHECK_SECONDS = 10.0


class _IdleCheck:
    """Check a pooled connection before use only when it sat idle a while (a dropped connection is
    noticed then); a connection returned moments ago is used without the extra round trip."""

    def __init__(self) -> None:
        self._returned: weakref.WeakKeyDictionary[psycopg.Connection[Any], float] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def returned(self, conn: psycopg.Connection[Any]) -> None:
        with self._lock:
            self._returned[conn] = time.monotonic()

    def check(self, conn: psycopg.Connection[Any]) -> None:
        with self._lock:
            last = self._returned.get(conn)
        if last is None or time.monotonic() - last > IDLE_CHECK_SECONDS:
            ConnectionPool.check_connection(conn)


class Database:
    """A psycopg connection pool plus transaction helpers."""

    def __init__(self, settings: DatabaseSettings, token_provider: TokenProvider | None = None) -> None:
        self.settings = settings
        self.token_provider = token_provider
        self._idle = _IdleCheck()
        self._pool = ConnectionPool(
            conninfo="",
            kwargs=lambda: connection_kwargs(settings, token_provider),
            min_size=settings.pg_pool_min_size,
            max_size=settings.pg_pool_max_size,
            timeout=settings.pg_connect_timeout,
            check=self._idle.check,
            reset=self._idle.returned,
            configure=self._configure if settings.direct else None,
            # A failed background connect gives up at once; the next request that needs a connection
            # tries again, so a database that comes back is used at once (no backoff to wait out).
            reconnect_timeout=0,
            open=False,
            name="geoetl",
        )
        self._pool.open(wait=False)

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        """On a direct connection (no PgBouncer: no shared server sessions), the statement timeout is also the
        session's, so the single-statement calls of :meth:`quick` are bounded too."""
        limit = self.settings.pg_statement_timeout_ms
        conn.execute("SELECT set_config('statement_timeout', %s, false)", (f"{limit}ms",))
        conn.commit()

    def close(self) -> None:
        self._pool.close()

    @contextmanager
    def connection(self, timeout: float | None = None) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """A pooled connection with dict rows; connection failures become DatabaseUnavailable."""
        try:
            with self._pool.connection(timeout=timeout) as conn:
                conn.row_factory = dict_row  # type: ignore[assignment]
                yield conn  # type: ignore[misc]
        except PoolTimeout as exc:
            raise DatabaseUnavailable(_describe(self.settings, exc)) from exc
        except psycopg.Error as exc:
            translated = translate(exc, self.settings)
            if translated is None:
                raise
            raise translated from exc

    @contextmanager
    def transaction(
        self, timeout: float | None = None, statement_timeout_ms: int | None = None
    ) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """A connection inside one transaction, with the statement timeout set for it alone."""
        limit = self.settings.pg_statement_timeout_ms if statement_timeout_ms is None else statement_timeout_ms
        with self.connection(timeout) as conn, conn.transaction():
            conn.execute("SELECT set_config('statement_timeout', %s, true)", (f"{limit}ms",))
            yield conn

    def fetch_one(self, query: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> dict[str, Any] | None:
        with self.transaction() as conn:
            return conn.execute(query, params).fetchone()  # type: ignore[arg-type]

    def quick(self, query: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        """One statement as its own transaction in a single round trip (autocommit): for the O(1) statements
        of the task path (claims, completions, lease renewals, receives). The statement timeout applies on
        direct connections (set for the session); behind PgBouncer there is none."""
        with self.connection() as conn:
            conn.autocommit = True
            try:
                cur = conn.execute(query, params)  # type: ignore[arg-type]
                return cur.fetchall() if cur.description else []
            finally:
                if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                    conn.autocommit = False  # else the connection is broken: the pool discards it
