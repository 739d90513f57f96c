"""A real `python -m service` process for end-to-end tests.

`live_server` is a running service on a free loopback port with its own data dir; `server_factory`
starts more, with settings passed as `RUNYARD_*` environment overrides. Both stop their servers
(canceling jobs still active, so no run outlives the test) on teardown.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TEST_SCRIPTS = REPO_ROOT / "tests" / "scripts"
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
ACTIVE = ("queued", "starting", "running", "finalizing", "canceling")


@dataclass
class LiveServer:
    """One service process: where it listens, its data and its log (stderr and stdout)."""

    url: str
    port: int
    data_dir: Path
    log_path: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    api_key: str | None = None
    _log_handle: object = field(default=None, repr=False)

    def log_text(self) -> str:
        """What the process has printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(data_dir: Path, port: int, overrides: Mapping[str, str]) -> dict[str, str]:
    """The process environment: ours without any RUNYARD_* a developer exported, plus the test's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_")}
    env.update({
        "RUNYARD_HOST": "127.0.0.1",
        "RUNYARD_PORT": str(port),
        "RUNYARD_DATA_DIR": str(data_dir),
        "RUNYARD_POLL_INTERVAL_SECONDS": "0.2",
        "RUNYARD_LOCAL_MAX_CONCURRENT": "2",
        "RUNYARD_CANCEL_GRACE_SECONDS": "1",
        "RUNYARD_SOURCES": json.dumps({"testscripts": str(TEST_SCRIPTS)}),
        # Job arguments naming files beside the data dir (a test's model file) are allowed like a dataset's.
        "RUNYARD_DATASET_ROOTS": json.dumps([str(data_dir.parent)]),
        "PYTHONUNBUFFERED": "1",
    })
    env.update(overrides)
    return env


def start_server(root: Path, overrides: Mapping[str, str] | None = None) -> LiveServer:
    """Start `python -m service` and return once /readyz answers 200 (or fail with its log)."""
    for attempt in range(3):
        port = free_port()
        data_dir = root / f"data-{port}"
        log_path = root / f"server-{port}.log"
        env = server_env(data_dir, port, overrides or {})
        handle = open(log_path, "wb")  # noqa: SIM115 - closed in stop_server
        process = subprocess.Popen(
            [sys.executable, "-m", "service"], cwd=REPO_ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT,
        )
        server = LiveServer(url=f"http://127.0.0.1:{port}", port=port, data_dir=data_dir, log_path=log_path,
                            env=env, process=process, _log_handle=handle)
        keys = env.get("RUNYARD_API_KEYS", "")
        server.api_key = keys.split(",")[0].strip() or None
        if _wait_ready(server):
            return server
        stop_server(server)
        if "address already in use" not in server.log_text().lower() or attempt == 2:
            raise AssertionError(f"runyard did not become ready:\n{server.log_text()[-4000:]}")
    raise AssertionError("unreachable")


def _wait_ready(server: LiveServer) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return True
        time.sleep(0.1)
    return False


def stop_server(server: LiveServer) -> None:
    """Cancel the jobs still active (local runs outlive the service), then SIGTERM, then SIGKILL."""
    if server.process.poll() is None:
        _cancel_active(server)
        server.process.terminate()
        try:
            server.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(STOP_TIMEOUT)
    handle = server._log_handle
    if hasattr(handle, "close"):
        handle.close()


def _cancel_active(server: LiveServer) -> None:
    with contextlib.suppress(httpx.HTTPError), httpx.Client(base_url=server.url, headers=server.headers(),
                                                            timeout=5) as http:
        pending: list[str] = []
        for status in ACTIVE:
            page = http.get("/v1/jobs", params={"status": status, "limit": 500})
            if page.status_code == 200:
                pending += [job["id"] for job in page.json()["items"]]
        for job_id in pending:
            http.post(f"/v1/jobs/{job_id}/cancel")
        deadline = time.monotonic() + STOP_TIMEOUT
        while pending and time.monotonic() < deadline:
            pending = [j for j in pending if http.get(f"/v1/jobs/{j}").json().get("status") in ACTIVE]
            time.sleep(0.2)


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Start servers with `factory(RUNYARD_X="...")`; all are stopped after the test."""
    started: list[LiveServer] = []

    def factory(**overrides: str) -> LiveServer:
        server = start_server(tmp_path, overrides)
        started.append(server)
        return server

    yield factory
    for server in started:
        stop_server(server)


@pytest.fixture
def live_server(server_factory: Callable[..., LiveServer]) -> LiveServer:
    """A running service with default test settings."""
    return server_factory()
