"""The `runyard` console script against a real server (the e2e fixture): output, JSON, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import LiveServer, free_port, start_server, stop_server

CONSOLE_SCRIPT = Path(sys.executable).parent / "runyard"
CLI = [str(CONSOLE_SCRIPT)] if CONSOLE_SCRIPT.exists() else [sys.executable, "-m", "service.cli.main"]
TIMEOUT = 300
SLEEPER = ["--no-tutorial-args", "--source", "testscripts", "--script", "sleeper.py"]


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A real `python -m service` (tests/e2e/conftest.py), stopped after the test."""
    server = start_server(tmp_path)
    yield server
    stop_server(server)


def cli_env(server: LiveServer | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_")}
    env.update({"RUNYARD_URL": server.url if server else "http://127.0.0.1:9", "COLUMNS": "200", **extra})
    return env


def runyard(server: LiveServer | None, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=cli_env(server, **env), capture_output=True, text=True,
                          timeout=TIMEOUT, check=False)


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_submit_follow_prints_the_trainer_output_and_the_accuracy(live_server: LiveServer) -> None:
    result = runyard(live_server, "submit", "--follow")

    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for line in ("Data folder:", "Train a logistic regression model with regularization rate of 0.5",
                 "Training took", "Accuracy is 0.9"):
        assert line in out
    assert out.index("Accuracy is") < out.index("completed")
    assert "accuracy" in out.split("completed", 1)[1]  # the metrics table after the status line


def test_submit_follow_streams_live_and_a_failing_script_exits_non_zero(live_server: LiveServer) -> None:
    process = subprocess.Popen(
        [*CLI, "submit", *SLEEPER, "--arg", "steps=3", "--arg", "step-seconds=1", "--arg", "exit-code=3", "--follow"],
        env=cli_env(live_server), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert process.stdout is not None
    arrived: dict[str, float] = {}
    for line in process.stdout:
        arrived.setdefault(line.split()[0] if line.split() else "", time.monotonic())
        if line.startswith("job "):
            arrived["end"] = time.monotonic()
            final = line
    code = process.wait(TIMEOUT)

    assert code == 1
    assert "failed" in final
    # "step 0" was printed while the script still had two seconds to run.
    assert arrived["end"] - arrived["step"] > 1.5


def test_scripts_get_json_and_registering_twice_makes_versions_1_and_2(live_server: LiveServer) -> None:
    job = as_json(runyard(live_server, "submit", *SLEEPER, "--tag", "team=vision", "--wait", "--json"))["job"]
    assert job["status"] == "completed"
    assert job["tags"] == {"team": "vision"}

    listed = as_json(runyard(live_server, "jobs", "--tag", "team:vision", "--json"))
    assert [j["id"] for j in listed["items"]] == [job["id"]]
    shown = as_json(runyard(live_server, "show", job["id"], "--json"))
    assert shown["job"]["id"] == job["id"]

    for expected in (1, 2):
        version = as_json(runyard(live_server, "register", job["id"], "--name", "sleepy", "--path",
                                  "user_logs/std_log.txt", "--json"))
        assert version["version"] == expected
    versions = as_json(runyard(live_server, "models", "sleepy", "--json"))
    assert [v["version"] for v in versions] == [1, 2]
    table = runyard(live_server, "models")
    assert "sleepy" in table.stdout

    logs = runyard(live_server, "logs", job["id"])
    assert logs.stdout.startswith("sleeper starting")
    assert runyard(live_server, "metrics", job["id"], "--json").returncode == 0


def test_errors_are_one_line_and_exit_4(live_server: LiveServer) -> None:
    missing = runyard(live_server, "show", "no-such-job")
    assert missing.returncode == 4
    assert "Not found (404)" in missing.stderr
    assert "Traceback" not in missing.stderr

    unreachable = runyard(None, "jobs", RUNYARD_URL=f"http://127.0.0.1:{free_port()}")
    assert unreachable.returncode == 4
    assert "cannot reach runyard" in unreachable.stderr


def test_the_api_key_comes_from_the_environment(tmp_path: Path) -> None:
    server = start_server(tmp_path, {"RUNYARD_API_KEYS": "k-123"})
    try:
        refused = runyard(server, "jobs")
        allowed = runyard(server, "jobs", "--json", RUNYARD_API_KEY="k-123")
    finally:
        stop_server(server)

    assert refused.returncode == 4
    assert "401" in refused.stderr
    assert as_json(allowed)["items"] == []


def test_serve_starts_the_service_with_its_flags(tmp_path: Path) -> None:
    port = free_port()
    data_dir = tmp_path / "served"
    command = [*CLI, "serve", "--port", str(port), "--data-dir", str(data_dir), "--log-format", "text"]
    process = subprocess.Popen(command, env=cli_env(None), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        ready = None
        while time.monotonic() < deadline and process.poll() is None and ready is None:
            result = runyard(None, "jobs", "--json", RUNYARD_URL=f"http://127.0.0.1:{port}")
            ready = result if result.returncode == 0 else None
            time.sleep(0.2)
        assert ready is not None, "runyard serve did not answer"
        assert json.loads(ready.stdout)["items"] == []
        assert (data_dir / "runyard.db").is_file()
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    # uvicorn shuts down cleanly, then re-raises the SIGTERM it caught.
    assert process.returncode in (0, -15)
    assert "Application shutdown complete" in output
    assert not output.lstrip().startswith("{")  # --log-format text
