"""List and metric-history pages built from columns equal, byte for byte, the models' own JSON (issue 17).

`GET /v1/jobs` writes its page from selected columns (service/jobs/public_rows.py) and the history
from plain points; before, both were built as `JobPublic` / `MetricPointPublic` models. Here the
new bodies are compared with the models' JSON for jobs with every optional field set and unset,
retried jobs with earlier attempts, and points with and without a step, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import col, select

from service.api.responses import json_response
from service.app import create_app
from service.core.schemas import Page
from service.core.settings import Settings
from service.core.states import JobStatus, SweepStatus
from service.db.engine import Database
from service.db.tables import Experiment, Job, JobAttempt, MetricPoint, Sweep
from service.jobs import routes
from service.jobs.schemas import JobPublic, MetricPointPublic
from tests.support.postgres import scratch_database

T0 = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)
WHOLE_SECOND = datetime(2026, 3, 4, 5, 6, 8, tzinfo=UTC)  # serialised without a fraction


@pytest.fixture(params=["sqlite", "postgresql"])
def any_client(request: pytest.FixtureRequest, settings: Settings) -> Iterator[TestClient]:
    if request.param == "sqlite":
        with TestClient(create_app(settings)) as client:
            yield client
        return
    with scratch_database() as url, TestClient(create_app(settings.model_copy(update={"database_url": url}))) as client:
        yield client


def _db(client: TestClient) -> Database:
    db: Database = client.app.state.runtime.db  # type: ignore[attr-defined]
    return db


def _job(i: int, **fields: Any) -> Job:
    base: dict[str, Any] = {
        "id": f"01JOBLISTROWS{i:013d}", "experiment": "rows", "source": "trainer", "script": "train.py",
        "compute_target": "local", "environment": "tutorial-env", "environment_version": 1,
        "status": JobStatus.COMPLETED, "request_hash": f"{i:064x}", "created_at": T0, "updated_at": T0,
    }
    return Job(**{**base, **fields})


def _seed(db: Database) -> list[str]:
    """Terminal jobs (no loop touches them): bare ones, and ones with every optional field set."""
    everything: dict[str, Any] = {
        "arguments": ["--lr", 0.5, 3, True, "--data", {"dataset": "digits", "version": 2, "mode": "mount"},
                      "k\u00fc\u2028", 1e-07, 12345678901234567890],
        "tags": {"team": "vision", "k\u00fc": "v\u00e9", "empty": ""},
        "backend_status": "Completed", "run_id": "run-all", "error": "boom \u00e9", "exit_code": 3,
        "submitted_at": T0 + timedelta(microseconds=1), "started_at": WHOLE_SECOND,
        "ended_at": T0 + timedelta(days=1), "cancel_requested_at": T0 + timedelta(hours=1),
        "sweep_id": "sweeprows", "sweep_index": 0, "sweep_params": {"lr": 0.5},
        "max_retries": 2, "max_run_duration_seconds": 3600, "attempt": 3, "last_error": "backend slow",
        "backend_errors": 4, "metrics_dropped": 7, "status": JobStatus.FAILED,
        "files": ["outputs/model.pkl"], "idempotency_key": "key-all",
    }
    jobs = [
        _job(0),
        _job(1, **everything),
        _job(2, status=JobStatus.CANCELED, arguments=[], tags={}, attempt=2, max_retries=1, run_id="run-2"),
        _job(3, status=JobStatus.COMPLETED, exit_code=0, environment_version=7, updated_at=WHOLE_SECOND),
    ]
    attempts = [
        JobAttempt(job_id=jobs[1].id, attempt=1, run_id="run-a1", status=JobStatus.FAILED, error="oom",
                   exit_code=137, started_at=T0, ended_at=WHOLE_SECOND),
        JobAttempt(job_id=jobs[1].id, attempt=2, status=JobStatus.FAILED),
        JobAttempt(job_id=jobs[2].id, attempt=1, run_id="run-b1", status=JobStatus.FAILED, started_at=T0),
    ]
    points = [MetricPoint(job_id=jobs[1].id, name="loss", step=None if i % 2 else i, value=v, timestamp=ts)
              for i, (v, ts) in enumerate([(0.5, T0), (1e-300, WHOLE_SECOND), (-3.25, T0), (1.0, T0)])]
    with db.write_session() as session:
        session.add(Experiment(name="rows"))
        session.flush()
        session.add(Sweep(id="sweeprows", experiment="rows", status=SweepStatus.FAILED, request_hash="0" * 64))
        session.flush()
        session.add_all(jobs)
        session.flush()
        session.add_all([*attempts, *points])
        session.commit()
    return [j.id for j in jobs]


def _model_page(db: Database, **where: Any) -> bytes:
    """The page as the model-built route wrote it: ORM rows validated into JobPublic models."""
    with db.session() as session:
        stmt = select(Job).where(*(getattr(Job, k) == v for k, v in where.items()))
        found = list(session.exec(stmt.order_by(col(Job.id).desc())).all())
        return bytes(json_response(Page[JobPublic](items=routes._with_attempts(session, found),
                                                   next_cursor=None)).body)


def test_list_pages_equal_the_model_built_json(any_client: TestClient) -> None:
    db = _db(any_client)
    ids = _seed(db)
    whole = any_client.get("/v1/jobs")
    assert whole.status_code == 200
    assert whole.headers["content-type"] == "application/json"
    assert whole.content == _model_page(db)
    items = whole.json()["items"]
    assert [j["id"] for j in items] == sorted(ids, reverse=True)
    assert [a["attempt"] for a in items[2]["attempts"]] == [1, 2]  # job 1, retried twice
    assert items[2]["sweep_id"] == "sweeprows"
    assert items[3]["attempts"] == []
    # The filters that read on the event loop (an index) and in a thread (a scan) alike.
    for params, where in [({"status": "failed"}, {"status": JobStatus.FAILED}),
                          ({"experiment": "rows", "status": "canceled"}, {"status": JobStatus.CANCELED}),
                          ({"experiment": "rows"}, {}), ({"sweep_id": "sweeprows"}, {"sweep_id": "sweeprows"}),
                          ({"tag": "k\u00fc:v\u00e9"}, {"sweep_id": "sweeprows"})]:
        page = any_client.get("/v1/jobs", params=params)
        assert page.content == _model_page(db, **where), params


def test_list_paging_keeps_its_cursors(any_client: TestClient) -> None:
    ids = sorted(_seed(_db(any_client)), reverse=True)
    first = any_client.get("/v1/jobs", params={"limit": 3}).json()
    assert [j["id"] for j in first["items"]] == ids[:3]
    assert first["next_cursor"]
    rest = any_client.get("/v1/jobs", params={"limit": 3, "cursor": first["next_cursor"]}).json()
    assert [j["id"] for j in rest["items"]] == ids[3:]
    assert rest["next_cursor"] is None


def test_history_equals_the_model_built_json(any_client: TestClient) -> None:
    db = _db(any_client)
    job_id = _seed(db)[1]
    body = any_client.get(f"/v1/jobs/{job_id}/metrics/loss/history").content
    with db.session() as session:
        points = session.exec(select(MetricPoint).where(MetricPoint.job_id == job_id).order_by(col(MetricPoint.id)))
        models = [MetricPointPublic.model_validate(p, from_attributes=True) for p in points]
    assert body == json_response(Page[MetricPointPublic](items=models, next_cursor=None)).body
    assert [p["step"] for p in any_client.get(f"/v1/jobs/{job_id}/metrics/loss/history").json()["items"]] == [
        0, None, 2, None]


def test_history_errors_are_unchanged(any_client: TestClient) -> None:
    job_id = _seed(_db(any_client))[1]
    missing = any_client.get("/v1/jobs/nosuchjob/metrics/loss/history")
    assert missing.status_code == 404
    assert "job 'nosuchjob' does not exist" in missing.text
    # A cursor past the end of a missing job's history: still the job's 404, not an empty page.
    past = any_client.get("/v1/jobs/nosuchjob/metrics/loss/history", params={"cursor": "AAAAAAAAAAE"})
    assert past.status_code == 404
    assert "does not exist" in past.text
    unknown = any_client.get(f"/v1/jobs/{job_id}/metrics/los/history")
    assert unknown.status_code == 404
    assert "loss" in unknown.text
    page = any_client.get(f"/v1/jobs/{job_id}/metrics/loss/history", params={"limit": 2}).json()
    after = any_client.get(f"/v1/jobs/{job_id}/metrics/loss/history",
                           params={"limit": 2, "cursor": page["next_cursor"]}).json()
    assert len(after["items"]) == 2
    assert after["next_cursor"] is None
    end = any_client.get(f"/v1/jobs/{job_id}/metrics/los/history", params={"cursor": page["next_cursor"]})
    assert end.status_code == 200
    assert end.json() == {"items": [], "next_cursor": None}
