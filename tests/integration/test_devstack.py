"""The embedded stack's PostgreSQL helpers on this machine."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from core.settings import DatabaseSettings
from devstack.errors import StackError
from devstack.postgres import Cluster, find_bindir, server_dir, traversable_by
from devstack.stack import is_embedded
from devstack.system import port_in_use


def test_embedded_means_no_pghost_on_any_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGHOST", raising=False)
    assert is_embedded(DatabaseSettings()) and DatabaseSettings().host == "127.0.0.1"
    assert is_embedded(DatabaseSettings(pgport=54330))
    assert not is_embedded(DatabaseSettings(pghost="127.0.0.1"))
    assert not is_embedded(DatabaseSettings(pghost="db.example", pgport=54329))


def test_server_binaries_are_found() -> None:
    bindir = find_bindir()
    assert (bindir / "initdb").exists() and (bindir / "pg_ctl").exists()


def test_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cluster = Cluster(tmp_path / "pg", port, find_bindir())
        cluster.data_dir.mkdir()
        (cluster.data_dir / "PG_VERSION").write_text("15\n")  # looks initialised, is not running
        with pytest.raises(StackError, match=f"Port {port} .* is taken: another program listens there"):
            cluster.start()


@pytest.mark.skipif(os.geteuid() != 0, reason="the postgres-user fallback applies only when running as root")
def test_unreachable_checkout_falls_back_to_var_tmp_with_a_symlink(tmp_path: Path) -> None:
    hidden = tmp_path / "private"
    hidden.mkdir(mode=0o700)
    hidden.chmod(0o700)
    preferred = hidden / "checkout" / ".local" / "postgres"
    assert not traversable_by("postgres", preferred.parent.parent)
    chosen = server_dir(preferred)
    try:
        assert chosen.parent.parent == Path("/var/tmp")
        assert preferred.is_symlink() and preferred.resolve() == chosen.resolve()
        assert traversable_by("postgres", chosen.parent)
    finally:
        shutil.rmtree(chosen.parent, ignore_errors=True)


def test_port_held_by_another_geoetl_cluster_is_named(throwaway_cluster: Cluster, tmp_path: Path) -> None:
    throwaway_cluster.start()
    second = Cluster(tmp_path / "other", throwaway_cluster.port, throwaway_cluster.bindir)
    second.data_dir.mkdir()
    (second.data_dir / "PG_VERSION").write_text("15\n")
    with pytest.raises(StackError, match=r"another geoetl cluster runs there .* 'make down'") as info:
        second.start()
    assert str(throwaway_cluster.data_dir.resolve()) in str(info.value)
    assert f"PGPORT={throwaway_cluster.port + 1} make run" in str(info.value)


def test_cluster_serves_the_port_it_is_started_with(throwaway_cluster: Cluster) -> None:
    import psycopg

    throwaway_cluster.start()
    with psycopg.connect(host="127.0.0.1", port=throwaway_cluster.port, user="geoetl", dbname="postgres") as conn:
        assert conn.execute("SHOW port").fetchone() == (str(throwaway_cluster.port),)
    throwaway_cluster.stop()
    throwaway_cluster.port += 1
    while port_in_use(throwaway_cluster.port):
        throwaway_cluster.port += 1
    throwaway_cluster.start()
    assert port_in_use(throwaway_cluster.port), "a restart on another port (PGPORT changed) must work"


def test_a_cluster_running_on_another_port_is_named(throwaway_cluster: Cluster) -> None:
    throwaway_cluster.start()
    moved = Cluster(throwaway_cluster.data_dir, throwaway_cluster.port + 1, throwaway_cluster.bindir)
    with pytest.raises(StackError, match=f"runs on port {throwaway_cluster.port}, not {throwaway_cluster.port + 1}"):
        moved.start()
    moved.stop()  # stops it whatever its port
    assert not port_in_use(throwaway_cluster.port)


def test_destroy_stops_and_deletes_the_private_cluster() -> None:
    from core.settings import Settings, StackSettings
    from devstack.stack import destroy, start_postgres
    from tests.helpers.scratch import server_scratch_dir
    from tests.helpers.servers import free_port

    with server_scratch_dir("stack-") as stack_dir:
        settings = Settings(
            database=DatabaseSettings(pgport=free_port()), stack=StackSettings(local_stack_dir=stack_dir)
        )
        assert start_postgres(settings)
        assert destroy(settings), "it names what it removed"
        assert not (stack_dir / "postgres").exists()
        assert not port_in_use(settings.database.pgport)
        with pytest.raises(StackError, match="existing server"):
            destroy(
                Settings(database=DatabaseSettings(pghost="db.example"), stack=StackSettings(local_stack_dir=stack_dir))
            )


@pytest.mark.skipif(os.geteuid() != 0, reason="the postgres-user fallback applies only when running as root")
def test_a_fallback_folder_cleaned_away_is_made_again(tmp_path: Path) -> None:
    hidden = tmp_path / "private"
    hidden.mkdir(mode=0o700)
    preferred = hidden / "checkout" / ".local" / "postgres"
    chosen = server_dir(preferred)
    try:
        shutil.rmtree(chosen)
        assert preferred.is_symlink() and not preferred.exists()
        assert server_dir(preferred) == chosen and chosen.is_dir()
    finally:
        shutil.rmtree(chosen.parent, ignore_errors=True)
