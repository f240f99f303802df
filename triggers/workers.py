"""Queue and timer triggers: job messages, task messages, and the janitor.

In Azure these are Service Bus queue triggers (the queue names are app settings
JOBS_QUEUE_NAME and TASKS_QUEUE_NAME, the connection is ServiceBusConnection);
locally the local host feeds the same functions from the configured transport.
A message no worker can use is dead-lettered by the machine with its reason and
the function returns normally; any other exception abandons the message, which
is delivered again.
"""

from __future__ import annotations

import json
import logging

import azure.functions as func

import jobs  # noqa: F401  (importing checks every job and handler: a broken one stops the app at start-up)
from core.janitor import run_janitor
from triggers.runtime import get_machine

log = logging.getLogger("geoetl.workers")

bp = func.Blueprint()  # type: ignore[no-untyped-call]


def _log(kind: str, msg: func.ServiceBusMessage, outcome: str) -> None:
    log.debug(json.dumps({"event": f"{kind}.message", "message_id": msg.message_id, "outcome": outcome}))


@bp.function_name(name="process_job_message")
@bp.service_bus_queue_trigger(arg_name="msg", queue_name="%JOBS_QUEUE_NAME%", connection="ServiceBusConnection")
def process_job_message(msg: func.ServiceBusMessage) -> None:
    """Plan a job's current stage, or finalize the job."""
    outcome = get_machine().handle_job_message(msg.get_body(), msg.message_id or "", msg.delivery_count or 1)
    _log("job", msg, outcome)


@bp.function_name(name="process_task_message")
@bp.service_bus_queue_trigger(arg_name="msg", queue_name="%TASKS_QUEUE_NAME%", connection="ServiceBusConnection")
def process_task_message(msg: func.ServiceBusMessage) -> None:
    """Claim and run one task attempt."""
    outcome = get_machine().handle_task_message(msg.get_body(), msg.message_id or "", msg.delivery_count or 1)
    _log("task", msg, outcome)


@bp.function_name(name="janitor")
@bp.timer_trigger(arg_name="timer", schedule="%JANITOR_SCHEDULE%", run_on_startup=False)
def janitor(timer: func.TimerRequest) -> None:
    """Re-drive what a crash stranded: lost messages, expired leases, stages complete but not advanced."""
    report = run_janitor(get_machine())
    log.info(json.dumps({"event": "janitor.run", "past_due": timer.past_due, **report.as_dict()}))
