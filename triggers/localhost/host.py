"""The local host: serves the functions ``function_app.py`` registers, without Azure Functions."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import signal
import threading
from collections.abc import AsyncIterator
from typing import Any

import azure.functions as func
from starlette.applications import Starlette

from core.errors import InvalidSetting
from core.settings import LocalHostSettings
from infrastructure.queues.base import MessageSource
from triggers.localhost.background import QueueWorker, TimerRunner
from triggers.localhost.functions import FunctionTable, read_functions
from triggers.localhost.http import build_http_app
from triggers.localhost.keys import KeyRing

log = logging.getLogger("geoetl.localhost")


class LocalHost:
    """HTTP routes on an ASGI app, timers and queue workers on threads; one ``get_functions()`` read."""

    def __init__(
        self,
        functions: func.FunctionApp | FunctionTable,
        settings: LocalHostSettings,
        message_source: MessageSource | None = None,
    ) -> None:
        self.settings = settings
        self.table = functions if isinstance(functions, FunctionTable) else read_functions(functions)
        self.keys = KeyRing.from_settings(settings)
        self.message_source = message_source
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        for name in self.table.unsupported:
            log.warning("function %s has a trigger the local host does not serve", name)

    @property
    def workers_per_queue(self) -> int:
        return self.settings.local_host_workers or os.cpu_count() or 1

    @property
    def prefetch(self) -> int:
        """LOCAL_HOST_PREFETCH, capped by what the transport can give back cheaply (Service Bus: 1)."""
        return max(1, min(self.settings.local_host_prefetch, getattr(self.message_source, "max_prefetch", 1)))

    def start_background(self) -> None:
        """Start timer threads and queue workers (idempotent)."""
        if self._threads:
            return
        self._stop.clear()
        if self.settings.local_host_timers:
            self._threads += [TimerRunner(fn, self._stop) for fn in self.table.timers]
        if self.table.queues and self.message_source is None:
            names = ", ".join(f.name for f in self.table.queues)
            log.warning("no queue transport configured: queue-triggered functions (%s) will not run", names)
        elif self.message_source is not None:
            self._threads += [
                QueueWorker(fn, self.message_source, self._stop, i, self.prefetch)
                for fn in self.table.queues
                for i in range(self.workers_per_queue)
            ]
        for thread in self._threads:
            thread.start()

    def stop_background(self, timeout: float = 10.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []

    def asgi_app(self, background: bool = True) -> Starlette:
        """The ASGI app; with ``background`` its lifespan starts and stops timers and workers."""

        @contextlib.asynccontextmanager
        async def lifespan(_: Any) -> AsyncIterator[None]:
            if background:
                self.start_background()
            try:
                yield
            finally:
                if background:
                    self.stop_background()

        return build_http_app(self.table.http, self.keys, lifespan=lifespan)

    def serve(self, bind: str | None = None, port: int | None = None) -> None:
        """Serve HTTP (and background triggers) until interrupted."""
        import uvicorn

        host = bind or self.settings.local_host_bind
        if not self.keys.enforced and not _is_loopback(host):
            raise InvalidSetting(
                f"refusing to serve on {host} without keys: ADMIN endpoints would be open to the network; "
                "set LOCAL_HOST_MASTER_KEY (and LOCAL_HOST_FUNCTION_KEYS) or bind to 127.0.0.1"
            )
        config = uvicorn.Config(
            self.asgi_app(),
            host=host,
            port=port or self.settings.local_host_port,
            access_log=False,
            log_level="warning",
            lifespan="on",
        )
        uvicorn.Server(config).run()

    def run_workers(self) -> None:
        """Worker-only mode: timers and queue workers, no HTTP, until SIGINT or SIGTERM (docker stop)."""
        signal.signal(signal.SIGTERM, lambda *_: self._stop.set())
        self.start_background()
        try:
            while not self._stop.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            self.stop_background()


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
