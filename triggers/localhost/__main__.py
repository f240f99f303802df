"""``python -m triggers.localhost``: serve function_app.py on http://127.0.0.1:7071/api (or workers only)."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from pydantic import ValidationError

from core.errors import GeoetlError
from core.settings import get_settings
from infrastructure.context import get_app_context
from infrastructure.logging import configure_logging
from triggers.localhost.functions import SettingNotSet
from triggers.localhost.host import LocalHost
from triggers.localhost.routes import RouteError
from triggers.localhost.schedule import ScheduleError
from triggers.localhost.settings_file import apply_local_settings

log = logging.getLogger("geoetl.localhost")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m triggers.localhost", description=__doc__)
    parser.add_argument("--bind", help="address to listen on (default LOCAL_HOST_BIND)")
    parser.add_argument("--port", type=int, help="port to listen on (default LOCAL_HOST_PORT)")
    parser.add_argument("--workers-only", action="store_true", help="run queue workers and timers, no HTTP")
    args = parser.parse_args(argv)
    try:
        apply_local_settings()
        settings = get_settings()
        configure_logging(settings.app.log_level)
        app = importlib.import_module("function_app").app
        host = LocalHost(app, settings.local_host, message_source=get_app_context().message_source)
        if args.workers_only:
            log.info(
                "local host: workers only (%d timer(s), %d queue function(s))",
                len(host.table.timers),
                len(host.table.queues),
            )
            host.run_workers()
        else:
            host.serve(args.bind, args.port)
    except KeyboardInterrupt:  # uvicorn re-raises the signal after a graceful shutdown
        log.info("local host stopped")
    except (GeoetlError, ValidationError, RouteError, ScheduleError, SettingNotSet) as exc:
        print(f"local host: {getattr(exc, 'message', None) or exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
