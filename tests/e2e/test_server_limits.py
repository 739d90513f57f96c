"""Server limits (issue 19, problem 6) on a real uvicorn process with a lowered file-descriptor limit:
idle and slow connections are closed, connections past the cap get 503, log followers are capped."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import REPO_ROOT, LiveServer, _wait_ready, free_port, server_env, stop_server

NOFILE = 512  # the server's soft RLIMIT_NOFILE; max_connections defaults to half of it


def start_limited(root: Path, nofile: int, **overrides: str) -> LiveServer:
    """`python -m service` under `ulimit -n nofile`."""
    port = free_port()
    data_dir, log_path = root / f"data-{port}", root / f"server-{port}.log"
    env = server_env(data_dir, port, overrides)
    handle = open(log_path, "wb")  # noqa: SIM115 - closed by stop_server
    code = (f"import resource, runpy; resource.setrlimit(resource.RLIMIT_NOFILE, ({nofile}, {nofile})); "
            "runpy.run_module('service', run_name='__main__')")
    process = subprocess.Popen([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, stdout=handle,
                               stderr=subprocess.STDOUT)
    server = LiveServer(url=f"http://127.0.0.1:{port}", port=port, data_dir=data_dir, log_path=log_path,
                        env=env, process=process, _log_handle=handle)
    if not (_wait_ready(server) or _wait_ready(server)):  # a loaded machine may need more than one wait
        stop_server(server)
        raise AssertionError(f"runyard did not become ready:\n{server.log_text()[-4000:]}")
    return server


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_limited(tmp_path_factory.mktemp("limited"), NOFILE,
                           RUNYARD_HEADER_TIMEOUT_SECONDS="1", RUNYARD_BODY_TIMEOUT_SECONDS="1",
                           RUNYARD_MAX_LOG_FOLLOWERS="5", RUNYARD_MAX_LOG_FOLLOWERS_PER_JOB="3")
    yield server
    stop_server(server)


def _closed_by_server(sock: socket.socket) -> bytes:
    """Everything the server sent before closing `sock` (fails if it keeps it open 5 s)."""
    sock.settimeout(5)
    received = b""
    while chunk := sock.recv(4096):
        received += chunk
    return received


def test_connections_past_the_cap_get_503_and_idle_ones_are_closed(limited: LiveServer) -> None:
    sockets = [socket.create_connection(("127.0.0.1", limited.port)) for _ in range(NOFILE - 100)]
    try:
        answers = [_closed_by_server(sock) for sock in sockets]  # idle: closed after the header timeout
    finally:
        for sock in sockets:
            sock.close()
    refused = [a for a in answers if a.startswith(b"HTTP/1.1 503")]
    assert len(refused) >= NOFILE - 100 - NOFILE // 2
    assert all(a in (b"",) or a.startswith(b"HTTP/1.1 503") for a in answers)
    assert httpx.get(f"{limited.url}/healthz").status_code == 200
    assert httpx.get(f"{limited.url}/v1/jobs").status_code == 200
    log = limited.log_text()
    assert "Too many open files" not in log
    assert "unable to open database file" not in log


def test_a_body_sent_too_slowly_is_cut_off(limited: LiveServer) -> None:
    sock = socket.create_connection(("127.0.0.1", limited.port))
    sock.sendall(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100\r\n\r\n{\"experi")
    assert b"201" not in _closed_by_server(sock)
    sock.close()


def test_log_followers_are_capped_per_job_and_overall(limited: LiveServer) -> None:
    job = {"experiment": "tests", "source": "testscripts", "script": "sleeper.py", "arguments": ["--seconds", 30]}
    with httpx.Client(base_url=limited.url, timeout=10) as http:
        first, second = (http.post("/v1/jobs", json=job).json()["id"] for _ in range(2))
        streams = []
        try:
            for job_id, count in ((first, 3), (second, 2)):
                for _ in range(count):
                    stream = http.stream("GET", f"/v1/jobs/{job_id}/logs", params={"follow": "true"})
                    response = stream.__enter__()
                    assert response.status_code == 200
                    streams.append(stream)
            per_job = http.get(f"/v1/jobs/{first}/logs", params={"follow": "true"})
            overall = http.get(f"/v1/jobs/{second}/logs", params={"follow": "true"})
            for refused, words in ((per_job, "follow job"), (overall, "log streams are open")):
                assert refused.status_code == 503, refused.text
                assert int(refused.headers["Retry-After"]) > 0
                assert words in refused.json()["detail"]
        finally:
            for stream in streams:
                stream.__exit__(None, None, None)
        # Closed streams give their places back.
        deadline = time.monotonic() + 10
        while True:
            with http.stream("GET", f"/v1/jobs/{first}/logs", params={"follow": "true"}) as again:
                if again.status_code == 200:
                    break
            assert time.monotonic() < deadline, "closed streams never gave their places back"
            time.sleep(0.2)
        for job_id in (first, second):
            http.post(f"/v1/jobs/{job_id}/cancel")
