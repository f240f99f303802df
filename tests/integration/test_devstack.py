"""The embedded stack's PostgreSQL helpers on this machine."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from core.settings import DatabaseSettings
from devstack.postgres import Cluster, StackError, find_bindir, server_dir, traversable_by
from devstack.stack import EMBEDDED_PORT, is_embedded


def test_embedded_means_the_private_port_on_loopback() -> None:
    assert is_embedded(DatabaseSettings(pghost="127.0.0.1", pgport=EMBEDDED_PORT))
    assert is_embedded(DatabaseSettings(pghost="localhost", pgport=EMBEDDED_PORT))
    assert not is_embedded(DatabaseSettings(pghost="127.0.0.1", pgport=5432))
    assert not is_embedded(DatabaseSettings(pghost="db.example", pgport=EMBEDDED_PORT))


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
        with pytest.raises(StackError, match=f"Port {port} .* is taken by another program"):
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
