"""devstack.smoke against a tiny fake API served in a thread (health, submit, a job that progresses)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from devstack import smoke

KEY = "s3cret-function-key"
JOB = "job-123"
HEALTHY = {"status": "ok", "components": [{"name": "postgresql", "status": "ok"}]}
FAST = ["--poll-interval", "0.01", "--timeout", "2"]


def _status(state: str, done: int, **extra: Any) -> dict[str, Any]:
    progress = {"total": 3, "queued": 3 - done if state == "queued" else 0, "completed": done, "failed": 0}
    progress |= {"processing": 3 - done if state == "processing" else 0, "percent": round(100 * done / 3)}
    return {"job_id": JOB, "status": state, "stage": 1, "total_stages": 1, "progress": progress} | extra


COMPLETED = _status("completed", 3, result_data={"greetings": ["hello 0", "hello 1", "hello 2"]})
STEPS = [_status("queued", 0), _status("processing", 1), _status("processing", 2), COMPLETED]


@dataclass
class Fake:
    """What the fake API answers; each status poll takes the next of ``statuses`` (the last one repeats)."""

    health: tuple[int, Any] = (200, HEALTHY)
    submit: tuple[int, Any] = (202, {"job_id": JOB, "status": "queued", "status_url": f"/api/jobs/status/{JOB}"})
    statuses: list[dict[str, Any]] = field(default_factory=lambda: list(STEPS))
    keys: list[str | None] = field(default_factory=list)
    submitted: list[Any] = field(default_factory=list)
    url: str = ""

    def answer(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        if method == "GET" and path == "/api/health":
            return self.health
        if method == "POST" and path == "/api/jobs/submit/hello_world":
            self.submitted.append(json.loads(body))
            return self.submit
        if method == "GET" and path == f"/api/jobs/status/{JOB}":
            return 200, self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return 404, {"error": {"code": "not_found", "message": f"no route {path}"}}


def _handler(fake: Fake) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            fake.keys.append(self.headers.get("x-functions-key"))
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, payload = fake.answer(self.command, self.path, body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _serve

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    return Handler


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[Fake]:
    monkeypatch.delenv("GEOETL_URL", raising=False)
    monkeypatch.delenv("GEOETL_KEY", raising=False)
    state = Fake()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/api"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_success_follows_the_job_to_completion(fake: Fake, capsys: pytest.CaptureFixture[str]) -> None:
    assert smoke.main(["--url", fake.url + "/", "--key", KEY, "--n", "3", *FAST]) == 0
    out = capsys.readouterr().out
    assert fake.keys and all(k == KEY for k in fake.keys)
    assert KEY not in out
    assert fake.submitted[0]["n"] == 3 and fake.submitted[0]["message"].startswith("smoke ")
    for seen in ("health: ok", f"job {JOB} queued", "processing", "hello 2", "completed"):
        assert seen in out
    assert out.count("poll:") == 4  # one line per progress change


def test_url_and_key_from_environment(fake: Fake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOETL_URL", fake.url)
    monkeypatch.setenv("GEOETL_KEY", KEY)
    assert smoke.main(FAST) == 0
    assert set(fake.keys) == {KEY}


def test_no_key_sends_no_header(fake: Fake) -> None:
    assert smoke.main(["--url", fake.url, *FAST]) == 0
    assert set(fake.keys) == {None}


def test_unhealthy_names_the_failing_component(fake: Fake, capsys: pytest.CaptureFixture[str]) -> None:
    components = [{"name": "postgresql", "status": "ok"}, {"name": "pgstac", "status": "error", "error": "missing"}]
    fake.health = (503, {"status": "unhealthy", "components": components})
    assert smoke.main(["--url", fake.url, *FAST]) == 1
    out = capsys.readouterr().out
    assert "HTTP 503" in out and "pgstac=error (missing)" in out
    assert "postgresql=" not in out
    assert not fake.submitted


def test_failed_job_prints_its_error(fake: Fake, capsys: pytest.CaptureFixture[str]) -> None:
    fake.statuses = [_status("processing", 1), _status("failed", 1, error_details={"message": "task 2 exploded"})]
    assert smoke.main(["--url", fake.url, *FAST]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and f"job {JOB} failed" in out and "task 2 exploded" in out


def test_http_error_prints_status_and_error_body(fake: Fake, capsys: pytest.CaptureFixture[str]) -> None:
    fake.submit = (400, {"error": {"code": "invalid_parameters", "message": "n must be <= 1000"}})
    assert smoke.main(["--url", fake.url, "--key", KEY, *FAST]) == 1
    out = capsys.readouterr().out
    assert "submit: HTTP 400 invalid_parameters: n must be <= 1000" in out


def test_result_must_be_an_object(fake: Fake, capsys: pytest.CaptureFixture[str]) -> None:
    fake.statuses = [_status("completed", 3, result_data=None)]
    assert smoke.main(["--url", fake.url, *FAST]) == 1
    assert "result_data is not a JSON object" in capsys.readouterr().out


def test_timeout(fake: Fake, capsys: pytest.CaptureFixture[str]) -> None:
    fake.statuses = [_status("processing", 1)]
    assert smoke.main(["--url", fake.url, "--timeout", "0.2", "--poll-interval", "0.02"]) == 1
    assert "not finished after 0.2s" in capsys.readouterr().out


def test_connection_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago, now closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert smoke.main(["--url", f"http://127.0.0.1:{port}/api", *FAST]) == 1
    out = capsys.readouterr().out
    assert "cannot reach" in out and "connection refused" in out
    assert "Traceback" not in out


@pytest.mark.parametrize("argv", [[], ["--url", "localhost:7071/api"], ["--url", "http://x/api", "--n", "0"]])
def test_usage_errors_exit_2(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEOETL_URL", raising=False)
    with pytest.raises(SystemExit) as exc:
        smoke.main(argv)
    assert exc.value.code == 2
