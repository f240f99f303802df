"""PgBouncer in transaction mode in front of the test server, to prove we need no session state."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.settings import DatabaseSettings
from devstack.system import apt_install, can_apt_install, port_in_use
from tests.helpers.scratch import server_scratch_dir
from tests.helpers.servers import free_port

PGBOUNCER = "/usr/sbin/pgbouncer"


def _ensure_installed() -> str:
    found = shutil.which("pgbouncer") or (PGBOUNCER if Path(PGBOUNCER).exists() else None)
    if found:
        return found
    if not can_apt_install():
        reason = "pgbouncer is not installed and cannot be installed here (needs root and apt-get)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must test the PgBouncer path")
        pytest.skip(reason)
    apt_install("pgbouncer")
    return shutil.which("pgbouncer") or PGBOUNCER


def _config(workdir: Path, port: int, target: DatabaseSettings) -> Path:
    (workdir / "users.txt").write_text(f'"{target.pguser}" ""\n')
    ini = workdir / "pgbouncer.ini"
    ini.write_text(
        "[databases]\n"
        f"{target.pgdatabase} = host={target.host} port={target.pgport} dbname={target.pgdatabase}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {workdir / 'users.txt'}\n"
        "pool_mode = transaction\ndefault_pool_size = 4\nmax_client_conn = 100\n"
        "ignore_startup_parameters = extra_float_digits,options,application_name\n"
        f"logfile = {workdir / 'pgbouncer.log'}\n"
    )
    return ini


@pytest.fixture
def pgbouncer(fresh_db: DatabaseSettings) -> Iterator[DatabaseSettings]:
    """Settings that reach ``fresh_db`` through PgBouncer (pool_mode=transaction)."""
    binary = _ensure_installed()
    with server_scratch_dir("pgbouncer-", mode=0o777) as workdir:
        port = free_port()
        ini = _config(workdir, port, fresh_db)
        run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        proc = subprocess.Popen([*run_as, binary, str(ini)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 10
            while not port_in_use(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"pgbouncer did not start: {(workdir / 'pgbouncer.log').read_text()[-2000:]}")
                time.sleep(0.1)
            # as in Azure: PGPORT is PgBouncer's (no prepared statements, no session state), schema changes
            # and LISTEN go to the server itself
            yield DatabaseSettings(
                **{
                    **fresh_db.model_dump(),
                    "pgport": port,
                    "pg_direct_port": fresh_db.pgport,
                    "pg_prepared_statements": "off",
                }
            )
        finally:
            proc.terminate()
            proc.communicate(timeout=10)
