"""The private PostgreSQL cluster of the embedded stack (``.local/postgres``).

Finds the server binaries, installs PostGIS with apt when it is missing and apt
can be used, runs ``initdb`` (as the ``postgres`` user when we are root, since
initdb refuses root), and starts/stops the server on 127.0.0.1 only, with
trust authentication on loopback.
"""

from __future__ import annotations

import glob
import hashlib
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from devstack.errors import StackError
from devstack.system import apt_install, can_apt_install, port_in_use

SUPERUSER = "geoetl"
SERVER_CONF = {
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",
    "max_connections": "200",
    "shared_buffers": "256MB",
    "synchronous_commit": "off",
    "log_min_messages": "warning",
    "log_min_duration_statement": "-1",
}


def find_bindir(preferred: Path | None = None) -> Path:
    """The directory holding initdb and pg_ctl (``preferred``, i.e. PG_BINDIR, wins)."""
    candidates: list[str] = [str(preferred)] if preferred else []
    versions = [p for p in glob.glob("/usr/lib/postgresql/*/bin") if Path(p).parent.name.isdigit()]
    candidates.extend(sorted(versions, key=lambda p: int(Path(p).parent.name), reverse=True))
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(out.stdout.strip())
    if shutil.which("initdb"):
        candidates.append(str(Path(shutil.which("initdb") or "").parent))
    for cand in candidates:
        if cand and (Path(cand) / "initdb").exists() and (Path(cand) / "pg_ctl").exists():
            return Path(cand)
    raise StackError(
        "PostgreSQL server binaries (initdb, pg_ctl) were not found. Install PostgreSQL 15+ with PostGIS "
        "(Debian/Ubuntu: apt-get install postgresql postgresql-15-postgis-3; macOS: brew install postgresql@15 "
        "postgis), or set PG_BINDIR, or point PGHOST/PGPORT/PGUSER/PGDATABASE at an existing server."
    )


def ensure_server(preferred: Path | None = None) -> Path:
    """The server binaries; installed with apt when missing and we are root on a Debian-like system."""
    try:
        return find_bindir(preferred)
    except StackError:
        if not can_apt_install():
            raise
    apt_install("postgresql", "postgresql-contrib")
    return find_bindir(preferred)


def server_major(bindir: Path) -> int:
    out = subprocess.run([str(bindir / "pg_ctl"), "--version"], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1].split(".")[0])


def sharedir(bindir: Path) -> Path:
    pg_config = bindir / "pg_config"
    if pg_config.exists():
        out = subprocess.run([str(pg_config), "--sharedir"], capture_output=True, text=True, check=True)
        return Path(out.stdout.strip())
    return Path(f"/usr/share/postgresql/{server_major(bindir)}")


def ensure_postgis(bindir: Path) -> None:
    """Install PostGIS for this server with apt when it is missing and apt is usable."""
    control = sharedir(bindir) / "extension" / "postgis.control"
    if control.exists():
        return
    package = f"postgresql-{server_major(bindir)}-postgis-3"
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        how = (
            f"sudo apt-get install -y {package}" if apt else "brew install postgis (macOS) or your OS's PostGIS package"
        )
        raise StackError(f"PostGIS is not installed for PostgreSQL at {bindir}. Install it: {how}")
    apt_install(package)
    if not control.exists():
        raise StackError(f"{package} was installed but {control} is still missing")


@dataclass
class Cluster:
    """A PostgreSQL cluster in ``data_dir`` serving 127.0.0.1:``port``."""

    data_dir: Path
    port: int
    bindir: Path

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"

    @property
    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def _run_as(self) -> list[str]:
        """Prefix that runs a server command as the data directory's owner (never as root)."""
        if os.geteuid() != 0:
            return []
        owner = self.data_dir.stat().st_uid if self.data_dir.exists() else 0
        if owner != 0:
            return ["runuser", "-u", pwd.getpwuid(owner).pw_name, "--"]
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise StackError(
                "as root, the server must run as the 'postgres' user, which does not exist: install PostgreSQL "
                "from your OS packages (they create it), or run as a normal user"
            ) from None
        return ["runuser", "-u", "postgres", "--"]

    def _pg(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [*self._run_as(), *args]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if check and result.returncode != 0:
            raise StackError(f"{' '.join(args[:2])} failed:\n{result.stdout}{result.stderr}{self._log_tail()}")
        return result

    def _log_tail(self, lines: int = 20) -> str:
        if not self.log_file.exists():
            return ""
        tail = self.log_file.read_text(errors="replace").splitlines()[-lines:]
        return f"\n--- {self.log_file} (last lines) ---\n" + "\n".join(tail)

    def init(self) -> None:
        """Run initdb once, with trust on loopback and the project's server settings."""
        if self.initialized:
            return
        print(f"[devstack] initialising a new PostgreSQL cluster in {self.data_dir}", flush=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            _check_traversable_by("postgres", self.data_dir)
            shutil.chown(self.data_dir, "postgres", "postgres")
        self.data_dir.chmod(0o700)
        self._pg(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-instructions",
        )
        conf = "\n".join(f"{k} = {v}" for k, v in SERVER_CONF.items())
        with (self.data_dir / "postgresql.conf").open("a") as fh:
            fh.write(f"\n# geoetl local stack (the port is given at start: -p)\n{conf}\n")

    def is_running(self) -> bool:
        """Whether this cluster runs; running on another port than ``port`` is an error that says so."""
        if not self.initialized:
            return False
        if self._pg(str(self.bindir / "pg_ctl"), "status", "-D", str(self.data_dir), check=False).returncode != 0:
            return False
        running_port = self.running_port()
        if running_port is not None and running_port != self.port:
            raise StackError(
                f"the cluster in {self.data_dir} runs on port {running_port}, not {self.port}: "
                f"stop it first ('make down' with PGPORT={running_port}), or use PGPORT={running_port}"
            )
        return True

    def running_port(self) -> int | None:
        """The port in postmaster.pid (its 4th line), when the server runs."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
            return int(lines[3])
        except (OSError, IndexError, ValueError):
            return None

    def start(self) -> bool:
        """Start the server; returns False when it was already running."""
        if self.is_running():
            return False
        if port_in_use(self.port):
            raise StackError(f"Port {self.port} on 127.0.0.1 is taken: {_who_listens(self.port)}")
        pg_ctl = str(self.bindir / "pg_ctl")
        self._pg(pg_ctl, "start", "-D", str(self.data_dir), "-l", str(self.log_file), "-o", f"-p {self.port}", "-w")
        return True

    def stop(self) -> None:
        """Stop the server if it runs (on whatever port)."""
        status = self._pg(str(self.bindir / "pg_ctl"), "status", "-D", str(self.data_dir), check=False)
        if self.initialized and status.returncode == 0:
            self._pg(str(self.bindir / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "60")


def _who_listens(port: int) -> str:
    """Say what holds the port and how to get past it (another geoetl cluster is the usual case)."""
    import psycopg

    advice = f"stop it, or give this checkout's cluster another port: PGPORT={port + 1} make run"
    try:
        with psycopg.connect(host="127.0.0.1", port=port, user=SUPERUSER, dbname="postgres", connect_timeout=2) as conn:
            row = conn.execute("SELECT current_setting('data_directory')").fetchone()
    except Exception:
        return f"another program listens there; {advice}"
    where = row[0] if row else "?"
    return f"another geoetl cluster runs there (data in {where}); run 'make down' in that checkout, or {advice}"


def traversable_by(user: str, path: Path) -> bool:
    """Whether ``user`` can reach ``path`` (every parent folder lets it through)."""
    probe = subprocess.run(["runuser", "-u", user, "--", "test", "-x", str(path)], check=False, capture_output=True)
    return probe.returncode == 0


def fallback_dir(preferred: Path) -> Path:
    """The /var/tmp folder used for ``preferred`` when the postgres user cannot reach it."""
    digest = hashlib.sha256(str(preferred.parent.resolve()).encode()).hexdigest()[:12]
    return Path("/var/tmp") / f"geoetl-{digest}" / preferred.name


def server_dir(preferred: Path) -> Path:
    """Where server files go: ``preferred``, unless we are root and the postgres user cannot reach it.

    Then a folder under /var/tmp is used, and ``preferred`` becomes a symlink to it, so the
    documented path still leads to the data.
    """
    preferred.parent.mkdir(parents=True, exist_ok=True)
    if preferred.is_symlink():
        target = preferred.resolve()
        target.mkdir(parents=True, exist_ok=True)  # the /var/tmp folder may have been cleaned away
        return target
    if os.geteuid() != 0 or traversable_by("postgres", preferred.parent):
        preferred.mkdir(exist_ok=True)
        return preferred.resolve()
    fallback = fallback_dir(preferred)
    fallback.mkdir(parents=True, exist_ok=True)
    fallback.parent.chmod(0o755)
    if not preferred.exists():
        preferred.symlink_to(fallback)
    print(f"[devstack] the postgres user cannot reach {preferred.parent}; using {fallback}", flush=True)
    return fallback


def _check_traversable_by(user: str, path: Path) -> None:
    """initdb runs as ``user``: every parent folder of the data directory must let it through."""
    if not traversable_by(user, path.parent):
        raise StackError(
            f"The '{user}' user cannot reach {path.parent} (a parent folder lacks the execute bit for others). "
            f"Run 'chmod o+x' on the parent folders of the checkout, or run as a non-root user."
        )
