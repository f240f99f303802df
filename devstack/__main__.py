"""``python -m devstack up|down|destroy|run|settings-example``: the embedded local stack."""

from __future__ import annotations

import argparse
import importlib
import json
import signal
import sys
from pathlib import Path

from pydantic import ValidationError

from core.errors import GeoetlError
from core.settings import PROJECT_ROOT, SETTINGS_CLASSES, Settings, get_settings
from devstack.errors import StackError
from devstack.stack import StackState, destroy, down, embedded_cluster, up
from devstack.system import port_in_use
from infrastructure.logging import configure_logging
from triggers.localhost.keys import KeyRing
from triggers.localhost.settings_file import apply_local_settings

EXAMPLE_PATH = PROJECT_ROOT / "local.settings.example.json"


def settings_example() -> str:
    """local.settings.example.json: every setting with its default, and a one-line meaning for each."""
    values: dict[str, str] = {"FUNCTIONS_WORKER_RUNTIME": "python", "AzureWebJobsStorage": "UseDevelopmentStorage=true"}
    meanings: dict[str, str] = {
        "FUNCTIONS_WORKER_RUNTIME": "Azure Functions language worker (always python)",
        "AzureWebJobsStorage": "Storage of the Functions runtime itself (timers, keys); the geoetl local host "
        "ignores it, 'func start' needs it (Azurite) for timer triggers",
    }
    for cls in SETTINGS_CLASSES:
        for name, field in cls.model_fields.items():
            key = field.validation_alias if isinstance(field.validation_alias, str) else name.upper()
            default = field.default
            if hasattr(default, "get_secret_value"):
                default = default.get_secret_value()
            if isinstance(default, Path):
                default = (
                    str(default.relative_to(PROJECT_ROOT)) if default.is_relative_to(PROJECT_ROOT) else str(default)
                )
            values[key] = "" if default is None else str(default).lower() if isinstance(default, bool) else str(default)
            meanings[key] = field.description or ""
    document = {"IsEncrypted": False, "Values": values, "Descriptions": meanings}
    return json.dumps(document, indent=2) + "\n"


def _print_ready(settings: Settings, port: int) -> None:
    base = f"http://127.0.0.1:{port}/api"
    keys = KeyRing.from_settings(settings.local_host)
    key = keys.function_keys[0] if keys.function_keys else keys.master_key
    header = f' -H "x-functions-key: {key}"' if key else ""
    print(f"\ngeoetl is serving {base}  (Ctrl-C stops it and the database it started)\n", flush=True)
    print(f"  curl -s{header} {base}/health | python3 -m json.tool", flush=True)
    print(f"  curl -s{header} {base}/openapi.json | python3 -m json.tool | head -40\n", flush=True)


def cmd_run(settings: Settings, port: int | None) -> None:
    port = port or settings.local_host.local_host_port
    if port_in_use(port, settings.local_host.local_host_bind):
        raise StackError(
            f"port {port} is taken by another program (is geoetl already running?); stop it, "
            "or choose another port with LOCAL_HOST_PORT or --port"
        )
    signal.signal(signal.SIGTERM, _interrupt)  # docker stop / kill: stop the database we started, as Ctrl-C does
    state = up(settings)
    print(f"[devstack] stack ready in {state.seconds:.1f} s (pgstac {state.pgstac_version})", flush=True)
    from infrastructure.context import get_app_context
    from triggers.localhost.host import LocalHost

    try:
        app = importlib.import_module("function_app").app
        host = LocalHost(app, settings.local_host, message_source=get_app_context().message_source)
        _print_ready(settings, port)
        host.serve(port=port)
    except KeyboardInterrupt:
        pass
    finally:
        if state.started_postgres:
            print("[devstack] stopping the PostgreSQL it started", flush=True)
            embedded_cluster(settings).stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _describe(state: StackState, settings: Settings) -> str:
    where = f"private cluster 127.0.0.1:{settings.database.pgport}" if state.embedded else "existing server"
    return (
        f"[devstack] up in {state.seconds:.1f} s: {where}, migrations applied {state.migrations_applied}, "
        f"pgstac {state.pgstac_version}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="install, initialise and start what is missing; leave PostgreSQL running")
    sub.add_parser("down", help="stop the private PostgreSQL")
    sub.add_parser("destroy", help="stop the private PostgreSQL and delete its data")
    run = sub.add_parser("run", help="up, then serve the app until Ctrl-C (stops what it started)")
    run.add_argument("--port", type=int)
    sub.add_parser("settings-example", help="rewrite local.settings.example.json from the settings classes")
    args = parser.parse_args(argv)

    try:
        apply_local_settings()
        settings = get_settings()
        configure_logging(settings.app.log_level)
        if args.command == "up":
            print(_describe(up(settings), settings))
        elif args.command == "down":
            down(settings)
        elif args.command == "destroy":
            for path in destroy(settings):
                print(f"[devstack] removed {path}")
        elif args.command == "run":
            cmd_run(settings, args.port)
        elif args.command == "settings-example":
            EXAMPLE_PATH.write_text(settings_example())
            print(f"wrote {EXAMPLE_PATH}")
    except KeyboardInterrupt:
        return 130
    except (StackError, GeoetlError, ValidationError, OSError) as exc:
        print(f"[devstack] error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
