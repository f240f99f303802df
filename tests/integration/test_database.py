"""The connection pool on a real PostgreSQL: errors, timeouts, Entra tokens, PgBouncer transaction mode."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import psycopg
import pytest

from core.errors import DatabaseBusy, DatabaseUnavailable
from core.settings import DatabaseSettings
from infrastructure.db.database import Database, connect
from infrastructure.db.migrations import applied_versions, apply_migrations
from infrastructure.identity import token_provider
from services.health import check_health
from tests.helpers.servers import free_port
from tests.plugins.app import make_context


def test_unreachable_server_is_database_unavailable_naming_where() -> None:
    settings = DatabaseSettings(pgport=free_port(), pg_connect_timeout=1)
    started = time.monotonic()
    db = Database(settings)
    try:
        with pytest.raises(DatabaseUnavailable, match=rf"127.0.0.1:{settings.pgport}/geoetl"), db.connection():
            pass
    finally:
        db.close()
    assert time.monotonic() - started < 10
    with pytest.raises(DatabaseUnavailable):
        connect(settings)


def test_statement_timeout_is_transaction_local(fresh_db: DatabaseSettings) -> None:
    db = Database(DatabaseSettings(**{**fresh_db.model_dump(), "pg_statement_timeout_ms": 200, "pg_pool_max_size": 1}))
    try:
        with (
            pytest.raises(DatabaseBusy, match="statement timeout") as info,
            db.transaction(statement_timeout_ms=150) as conn,
        ):
            conn.execute("SELECT pg_sleep(2)")
        assert info.value.retryable and isinstance(info.value.__cause__, psycopg.errors.QueryCanceled)
        with db.connection() as conn:
            row = conn.execute("SHOW statement_timeout").fetchone()
        # the transaction's own timeout did not leak: the session keeps the setting's (direct connection)
        assert row == {"statement_timeout": "200ms"}
    finally:
        db.close()


def test_entra_token_is_fetched_for_each_new_connection(fresh_db: DatabaseSettings) -> None:
    calls: list[str] = []

    def provider() -> str:
        calls.append("token")
        return f"token-{len(calls)}"

    db = Database(DatabaseSettings(**{**fresh_db.model_dump(), "pg_pool_min_size": 0}), token_provider=provider)
    try:
        barrier = threading.Barrier(3)

        def hold() -> None:
            with db.connection() as conn:
                conn.execute("SELECT 1")
                barrier.wait(10)

        threads = [threading.Thread(target=hold) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        db.close()
    assert len(calls) >= 3


def test_token_provider_caches_until_close_to_expiry() -> None:
    issued: list[float] = []

    class Credential:
        def get_token(self, scope: str) -> SimpleNamespace:
            issued.append(time.time())
            return SimpleNamespace(token=f"t{len(issued)}", expires_on=time.time() + 3600 if len(issued) == 1 else 0)

    get = token_provider(Credential(), "scope/.default", refresh_margin_s=300)
    assert get() == "t1" and get() == "t1"
    assert len(issued) == 1


def test_migrations_and_queries_through_pgbouncer_transaction_mode(pgbouncer: DatabaseSettings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with connect(pgbouncer) as conn:
        assert apply_migrations(conn) == []
        assert applied_versions(conn)
    db = Database(DatabaseSettings(**{**pgbouncer.model_dump(), "pg_pool_max_size": 4}))
    try:
        for _ in range(20):
            with db.transaction() as conn:
                assert conn.execute("SELECT postgis_lib_version() AS v").fetchone()
        context = make_context(pgbouncer, tmp_path)
        report = check_health(context.settings, db, lambda: context.storage)
        assert report.status == "healthy", report.failing
        with db.connection() as conn:  # nothing of ours is left in PgBouncer's shared server sessions
            assert conn.execute("SHOW statement_timeout").fetchone() == {"statement_timeout": "0"}
    finally:
        db.close()


def test_jobs_run_through_pgbouncer_transaction_mode(pgbouncer: DatabaseSettings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from core.models import JobStatus
    from tests.helpers.driver import Driver
    from tests.plugins.machine import FAST

    context = make_context(pgbouncer, tmp_path, orchestration=FAST)
    try:
        driver = Driver.of(context)
        job = driver.machine.submit("diamond", {"parts": 12, "page_size": 5}).job
        assert driver.run(job.job_id) == JobStatus.COMPLETED
        retried = driver.machine.submit("hello_world", {"n": 3, "fail_indices": [1], "fail_attempts": 2}).job
        assert driver.run(retried.job_id) == JobStatus.COMPLETED
        assert context.message_source.listening.wait(30)  # type: ignore[attr-defined]  # LISTEN on the direct port
    finally:
        context.close()


def test_pool_recovers_when_the_database_comes_back(throwaway_cluster) -> None:  # type: ignore[no-untyped-def]
    cluster = throwaway_cluster
    db = Database(DatabaseSettings(pgport=cluster.port, pgdatabase="postgres", pg_connect_timeout=1))
    try:
        with pytest.raises(DatabaseUnavailable), db.connection():
            pass
        cluster.start()
        with db.connection() as conn:
            assert conn.execute("SELECT 1 AS one").fetchone() == {"one": 1}
        cluster.stop()
        with pytest.raises(DatabaseUnavailable), db.connection() as conn:
            conn.execute("SELECT 1")
        cluster.start()
        deadline = time.monotonic() + 10
        while True:  # the first request after a restart may meet a connection that died with the server
            try:
                with db.connection() as conn:
                    assert conn.execute("SELECT 2 AS two").fetchone() == {"two": 2}
                break
            except DatabaseUnavailable:
                assert time.monotonic() < deadline, "the pool never reconnected"
    finally:
        db.close()


def test_a_deadlock_is_retryable_and_a_bad_query_is_not_translated(fresh_db: DatabaseSettings) -> None:
    db = Database(DatabaseSettings(**{**fresh_db.model_dump(), "pg_pool_max_size": 2}))
    try:
        with db.transaction() as conn:
            conn.execute(
                "CREATE TABLE geoetl.pair (id int PRIMARY KEY, n int); INSERT INTO geoetl.pair VALUES (1,0),(2,0)"
            )
        barrier = threading.Barrier(2)
        outcomes: list[BaseException | None] = []

        def update(first: int, second: int) -> None:
            try:
                with db.transaction() as conn:
                    conn.execute("UPDATE geoetl.pair SET n = n + 1 WHERE id = %s", (first,))
                    barrier.wait(10)
                    conn.execute("UPDATE geoetl.pair SET n = n + 1 WHERE id = %s", (second,))
                outcomes.append(None)
            except BaseException as exc:
                outcomes.append(exc)

        threads = [threading.Thread(target=update, args=(1, 2)), threading.Thread(target=update, args=(2, 1))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        failures = [o for o in outcomes if o is not None]
        assert len(failures) == 1 and isinstance(failures[0], DatabaseBusy) and "deadlock" in str(failures[0])
        with pytest.raises(psycopg.errors.UndefinedTable), db.transaction() as conn:
            conn.execute("SELECT * FROM geoetl.no_such_table")
    finally:
        db.close()


def test_schema_changes_go_to_the_direct_port(fresh_db: DatabaseSettings) -> None:
    """PGPORT leads nowhere (think: PgBouncer): set-up must take PG_DIRECT_PORT, or it cannot succeed."""
    from infrastructure.db.setup import setup_database

    pooled_only = DatabaseSettings(
        **{**fresh_db.model_dump(), "pgport": free_port(), "pg_direct_port": fresh_db.pgport, "pg_connect_timeout": 1}
    )
    assert pooled_only.for_schema_changes().pgport == fresh_db.pgport
    result = setup_database(pooled_only)
    assert result.migrations_applied == [] and result.pgstac_version == "0.10.0"


def test_a_second_setup_waits_for_the_first(fresh_db: DatabaseSettings) -> None:
    from infrastructure.db.setup import setup_database

    with connect(fresh_db) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(hashtext('geoetl.setup'))")
        result: list[object] = []
        thread = threading.Thread(target=lambda: result.append(setup_database(fresh_db)))
        thread.start()
        time.sleep(1.0)
        assert thread.is_alive(), "set-up must wait while another one holds the lock"
        holder.rollback()
    thread.join(30)
    assert result and not thread.is_alive()


def test_single_statements_are_bounded_by_the_statement_timeout_on_direct_connections(
    fresh_db: DatabaseSettings,
) -> None:
    db = Database(DatabaseSettings(**{**fresh_db.model_dump(), "pg_statement_timeout_ms": 200}))
    try:
        with pytest.raises(DatabaseBusy):
            db.quick("SELECT pg_sleep(5)")
        assert db.quick("SELECT 1 AS one") == [{"one": 1}]  # the connection is fine afterwards
    finally:
        db.close()
