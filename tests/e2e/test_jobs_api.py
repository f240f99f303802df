"""The job endpoints end to end: HTTP in, real queue workers on the local host, PostgreSQL underneath."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest

from core.models import QueueMessage
from infrastructure.context import AppContext
from infrastructure.queues import PostgresQueue
from services.jobs import encode_cursor
from tests.plugins.jobs_api import wait_for_job

HELLO_DEFAULTS = {"message": "hello", "sleep_ms": 0, "fail_indices": [], "fail_attempts": 1, "fail_kind": "retryable"}
UNKNOWN_ID = "0" * 64


def submit(api: str, job_type: str, params: Any, expected: int = 202) -> dict[str, Any]:
    response = httpx.post(f"{api}/jobs/submit/{job_type}", json=params, timeout=10)
    assert response.status_code == expected, response.text
    body: dict[str, Any] = response.json()
    return body


def run(api: str, job_type: str, params: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    return wait_for_job(submit(api, job_type, params)["status_url"], timeout)


def get(api: str, path: str, expected: int = 200, /, **query: Any) -> dict[str, Any]:
    response = httpx.get(f"{api}/{path}", params=query, timeout=10)
    assert response.status_code == expected, response.text
    body: dict[str, Any] = response.json()
    return body


def post(api: str, path: str, expected: int) -> dict[str, Any]:
    response = httpx.post(f"{api}/{path}", timeout=10)
    assert response.status_code == expected, response.text
    body: dict[str, Any] = response.json()
    return body


def events(api: str, job_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page = get(api, f"jobs/{job_id}/events", **({"cursor": cursor} if cursor else {}))
        found += page["events"]
        cursor = page["next_cursor"]
        if cursor is None:
            return found


def names(api: str, job_id: str) -> list[str]:
    return [e["event"] for e in events(api, job_id)]


def test_submit_runs_hello_world_to_completion_with_progress(jobs_api: str) -> None:
    submitted = submit(jobs_api, "hello_world", {"n": 4})
    job_id = submitted["job_id"]
    assert re.fullmatch(r"[0-9a-f]{64}", job_id)
    assert submitted["created"] is True and submitted["job_type"] == "hello_world"
    assert submitted["status"] in ("queued", "processing", "completed")
    assert submitted["status_url"] == f"{jobs_api}/jobs/status/{job_id}"

    status = wait_for_job(submitted["status_url"])
    assert status["status"] == "completed"
    assert (status["stage"], status["total_stages"], status["run"]) == (2, 2, 1)
    assert status["parameters"] == {"n": 4, **HELLO_DEFAULTS}
    progress = status["progress"]
    assert (progress["total"], progress["completed"], progress["percent"]) == (8, 8, 100.0)
    assert progress["queued"] == progress["processing"] == progress["failed"] == progress["cancelled"] == 0
    assert [s["name"] for s in status["stages"]] == ["greet", "reply"]
    for stage in status["stages"]:
        assert stage["status"] == "completed" and stage["parallelism"] == "fan_out"
        assert (stage["tasks"], stage["completed"], stage["percent"]) == (4, 4, 100.0)
        assert stage["planned_at"] and stage["first_started_at"] and stage["completed_at"]
        assert stage["duration_seconds"] is not None and stage["duration_seconds"] >= 0
    assert status["started_at"] and status["completed_at"] and status["duration_seconds"] is not None
    assert status["result_data"]["greetings"] == 4 and status["result_data"]["replies"] == 4
    assert status["result_data"]["retried_greetings"] == 0
    assert status["error_details"] is None


def test_identical_submission_returns_the_same_job(jobs_api: str) -> None:
    first = submit(jobs_api, "hello_world", {"n": 2, "message": "same"})
    again = submit(jobs_api, "hello_world", {"message": "same", "fail_kind": "retryable", "n": 2})
    assert again["job_id"] == first["job_id"]
    assert first["created"] is True and again["created"] is False
    assert [j["job_id"] for j in get(jobs_api, "db/jobs")["jobs"]] == [first["job_id"]]
    assert wait_for_job(again["status_url"])["status"] == "completed"


def test_submission_errors(jobs_api: str) -> None:
    unknown = submit(jobs_api, "no_such_job", {}, expected=404)["error"]
    assert "hello_world" in unknown["message"] and "diamond" in unknown["message"]

    invalid = submit(jobs_api, "hello_world", {"n": 0, "bogus": 1}, expected=400)["error"]
    assert invalid["code"] == "invalid_input"
    assert {f["field"] for f in invalid["details"]["fields"]} == {"n", "bogus"}

    not_json = httpx.post(f"{jobs_api}/jobs/submit/hello_world", content=b"{not json", timeout=10)
    assert not_json.status_code == 400 and not_json.json()["error"]["code"] == "invalid_input"
    array = httpx.post(f"{jobs_api}/jobs/submit/hello_world", json=[1, 2], timeout=10)
    assert array.status_code == 400 and "object" in array.json()["error"]["message"]
    assert get(jobs_api, "db/jobs")["jobs"] == []


def test_a_permanent_error_fails_the_job_at_once(jobs_api: str) -> None:
    status = run(jobs_api, "hello_world", {"n": 3, "fail_indices": [1], "fail_kind": "permanent"})
    assert status["status"] == "failed"
    error = status["error_details"]
    assert error["code"] == "task_failed"
    details = error["details"]
    assert details["attempts"] == 1 and details["task_index"] == 1 and details["stage"] == 1
    assert "failed on attempt 1" in details["error"]["message"]

    failed = get(jobs_api, f"db/tasks/{status['job_id']}", status="failed")["tasks"]
    assert [t["task_id"] for t in failed] == [details["task_id"]]
    assert failed[0]["attempt"] == 1 and failed[0]["error_details"]["code"] == "invalid_input"

    logged = names(jobs_api, status["job_id"])
    assert "task_failed" in logged and "job_failed" in logged and "task_retried" not in logged

    listed = get(jobs_api, "db/jobs", status="failed")["jobs"]
    assert [j["job_id"] for j in listed] == [status["job_id"]] and listed[0]["error"] == error["message"]

    again = submit(jobs_api, "hello_world", {"n": 3, "fail_indices": [1], "fail_kind": "permanent"})
    assert (again["job_id"], again["created"], again["status"]) == (status["job_id"], False, "failed")  # never silently


def test_a_retryable_error_is_retried_and_the_job_completes(jobs_api: str) -> None:
    status = run(jobs_api, "hello_world", {"n": 2, "fail_indices": [0], "fail_attempts": 2})
    assert status["status"] == "completed"
    assert status["result_data"]["retried_greetings"] == 1
    retried = [e for e in events(jobs_api, status["job_id"]) if e["event"] == "task_retried"]
    assert [e["details"]["attempt"] for e in retried] == [1, 2]
    assert all(e["task_id"] == retried[0]["task_id"] for e in retried)
    task = get(jobs_api, f"db/tasks/{status['job_id']}", stage=1, limit=1)["tasks"][0]
    assert task["task_index"] == 0 and task["attempt"] == 3 and task["status"] == "completed"


def test_cancel_and_resubmit(jobs_api: str) -> None:
    done = run(jobs_api, "hello_world", {"n": 1, "sleep_ms": 300})
    post(jobs_api, f"jobs/{done['job_id']}/cancel", 409)
    rerun = post(jobs_api, f"jobs/{done['job_id']}/resubmit", 202)  # a completed job: its next run
    assert rerun["status"] == "queued"
    conflict = post(jobs_api, f"jobs/{done['job_id']}/resubmit", 409)["error"]  # not while it runs
    assert conflict["code"] == "conflict" and "only a job that has ended" in conflict["message"]
    assert wait_for_job(rerun["status_url"])["status"] == "completed"

    slow = submit(jobs_api, "hello_world", {"n": 2, "sleep_ms": 1000})
    job_id = slow["job_id"]
    cancelled = post(jobs_api, f"jobs/{job_id}/cancel", 200)
    assert cancelled["status"] == "cancelled" and cancelled["error_details"]["code"] == "cancelled"
    assert post(jobs_api, f"jobs/{job_id}/cancel", 200)["status"] == "cancelled"  # twice is harmless
    assert wait_for_job(slow["status_url"])["status"] == "cancelled"

    again = post(jobs_api, f"jobs/{job_id}/resubmit", 202)
    assert again["job_id"] == job_id and again["created"] is True and again["status"] == "queued"
    assert again["status_url"] == slow["status_url"]
    status = wait_for_job(again["status_url"])
    assert status["status"] == "completed" and status["run"] == 2
    assert status["progress"]["total"] == 4 and status["result_data"]["replies"] == 2
    assert status["error_details"] is None

    logged = events(jobs_api, job_id)
    sequence = [e["event"] for e in logged]
    assert sequence.index("job_cancelled") < sequence.index("job_resubmitted")
    resubmitted = logged[sequence.index("job_resubmitted")]
    assert resubmitted["run"] == 2 and resubmitted["details"]["previous_status"] == "cancelled"
    assert logged[-1]["event"] == "job_completed" and logged[-1]["run"] == 2


def test_unknown_job_ids_are_404(jobs_api: str) -> None:
    assert get(jobs_api, f"jobs/status/{UNKNOWN_ID}", 404)["error"]["code"] == "not_found"
    assert post(jobs_api, f"jobs/{UNKNOWN_ID}/resubmit", 404)["error"]["code"] == "not_found"
    assert post(jobs_api, f"jobs/{UNKNOWN_ID}/cancel", 404)["error"]["code"] == "not_found"
    assert get(jobs_api, f"jobs/{UNKNOWN_ID}/events", 404)["error"]["code"] == "not_found"
    assert get(jobs_api, f"db/tasks/{UNKNOWN_ID}", 404)["error"]["code"] == "not_found"


def test_job_listing_pages_and_filters(jobs_api: str) -> None:
    submitted = [submit(jobs_api, "hello_world", {"n": 1, "message": f"page {i}"})["job_id"] for i in range(4)]
    submitted.append(submit(jobs_api, "diamond", {"parts": 2})["job_id"])
    for job_id in submitted:
        wait_for_job(f"{jobs_api}/jobs/status/{job_id}")

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = get(jobs_api, "db/jobs", limit=2, **({"cursor": cursor} if cursor else {}))
        assert len(page["jobs"]) <= 2
        seen += [j["job_id"] for j in page["jobs"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == submitted[::-1] and pages == 3

    assert {j["job_id"] for j in get(jobs_api, "db/jobs", status="completed")["jobs"]} == set(submitted)
    assert get(jobs_api, "db/jobs", status="failed")["jobs"] == []
    assert [j["job_id"] for j in get(jobs_api, "db/jobs", job_type="diamond")["jobs"]] == [submitted[-1]]
    assert len(get(jobs_api, "db/jobs", since_hours=1)["jobs"]) == 5
    time.sleep(0.01)
    assert get(jobs_api, "db/jobs", since_hours=1e-6)["jobs"] == []  # 3.6 ms

    assert get(jobs_api, "db/jobs", 400, cursor="not-a-cursor")["error"]["code"] == "invalid_input"
    assert get(jobs_api, "db/jobs", 400, status="done")["error"]["code"] == "invalid_input"
    assert get(jobs_api, "db/jobs", 400, limit=0)["error"]["code"] == "invalid_input"


def test_diamond_completes_and_its_tasks_page_by_stage(jobs_api: str) -> None:
    status = run(jobs_api, "diamond", {"parts": 30, "page_size": 4})
    assert status["status"] == "completed"
    assert status["result_data"] == {"parts": 30, "sum_of_squares": 9455, "squares": 30}
    assert [(s["parallelism"], s["tasks"]) for s in status["stages"]] == [
        ("single", 1),
        ("fan_out", 30),
        ("fan_in", 1),
        ("single", 1),
    ]
    job_id = status["job_id"]

    indices: list[int] = []
    cursor: str | None = None
    while True:
        page = get(jobs_api, f"db/tasks/{job_id}", stage=2, limit=7, **({"cursor": cursor} if cursor else {}))
        assert page["job_id"] == job_id and len(page["tasks"]) <= 7
        assert all(t["stage"] == 2 and t["status"] == "completed" for t in page["tasks"])
        indices += [t["task_index"] for t in page["tasks"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert indices == list(range(30))
    everything = get(jobs_api, f"db/tasks/{job_id}")
    assert len(everything["tasks"]) == 33 and everything["next_cursor"] is None
    assert [t["stage"] for t in everything["tasks"]] == sorted(t["stage"] for t in everything["tasks"])
    assert get(jobs_api, f"db/tasks/{job_id}", 400, cursor="%%%")["error"]["code"] == "invalid_input"
    assert get(jobs_api, f"db/tasks/{job_id}", 400, stage=0)["error"]["code"] == "invalid_input"


def test_job_types_lists_both_jobs_with_parameter_schemas(jobs_api: str) -> None:
    types = {t["job_type"]: t for t in get(jobs_api, "jobs/types")["job_types"]}
    assert {"hello_world", "diamond"} <= set(types)
    hello = types["hello_world"]
    assert hello["parameters"]["type"] == "object" and "n" in hello["parameters"]["properties"]
    assert [s["task_type"] for s in hello["stages"]] == ["hello_world.greet", "hello_world.reply"]
    assert hello["description"]
    diamond = types["diamond"]
    assert set(diamond["parameters"]["properties"]) == {"parts", "page_size"}
    assert [s["parallelism"] for s in diamond["stages"]] == ["single", "fan_out", "fan_in", "single"]


def test_a_garbage_task_message_is_dead_lettered_and_workers_go_on(jobs_api: str, jobs_context: AppContext) -> None:
    tasks_queue = jobs_context.settings.queue.tasks_queue_name
    source = jobs_context.message_source
    assert isinstance(source, PostgresQueue)
    source.send(tasks_queue, [QueueMessage(message_id="junk", body="not json")])

    deadline = time.monotonic() + 15
    dead: list[dict[str, Any]] = []
    while not dead and time.monotonic() < deadline:
        dead = get(jobs_api, "db/dead-letters")["dead_letters"]
        time.sleep(0.05)
    assert len(dead) == 1, dead
    letter = dead[0]
    assert (letter["queue_name"], letter["message_id"], letter["body"]) == (tasks_queue, "junk", "not json")
    assert letter["reason"] and letter["delivery_count"] == 1
    assert get(jobs_api, "db/dead-letters", queue=tasks_queue)["dead_letters"] == dead
    assert get(jobs_api, "db/dead-letters", queue="other")["dead_letters"] == []

    assert run(jobs_api, "hello_world", {"n": 2})["status"] == "completed"


@pytest.mark.parametrize(
    ("path", "cursor"),
    [
        ("db/jobs", encode_cursor(["not a time", "x"])),
        ("db/jobs", encode_cursor([1, None])),
        ("db/jobs", encode_cursor(["2026-01-01T00:00:00", "x"])),
        ("db/tasks/{job_id}", encode_cursor(["x", "y"])),
        ("db/tasks/{job_id}", encode_cursor([10**30, 1])),
        ("jobs/{job_id}/events", encode_cursor(["x"])),
        ("jobs/{job_id}/events", encode_cursor([True])),
    ],
    ids=["jobs", "jobs-null", "jobs-naive", "tasks", "tasks-huge", "events", "events-bool"],
)
def test_a_well_formed_cursor_with_wrong_values_is_400(jobs_api: str, path: str, cursor: str) -> None:
    job_id = submit(jobs_api, "hello_world", {"n": 1})["job_id"]
    response = httpx.get(f"{jobs_api}/{path.format(job_id=job_id)}", params={"cursor": cursor}, timeout=10)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["details"].get("field") == "cursor"
