"""Small facts and actions about this machine: Debian packages, TCP ports."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess

from devstack.errors import StackError


def can_apt_install() -> bool:
    return shutil.which("apt-get") is not None and os.geteuid() == 0


def apt_install(*packages: str) -> None:
    """Install Debian packages (root only); ``apt-get update`` first only when the plain install fails."""
    apt = shutil.which("apt-get") or "apt-get"
    print(f"[devstack] installing {' '.join(packages)} with apt-get ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [apt, "install", "-y", "-q", *packages]
    if subprocess.run(install, env=env, check=False, capture_output=True).returncode != 0:
        subprocess.run([apt, "update", "-q"], env=env, check=True, capture_output=True)
        done = subprocess.run(install, env=env, check=False, capture_output=True, text=True)
        if done.returncode != 0:
            raise StackError(
                f"apt-get install {' '.join(packages)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
            )


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0
