"""Azurite (the Azure Storage emulator) for local runs and tests, blob service only.

``install()`` puts a pinned Azurite into ``.local/azurite`` with npm (once), and
``Azurite`` runs ``azurite-blob`` on a free loopback port in a throw-away folder.
Azurite 3.35.0 is pinned because later releases need Node 22.

    python -m devstack.azurite install     # install only
    python -m devstack.azurite run         # run in the foreground, print the connection string
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from core.settings import PROJECT_ROOT
from devstack.system import apt_install, can_apt_install

AZURITE_VERSION = "3.35.0"
INSTALL_DIR = PROJECT_ROOT / ".local" / "azurite"
HOST = "127.0.0.1"
ACCOUNT_NAME = "devstoreaccount1"
# The fixed, publicly documented key of Azurite's built-in development account.
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class AzuriteError(RuntimeError):
    """Azurite cannot be installed or started; the message says why."""


def connection_string(port: int, host: str = HOST) -> str:
    """The full connection string of the development account (usable by the SDK and by GDAL)."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint=http://{host}:{port}/{ACCOUNT_NAME};"
    )


def installed_version(install_dir: Path = INSTALL_DIR) -> str | None:
    """The Azurite version installed in ``install_dir``, or None."""
    manifest = install_dir / "node_modules" / "azurite" / "package.json"
    try:
        version = json.loads(manifest.read_text(encoding="utf-8")).get("version")
    except (OSError, ValueError):
        return None
    return version if isinstance(version, str) else None


def blob_script(install_dir: Path = INSTALL_DIR) -> Path:
    """The JavaScript entry point of the blob service inside an installation."""
    return install_dir / "node_modules" / "azurite" / "dist" / "src" / "blob" / "main.js"


def install(install_dir: Path = INSTALL_DIR, version: str = AZURITE_VERSION) -> Path:
    """Install ``azurite@version`` into ``install_dir`` unless it is already there; return the blob script."""
    if installed_version(install_dir) == version and blob_script(install_dir).is_file():
        return blob_script(install_dir)
    npm = shutil.which("npm")
    if npm is None and can_apt_install():
        apt_install("nodejs", "npm")
        npm = shutil.which("npm")
    if npm is None:
        raise AzuriteError(
            "npm was not found on PATH; Azurite needs Node.js 20+ and npm "
            "(Debian/Ubuntu: apt-get install nodejs npm; macOS: brew install node)."
        )
    install_dir.mkdir(parents=True, exist_ok=True)
    with _install_lock(install_dir):
        if installed_version(install_dir) == version and blob_script(install_dir).is_file():
            return blob_script(install_dir)
        manifest = install_dir / "package.json"
        if not manifest.exists():
            manifest.write_text('{"name": "geoetl-azurite", "private": true}\n', encoding="utf-8")
        command = [npm, "install", "--no-audit", "--no-fund", "--save-exact", f"azurite@{version}"]
        done = subprocess.run(command, cwd=install_dir, capture_output=True, text=True, check=False)
        if done.returncode != 0 or installed_version(install_dir) != version:
            tail = _tail(done.stdout + done.stderr)
            raise AzuriteError(f"npm install azurite@{version} into {install_dir} failed:\n{tail}")
    return blob_script(install_dir)


@contextlib.contextmanager
def _install_lock(install_dir: Path) -> Iterator[None]:
    """Serialize concurrent installs (e.g. parallel test sessions) with a file lock."""
    with open(install_dir / ".install.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def free_port(host: str = HOST) -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:]) or "(no output)"


class Azurite:
    """A running ``azurite-blob`` on 127.0.0.1; use as a context manager or call start/stop."""

    def __init__(self, install_dir: Path = INSTALL_DIR, startup_timeout: float = 30.0) -> None:
        self.install_dir = install_dir
        self.startup_timeout = startup_timeout
        self.port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None

    @property
    def connection_string(self) -> str:
        """The connection string of the running emulator."""
        if self.port is None:
            raise AzuriteError("Azurite is not running")
        return connection_string(self.port)

    @property
    def log_path(self) -> Path | None:
        """The file that receives Azurite's output (None before start)."""
        return None if self._workdir is None else self._workdir / "azurite.log"

    def start(self) -> str:
        """Install if needed, start on a free port and wait until it accepts connections."""
        script = install(self.install_dir)
        node = shutil.which("node")
        if node is None:
            raise AzuriteError("node was not found on PATH; Azurite needs Node.js 20+")
        self._workdir = Path(tempfile.mkdtemp(prefix="geoetl-azurite-"))
        last_error: AzuriteError | None = None
        for _ in range(3):  # another process may grab the port between probe and bind
            try:
                self._launch(node, script, free_port())
                return self.connection_string
            except AzuriteError as exc:
                last_error = exc
                self._terminate()
        self.stop()
        assert last_error is not None
        raise last_error

    def _launch(self, node: str, script: Path, port: int) -> None:
        assert self._workdir is not None and self.log_path is not None
        command = [node, str(script), "--blobHost", HOST, "--blobPort", str(port), "--location"]
        command += [str(self._workdir / "data"), "--silent", "--skipApiVersionCheck", "--loose"]
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.port = port
        self._wait_ready(port)

    def _wait_ready(self, port: int) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise AzuriteError(f"Azurite exited with code {self._process.returncode}:\n{self._log_tail()}")
            with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
                return
            time.sleep(0.1)
        raise AzuriteError(
            f"Azurite did not accept connections on {HOST}:{port} within {self.startup_timeout:g} s:\n"
            f"{self._log_tail()}"
        )

    def _log_tail(self) -> str:
        try:
            return _tail(self.log_path.read_text(errors="replace")) if self.log_path else "(no log)"
        except OSError:
            return "(no log)"

    def _terminate(self) -> None:
        process, self._process, self.port = self._process, None, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def stop(self) -> None:
        """Terminate the process group and remove the data folder."""
        self._terminate()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> Azurite:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@contextlib.contextmanager
def running_azurite(install_dir: Path = INSTALL_DIR, startup_timeout: float = 30.0) -> Iterator[str]:
    """Run Azurite for the duration of the block and yield its connection string."""
    with Azurite(install_dir, startup_timeout) as azurite:
        yield azurite.connection_string


def main(argv: list[str] | None = None) -> int:
    """Command line: ``install`` or ``run``."""
    parser = argparse.ArgumentParser(prog="python -m devstack.azurite", description="Azurite blob emulator")
    parser.add_argument("command", choices=["install", "run"])
    args = parser.parse_args(argv)
    try:
        if args.command == "install":
            install()
            print(f"azurite {installed_version()} in {INSTALL_DIR}")
            return 0
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        with Azurite() as azurite:
            print(f"AZURE_STORAGE_CONNECTION_STRING={azurite.connection_string}", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                signal.pause()
    except AzuriteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
