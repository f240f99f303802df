"""Scratch folders for servers the tests start (reachable by the postgres user when we are root)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.settings import StackSettings
from devstack.postgres import server_dir


@contextmanager
def server_scratch_dir(prefix: str, mode: int = 0o755) -> Iterator[Path]:
    """A new folder under the stack folder's ``test-servers``, removed afterwards whatever happens."""
    base = server_dir(StackSettings().local_stack_dir / "test-servers")
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    try:
        path.chmod(mode)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
