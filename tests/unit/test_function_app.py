"""function_app.py as the Azure Functions Python worker will see it."""

from __future__ import annotations

import inspect
import typing

import azure.functions as func

from triggers.http.api import REGISTRY
from triggers.localhost.functions import FunctionTable


def test_every_function_loads_as_the_worker_checks_it(app_functions: FunctionTable) -> None:
    """The worker resolves annotations with typing.get_type_hints and matches them to the bindings."""
    for function in app_functions.http:
        hints = typing.get_type_hints(function.fn)
        assert function.arg_name in inspect.signature(function.fn).parameters, function.name
        assert hints[function.arg_name] is func.HttpRequest, function.name
        assert hints["return"] is func.HttpResponse, function.name


def test_function_names_are_unique_and_named_after_the_handler(app_functions: FunctionTable) -> None:
    names = [f.name for f in app_functions.http]
    assert len(names) == len(set(names))
    assert all(f.fn.__name__ == f.name for f in app_functions.http)


def test_auth_levels(app_functions: FunctionTable) -> None:
    levels = {f.route: f.auth_level for f in app_functions.http}
    anonymous = {route for route, level in levels.items() if level == func.AuthLevel.ANONYMOUS}
    assert anonymous == {"ping", "{*path}"}
    admin = {route for route, level in levels.items() if level == func.AuthLevel.ADMIN}
    assert admin == {"db/migrate", "db/schema/redeploy"}  # what changes the schema; db/jobs etc. only read
    assert levels["health"] == func.AuthLevel.FUNCTION


def test_queue_and_timer_triggers(app_functions: FunctionTable) -> None:
    queues = {f.name: f.queue_name for f in app_functions.queues}
    assert queues == {"process_job_message": "geospatial-jobs", "process_task_message": "geospatial-tasks"}
    assert [(t.name, t.schedule) for t in app_functions.timers] == [("janitor", "0 */1 * * * *")]


def test_every_route_but_the_catch_all_is_documented(app_functions: FunctionTable) -> None:
    documented = {spec.route for spec in REGISTRY.specs}
    served = {f.route for f in app_functions.http if f.route != "{*path}"}
    assert served == documented
    assert not app_functions.unsupported
