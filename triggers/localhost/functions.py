"""What ``function_app.py`` registers, read once through ``app.get_functions()``."""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import azure.functions as func

log = logging.getLogger("geoetl.localhost")
_SETTING_REF = re.compile(r"%([^%]+)%")


@dataclass(frozen=True)
class HttpFunction:
    name: str
    route: str
    methods: tuple[str, ...]  # empty: every method
    auth_level: func.AuthLevel
    arg_name: str
    fn: Callable[..., Any]


@dataclass(frozen=True)
class TimerFunction:
    name: str
    schedule: str
    run_on_startup: bool
    arg_name: str
    fn: Callable[..., Any]


@dataclass(frozen=True)
class QueueFunction:
    name: str
    queue_name: str
    arg_name: str
    fn: Callable[..., Any]


@dataclass
class FunctionTable:
    http: list[HttpFunction] = field(default_factory=list)
    timers: list[TimerFunction] = field(default_factory=list)
    queues: list[QueueFunction] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)


class SettingNotSet(KeyError):
    """A ``%NAME%`` binding expression names an app setting that is not set."""

    def __str__(self) -> str:
        return str(self.args[0])


def resolve_setting_refs(value: str) -> str:
    """Replace ``%NAME%`` with the app setting NAME, as the Functions host does for binding values."""

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in os.environ:
            return os.environ[name]
        default = _setting_defaults().get(name.upper())
        if default is None:
            raise SettingNotSet(f"binding expression %{name}% names an app setting that is not set")
        return default

    return _SETTING_REF.sub(lookup, value)


def _setting_defaults() -> dict[str, str]:
    """Defaults of geoetl's own settings (local.settings.example.json), for settings left unset locally."""
    from core.settings import SETTINGS_CLASSES

    defaults: dict[str, str] = {}
    for cls in SETTINGS_CLASSES:
        for name, info in cls.model_fields.items():
            if isinstance(info.default, str | int | float) and not isinstance(info.default, bool):
                defaults[name.upper()] = str(info.default)
    return defaults


def read_functions(app: func.FunctionApp) -> FunctionTable:
    """Sort the app's functions by trigger type (call once per app object)."""
    table = FunctionTable()
    default_level = getattr(app, "_auth_level", None) or func.AuthLevel.FUNCTION
    for function in app.get_functions():
        trigger: Any = function.get_trigger()
        name, fn = str(function.get_function_name()), function.get_user_function()
        kind = trigger.get_binding_name() if hasattr(trigger, "get_binding_name") else trigger.type
        if kind == "httpTrigger":
            methods = tuple(str(getattr(m, "value", m)).upper() for m in (trigger.methods or []))
            level = trigger.auth_level or default_level
            table.http.append(HttpFunction(name, str(trigger.route or name), methods, level, trigger.name, fn))
        elif kind == "timerTrigger":
            schedule = resolve_setting_refs(trigger.schedule)
            table.timers.append(TimerFunction(name, schedule, bool(trigger.run_on_startup), trigger.name, fn))
        elif kind == "serviceBusTrigger":
            queue = resolve_setting_refs(trigger.queue_name)
            table.queues.append(QueueFunction(name, queue, trigger.name, fn))
        else:
            table.unsupported.append(f"{name} ({kind})")
    return table


def invoke(fn: Callable[..., Any], arg_name: str, value: Any) -> Any:
    """Call a user function synchronously, running it to completion if it is a coroutine."""
    if inspect.iscoroutinefunction(fn):
        return asyncio.run(fn(**{arg_name: value}))
    return fn(**{arg_name: value})
