"""Migrations on a real PostgreSQL: idempotent, recorded, concurrent-safe, tamper-evident."""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from core.settings import DatabaseSettings, StackSettings
from devstack.postgres import find_bindir
from infrastructure.db.database import connect
from infrastructure.db.migrations import (
    MIGRATIONS_DIR,
    MigrationError,
    applied_versions,
    apply_migrations,
    load_migrations,
    redeploy,
)


def snapshot(settings: DatabaseSettings) -> str:
    """The whole schema as pg_dump prints it: tables, functions, indexes, constraints, types, comments."""
    pg_dump = find_bindir(StackSettings().pg_bindir) / "pg_dump"
    done = subprocess.run(
        [
            str(pg_dump),
            "--schema-only",
            "--no-owner",
            "-h",
            settings.host,
            "-p",
            str(settings.pgport),
            "-U",
            settings.pguser,
            settings.pgdatabase,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    # newer pg_dump brackets its output with \restrict/\unrestrict and a random key
    return "\n".join(line for line in done.stdout.splitlines() if not line.startswith(("\\restrict", "\\unrestrict")))


def test_applying_twice_changes_nothing(empty_db: DatabaseSettings) -> None:
    with connect(empty_db) as conn:
        first = apply_migrations(conn)
    assert first == [m.version for m in load_migrations()]
    before = snapshot(empty_db)
    with connect(empty_db) as conn:
        assert apply_migrations(conn) == []
        assert applied_versions(conn) == first
    assert snapshot(empty_db) == before
    for extension in ("postgis", "btree_gist", "unaccent"):
        assert f"CREATE EXTENSION IF NOT EXISTS {extension} WITH SCHEMA public" in before


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


def test_a_failing_migration_rolls_back_alone(empty_db: DatabaseSettings, tmp_path: Path) -> None:
    shutil.copytree(MIGRATIONS_DIR, tmp_path, dirs_exist_ok=True)
    with connect(empty_db) as conn:
        apply_migrations(conn, tmp_path)
    (tmp_path / "9000_add_table.sql").write_text("CREATE TABLE geoetl.example (id int);")
    (tmp_path / "9001_broken.sql").write_text("CREATE TABLE geoetl.other (id int); SELECT no_such_function();")
    with connect(empty_db) as conn, pytest.raises(Exception, match="no_such_function"):
        apply_migrations(conn, tmp_path)
    with connect(empty_db) as conn:
        assert 9000 in applied_versions(conn) and 9001 not in applied_versions(conn)
        assert conn.execute("SELECT to_regclass('geoetl.other')").fetchone() == (None,), "nothing half-applied"
    (tmp_path / "9001_broken.sql").write_text("CREATE TABLE geoetl.other (id int);")
    with connect(empty_db) as conn:
        assert apply_migrations(conn, tmp_path) == [9001]


def test_an_enum_value_added_by_one_migration_is_usable_by_the_next(empty_db: DatabaseSettings, tmp_path: Path) -> None:
    shutil.copytree(MIGRATIONS_DIR, tmp_path, dirs_exist_ok=True)
    (tmp_path / "9000_enum.sql").write_text("CREATE TYPE geoetl.color AS ENUM ('red');")
    (tmp_path / "9001_add_value.sql").write_text("ALTER TYPE geoetl.color ADD VALUE 'blue';")
    (tmp_path / "9002_use_value.sql").write_text("CREATE TABLE geoetl.paint (c geoetl.color DEFAULT 'blue');")
    with connect(empty_db) as conn:
        assert apply_migrations(conn, tmp_path)[-3:] == [9000, 9001, 9002]


def test_redeploy_applies_migrations_that_use_a_new_enum_value(empty_db: DatabaseSettings, tmp_path: Path) -> None:
    shutil.copytree(MIGRATIONS_DIR, tmp_path, dirs_exist_ok=True)
    (tmp_path / "9000_enum.sql").write_text("CREATE TYPE geoetl.color AS ENUM ('red');")
    (tmp_path / "9001_add_value.sql").write_text("ALTER TYPE geoetl.color ADD VALUE 'blue';")
    (tmp_path / "9002_use_value.sql").write_text("CREATE TABLE geoetl.paint (c geoetl.color DEFAULT 'blue');")
    with connect(empty_db) as conn:
        apply_migrations(conn, tmp_path)
        assert redeploy(conn, tmp_path)[-3:] == [9000, 9001, 9002]
        leftovers = conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'geoetl_before%'").fetchall()
        assert leftovers == []


def test_a_failing_redeploy_keeps_the_old_schema(empty_db: DatabaseSettings, tmp_path: Path) -> None:
    shutil.copytree(MIGRATIONS_DIR, tmp_path, dirs_exist_ok=True)
    with connect(empty_db) as conn:
        apply_migrations(conn, tmp_path)
        conn.execute("CREATE TABLE geoetl.keep_me (id int)")
        conn.commit()
        (tmp_path / "9001_broken.sql").write_text("SELECT no_such_function();")
        with pytest.raises(Exception, match="no_such_function"):
            redeploy(conn, tmp_path)
        conn.rollback()
        leftovers = conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'geoetl_before%'").fetchall()
        assert leftovers == []
        assert conn.execute("SELECT to_regclass('geoetl.keep_me') IS NOT NULL").fetchone() == (True,)


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
