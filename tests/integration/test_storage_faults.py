"""Storage faults (issue 19, problem 3): a locked or full database is a 503 with Retry-After, never a
500; liveness never waits for the database; readiness tells the truth about failing writes and disk."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from service.app import create_app
from service.core.settings import Settings
from tests.support.jobs import script_job


@pytest.fixture
def impatient(settings: Settings) -> Iterator[TestClient]:
    """The app with a short SQLite busy timeout, so a held lock shows within a test."""
    with TestClient(create_app(settings.model_copy(update={"sqlite_busy_timeout_ms": 300}))) as client:
        yield client


def _database(client: TestClient) -> Path:
    return Path(client.app.state.runtime.settings.data_dir) / "runyard.db"  # type: ignore[attr-defined]


def _unavailable(response: Any) -> dict[str, Any]:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert int(response.headers["Retry-After"]) > 0
    body: dict[str, Any] = response.json()
    assert body["title"] == "Storage unavailable"
    return body


def test_a_held_write_lock_is_503_and_liveness_still_answers(impatient: TestClient) -> None:
    holder = sqlite3.connect(_database(impatient), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        body = _unavailable(impatient.post("/v1/jobs", json=script_job("sleeper.py"),
                                           headers={"Idempotency-Key": "held-lock"}))
        assert "lock" in body["detail"]
        assert impatient.get("/healthz").json() == {"status": "ok", "checks": {}}
        ready = impatient.get("/readyz")
        assert ready.status_code == 503
        assert "writes failing" in ready.json()["checks"]["database"]
    finally:
        holder.rollback()
        holder.close()
    # The client retries with the same key; the job exists exactly once.
    retried = impatient.post("/v1/jobs", json=script_job("sleeper.py"), headers={"Idempotency-Key": "held-lock"})
    assert retried.status_code == 201, retried.text
    assert impatient.get("/readyz").status_code == 200


class _NoDatabase:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"liveness touched the database ({name})")


def test_liveness_never_touches_the_database(client: TestClient) -> None:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    real, runtime.db = runtime.db, _NoDatabase()
    try:
        assert client.get("/healthz").json() == {"status": "ok", "checks": {}}
    finally:
        runtime.db = real


def test_a_full_database_is_503(client: TestClient) -> None:
    engine = client.app.state.runtime.db.engine  # type: ignore[attr-defined]

    def no_room(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        # The database may not grow by a single page: SQLite answers "database or disk is full".
        pages = dbapi_conn.execute("PRAGMA page_count").fetchone()[0]
        dbapi_conn.execute(f"PRAGMA max_page_count = {pages}")

    event.listen(engine, "checkout", no_room)
    big = {f"k{i}": "x" * 1000 for i in range(50)}
    for _ in range(200):
        response = client.post("/v1/jobs", json=script_job("sleeper.py", tags=big))
        if response.status_code != 201:
            break
    body = _unavailable(response)
    assert "full" in body["detail"]
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert "full" in ready.json()["checks"]["database"]
    event.remove(engine, "checkout", no_room)


def test_readiness_reports_a_full_disk(settings: Settings) -> None:
    with TestClient(create_app(settings.model_copy(update={"min_free_disk_mb": 1e15}))) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert "MB free" in ready.json()["checks"]["disk"]
