"""Migrations on a real PostgreSQL: idempotent, recorded, concurrent-safe, tamper-evident."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest
from psycopg.rows import tuple_row

from core.settings import DatabaseSettings
from infrastructure.db.database import connect
from infrastructure.db.migrations import (
    MIGRATIONS_DIR,
    MigrationError,
    applied_versions,
    apply_migrations,
    load_migrations,
    redeploy,
)

SCHEMA_SNAPSHOT = """
SELECT n.nspname, c.relname, c.relkind, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname IN ('geoetl', 'geo', 'h3')
ORDER BY 1, 2, 4
"""


def snapshot(settings: DatabaseSettings) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    with connect(settings) as conn:
        cur = conn.cursor(row_factory=tuple_row)
        tables = cur.execute(SCHEMA_SNAPSHOT).fetchall()
        extensions = cur.execute("SELECT extname, extversion FROM pg_extension ORDER BY 1").fetchall()
    return tables, extensions


def test_applying_twice_changes_nothing(empty_db: DatabaseSettings) -> None:
    with connect(empty_db) as conn:
        first = apply_migrations(conn)
    assert first == [m.version for m in load_migrations()]
    before = snapshot(empty_db)
    with connect(empty_db) as conn:
        assert apply_migrations(conn) == []
        assert applied_versions(conn) == first
    assert snapshot(empty_db) == before
    extensions = {name for name, _ in before[1]}
    assert {"postgis", "btree_gist", "unaccent"} <= extensions


def test_extensions_live_in_public_for_pgstac(empty_db: DatabaseSettings) -> None:
    with connect(empty_db) as conn:
        apply_migrations(conn)
        row = conn.execute(
            "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
            "WHERE e.extname = 'postgis'"
        ).fetchone()
    assert row == ("public",)


def test_concurrent_runners_apply_each_migration_once(empty_db: DatabaseSettings) -> None:
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with connect(empty_db) as conn:
                results.append(apply_migrations(conn))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    applied = [v for r in results for v in r]
    assert sorted(applied) == [m.version for m in load_migrations()]


def test_edited_migration_is_refused(empty_db: DatabaseSettings, tmp_path: Path) -> None:
    shutil.copytree(MIGRATIONS_DIR, tmp_path, dirs_exist_ok=True)
    with connect(empty_db) as conn:
        apply_migrations(conn, tmp_path)
    first = sorted(tmp_path.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited\n")
    with connect(empty_db) as conn, pytest.raises(MigrationError, match="was changed after it was applied"):
        apply_migrations(conn, tmp_path)


def test_new_migration_is_applied_and_a_failing_one_rolls_back(empty_db: DatabaseSettings, tmp_path: Path) -> None:
    shutil.copytree(MIGRATIONS_DIR, tmp_path, dirs_exist_ok=True)
    with connect(empty_db) as conn:
        apply_migrations(conn, tmp_path)
    (tmp_path / "9000_add_table.sql").write_text("CREATE TABLE geoetl.example (id int);")
    (tmp_path / "9001_broken.sql").write_text("CREATE TABLE geoetl.other (id int); SELECT no_such_function();")
    with connect(empty_db) as conn, pytest.raises(Exception, match="no_such_function"):
        apply_migrations(conn, tmp_path)
    with connect(empty_db) as conn:
        assert 9000 not in applied_versions(conn), "a failed run must leave nothing half-applied"
        assert conn.execute("SELECT to_regclass('geoetl.example')").fetchone() == (None,)
    (tmp_path / "9001_broken.sql").unlink()
    with connect(empty_db) as conn:
        assert apply_migrations(conn, tmp_path) == [9000]


@pytest.mark.parametrize("name", ["1_short.sql", "0002-dash.sql", "0003_UPPER.sql"])
def test_badly_named_file_is_an_error(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="does not match"):
        load_migrations(tmp_path)


def test_redeploy_recreates_the_orchestration_schema(empty_db: DatabaseSettings) -> None:
    with connect(empty_db) as conn:
        apply_migrations(conn)
        conn.execute("CREATE TABLE geoetl.scratch (id int)")
        conn.commit()
        assert redeploy(conn) == [m.version for m in load_migrations()]
        assert conn.execute("SELECT to_regclass('geoetl.scratch')").fetchone() == (None,)
