"""Issue 19 end to end: a real server under a lowered fd limit, a chatty metrics script, a second
process holding SQLite's write lock, a crowd of connections. Nothing answers 500; nothing stays active."""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import ACTIVE, LiveServer, stop_server
from tests.e2e.test_server_limits import start_limited

NOFILE = 256


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    live = start_limited(tmp_path, NOFILE, RUNYARD_SQLITE_BUSY_TIMEOUT_MS="500", RUNYARD_HEADER_TIMEOUT_SECONDS="2",
                         RUNYARD_MAX_METRIC_POINTS_PER_JOB="20000", RUNYARD_MAX_CONNECTIONS="100")
    yield live
    stop_server(live)


def _hold_lock(database: Path, seconds: float, held: threading.Event) -> None:
    holder = sqlite3.connect(database, isolation_level=None, timeout=30)
    holder.execute("BEGIN IMMEDIATE")
    held.set()
    time.sleep(seconds)
    holder.rollback()
    holder.close()


def test_nothing_answers_500_and_nothing_stays_active(server: LiveServer) -> None:
    statuses: list[int] = []
    with httpx.Client(base_url=server.url, timeout=30) as http:
        chatty = {"experiment": "faults", "source": "testscripts", "script": "chatty.py",
                  "arguments": ["--points", 50_000, "--long-line-bytes", 2_000_000]}
        jobs = [http.post("/v1/jobs", json=chatty).json()["id"]]
        crowd = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(150)]
        held = threading.Event()
        locker = threading.Thread(target=_hold_lock, args=(server.data_dir / "runyard.db", 3.0, held))
        locker.start()
        held.wait(10)
        for i in range(10):  # while the lock is held: 503 with Retry-After, retried with the same key
            body = {"experiment": "faults", "source": "testscripts", "script": "sleeper.py", "arguments": []}
            key = {"Idempotency-Key": f"job-{i}"}
            for _ in range(40):
                answer = http.post("/v1/jobs", json=body, headers=key)
                statuses.append(answer.status_code)
                if answer.status_code == 201:
                    jobs.append(answer.json()["id"])
                    break
                assert answer.status_code == 503, answer.text
                assert "Retry-After" in answer.headers
                time.sleep(0.25)
            statuses.append(http.get("/healthz").status_code)
            statuses.append(http.get("/v1/jobs", params={"limit": 5}).status_code)
        locker.join()
        for sock in crowd:
            sock.close()
        deadline = time.monotonic() + 90
        while True:
            states = {job_id: http.get(f"/v1/jobs/{job_id}").json() for job_id in jobs}
            if not any(job["status"] in ACTIVE for job in states.values()):
                break
            assert time.monotonic() < deadline, {j: s["status"] for j, s in states.items()}
            time.sleep(0.5)
    assert len(jobs) == 11
    assert all(job["status"] == "completed" for job in states.values()), states
    assert states[jobs[0]]["metrics_dropped"] == 50_000 - 20_000 + 1
    assert not [s for s in statuses if s >= 500 and s != 503]
    assert "Internal error" not in server.log_text()
