"""Two replicas of two hosts on one database (each its own data folder): a local run's logs and files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.core.settings import Settings
from tests.support.jobs import script_job, wait_for


@pytest.fixture
def hosts(settings: Settings, tmp_path: Path) -> Iterator[tuple[TestClient, TestClient]]:
    """Replica h1-a (runs the jobs it claims on host h1) and h2-b on host h2, sharing h1's database."""
    one = settings.model_copy(update={"host_id": "h1", "replica_id": "h1-a"})
    one.data_dir.mkdir(parents=True)
    two = settings.model_copy(update={
        "host_id": "h2", "replica_id": "h2-b", "data_dir": tmp_path / "other-host",
        "database_url": one.effective_database_url,
        "local_max_concurrent": 1,
    })
    with TestClient(create_app(one)) as first, TestClient(create_app(two)) as second:
        yield first, second


def test_logs_and_files_of_another_hosts_run_name_that_host(hosts: tuple[TestClient, TestClient]) -> None:
    h1, h2 = hosts
    # Submitted through h2; claimed by whichever replica is first, so pin it: h2 is full of its own job.
    blocker = h2.post("/v1/jobs", json=script_job("sleeper.py", "--seconds", 60)).json()["id"]
    wait_for(h2, blocker, {"running"})
    job_id = h1.post("/v1/jobs", json=script_job("sleeper.py", "--seconds", 60, "--steps", 1)).json()["id"]
    running = wait_for(h1, job_id, {"running"})
    host_of = {blocker: h2.get(f"/v1/jobs/{blocker}").json(), job_id: running}
    assert (host_of[blocker]["status"], host_of[job_id]["status"]) == ("running", "running")

    answer = h2.get(f"/v1/jobs/{job_id}/logs")
    assert answer.status_code == 503
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["retry-after"] == "1"
    problem = answer.json()
    assert (problem["title"], problem["host"]) == ("Run on another host", "h1")
    assert "is on host h1; this replica runs on h2" in problem["detail"]
    assert h2.get(f"/v1/jobs/{job_id}/logs", params={"follow": "true"}).status_code == 503
    assert h2.get(f"/v1/jobs/{job_id}/files").status_code == 200  # the list is the database's
    assert h1.get(f"/v1/jobs/{job_id}/logs").status_code == 200

    for ended in (job_id, blocker):
        assert h2.post(f"/v1/jobs/{ended}/cancel").status_code == 202  # each host's poller stops its own run
        assert wait_for(h1, ended)["status"] == "canceled"
    gone = h2.get(f"/v1/jobs/{job_id}/logs")
    assert (gone.status_code, gone.json()["host"]) == (409, "h1")  # no replica of h1 holds it any more
    assert "only a replica on h1 can serve it" in gone.json()["detail"]
    assert "sleeper starting" in h1.get(f"/v1/jobs/{job_id}/logs").json()["text"]
    assert h2.get(f"/v1/jobs/{blocker}/logs").status_code == 200


def test_the_openapi_document_lists_the_other_host_problems(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/v1/jobs/{job_id}/logs", "/v1/jobs/{job_id}/files/{path}"):
        responses = paths[path]["get"]["responses"]
        assert "another host" in responses["409"]["description"]
        assert "another host" in responses["503"]["description"]
        assert "Retry-After" in responses["503"]["headers"]
        assert responses["503"]["content"]["application/problem+json"]["schema"] == {
            "$ref": "#/components/schemas/Problem"}
