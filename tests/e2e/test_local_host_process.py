"""The local host as a real process: ``python -m triggers.localhost`` and ``python -m devstack run``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.settings import PROJECT_ROOT, DatabaseSettings
from tests.helpers.servers import free_port

MASTER, FUNCTION_KEY = "e2e-master-key", "e2e-function-key"


def wait_until_serving(url: str, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer in {timeout} s")


def stop(proc: subprocess.Popen[str], how: signal.Signals = signal.SIGINT) -> tuple[str, str]:
    proc.send_signal(how)
    try:
        return proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()


@pytest.fixture
def host_process(fresh_db: DatabaseSettings, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    env = {
        **os.environ,
        "PGHOST": fresh_db.host,
        "PGPORT": str(fresh_db.pgport),
        "PGDATABASE": fresh_db.pgdatabase,
        "PGUSER": fresh_db.pguser,
        "STORAGE_BACKEND": "local",
        "STORAGE_LOCAL_ROOT": str(tmp_path),
        "LOCAL_HOST_MASTER_KEY": MASTER,
        "LOCAL_HOST_FUNCTION_KEYS": FUNCTION_KEY,
    }
    for container in ("bronze", "silver", "gold"):
        (tmp_path / container).mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "triggers.localhost", "--port", str(port)],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}/api"
    try:
        wait_until_serving(f"{base}/nothing-here", proc)
        yield base, proc
    finally:
        if proc.poll() is None:
            stop(proc)


def test_process_serves_health_with_keys_and_logs_json_lines(host_process: tuple[str, subprocess.Popen[str]]) -> None:
    base, proc = host_process
    assert httpx.get(f"{base}/health").status_code == 401
    healthy = httpx.get(
        f"{base}/health", headers={"x-functions-key": FUNCTION_KEY, "x-request-id": "req-e2e-1"}, timeout=30
    )
    assert healthy.status_code == 200, healthy.text
    assert healthy.json()["status"] == "healthy"
    assert httpx.post(f"{base}/db/migrate?code={FUNCTION_KEY}").status_code == 401
    assert httpx.post(f"{base}/db/migrate?code={MASTER}", timeout=60).status_code == 200
    _, stderr = stop(proc)
    assert proc.returncode == 0, stderr
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    requests = [entry for entry in lines if entry.get("event") == "http.request"]
    health_line = next(entry for entry in requests if entry["request_id"] == "req-e2e-1")
    assert health_line["method"] == "GET" and health_line["route"] == "health" and health_line["status"] == 200
    assert health_line["path"] == "/api/health" and health_line["duration_ms"] > 0
    assert MASTER not in stderr and FUNCTION_KEY not in stderr


def run_hello_world(base: str, headers: dict[str, str], message: str) -> dict[str, object]:
    """Submit hello_world and poll until it ends: the process's queue workers must be running."""
    submitted = httpx.post(f"{base}/jobs/submit/hello_world", json={"n": 3, "message": message}, headers=headers)
    assert submitted.status_code == 202, submitted.text
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = httpx.get(submitted.json()["status_url"], headers=headers, timeout=10).json()
        if status["status"] in ("completed", "failed", "cancelled"):
            return dict(status)
        time.sleep(0.2)
    raise AssertionError(f"job still {status['status']} after 60 s")


def test_process_runs_jobs_on_its_queue_workers(host_process: tuple[str, subprocess.Popen[str]]) -> None:
    base, _ = host_process
    status = run_hello_world(base, {"x-functions-key": FUNCTION_KEY}, "from the process")
    assert status["status"] == "completed" and status["result_data"]["replies"] == 3  # type: ignore[index]


def test_devstack_run_prints_the_url_and_serves_health(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstack", "run", "--port", str(port)],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "STORAGE_LOCAL_ROOT": str(tmp_path)},
    )
    try:
        wait_until_serving(f"http://127.0.0.1:{port}/api/health", proc)
        response = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=30)
        assert response.status_code == 200, response.text
        status = run_hello_world(f"http://127.0.0.1:{port}/api", {}, f"make run {time.time_ns()}")
        assert status["status"] == "completed"
    finally:
        stdout, _ = stop(proc)
    assert f"http://127.0.0.1:{port}/api" in stdout
    assert stdout.count("curl ") == 2


def test_devstack_run_on_a_busy_port_says_so() -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "devstack", "run", "--port", str(port)],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2
    assert f"port {port} is taken by another program" in done.stderr


def test_make_run_reuses_its_stack_and_ctrl_c_stops_the_database_it_started(tmp_path: Path) -> None:
    """`python -m devstack run` (what `make run` runs) with a stack of its own: first run and Ctrl-C,
    second run and SIGTERM; each stops the database it started."""
    from devstack.system import port_in_use
    from tests.helpers.scratch import server_scratch_dir

    with server_scratch_dir("stack-") as stack_dir:
        pg_port, api_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "LOCAL_"))}
        env |= {"PGPORT": str(pg_port), "LOCAL_STACK_DIR": str(stack_dir), "STORAGE_LOCAL_ROOT": str(tmp_path)}
        outputs = []
        for how in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C, then docker stop / kill
            proc = subprocess.Popen(
                [sys.executable, "-m", "devstack", "run", "--port", str(api_port)],
                cwd=PROJECT_ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                wait_until_serving(f"http://127.0.0.1:{api_port}/api/ping", proc, timeout=120)
                health = httpx.get(f"http://127.0.0.1:{api_port}/api/health", timeout=30)
                assert health.status_code == 200, health.text
            finally:
                stdout, stderr = stop(proc, how)
            assert proc.returncode == 0, stderr
            assert "stopping the PostgreSQL it started" in stdout
            assert not port_in_use(pg_port), "Ctrl-C must stop the database that run started"
            outputs.append(stdout)
        version_file = stack_dir / "postgres" / "PG_VERSION"
        assert version_file.exists(), "the cluster lives in LOCAL_STACK_DIR/postgres"
        assert all(f"http://127.0.0.1:{api_port}/api" in out for out in outputs)
        assert "initialising a new PostgreSQL cluster" in outputs[0]
        assert "initialising" not in outputs[1], "a second run reuses what the first one built"
