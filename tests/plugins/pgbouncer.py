"""PgBouncer in transaction mode in front of the test server, to prove we need no session state."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.settings import DatabaseSettings
from devstack.postgres import port_in_use, server_dir
from devstack.stack import LOCAL_DIR
from tests.helpers.servers import free_port

PGBOUNCER = "/usr/sbin/pgbouncer"


def _ensure_installed() -> str:
    found = shutil.which("pgbouncer") or (PGBOUNCER if Path(PGBOUNCER).exists() else None)
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("pgbouncer is not installed and cannot be installed here (needs root and apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "pgbouncer"]
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=True)
        subprocess.run(install, env=env, capture_output=True, check=True)
    subprocess.run(["systemctl", "disable", "--now", "pgbouncer"], capture_output=True, check=False)
    return PGBOUNCER


@pytest.fixture
def pgbouncer(fresh_db: DatabaseSettings) -> Iterator[DatabaseSettings]:
    """Settings that reach ``fresh_db`` through PgBouncer (pool_mode=transaction)."""
    binary = _ensure_installed()
    workdir = Path(tempfile.mkdtemp(prefix="pgbouncer-", dir=server_dir(LOCAL_DIR / "test-servers")))
    workdir.chmod(0o777)
    port = free_port()
    (workdir / "users.txt").write_text(f'"{fresh_db.pguser}" ""\n')
    (workdir / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"{fresh_db.pgdatabase} = host={fresh_db.pghost} port={fresh_db.pgport} dbname={fresh_db.pgdatabase}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {workdir / 'users.txt'}\n"
        "pool_mode = transaction\ndefault_pool_size = 4\nmax_client_conn = 100\n"
        "ignore_startup_parameters = extra_float_digits,options,application_name\n"
        f"logfile = {workdir / 'pgbouncer.log'}\n"
    )
    run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    proc = subprocess.Popen(
        [*run_as, binary, str(workdir / "pgbouncer.ini")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 10
    while not port_in_use(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            output = proc.stdout.read().decode() if proc.stdout else ""
            pytest.fail(f"pgbouncer did not start: {output}")
        time.sleep(0.1)
    try:
        yield DatabaseSettings(**{**fresh_db.model_dump(), "pgport": port})
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
