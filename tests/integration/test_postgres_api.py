"""The HTTP API on PostgreSQL: the tutorial, filters, paging, idempotency and the registry."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.core.settings import Settings
from service.models import service as registry
from service.models.schemas import ModelRegister
from tests.conftest import script_job, tutorial_job, wait_for
from tests.support.postgres import scratch_database


@pytest.fixture
def pg_client(settings: Settings) -> Iterator[TestClient]:
    with scratch_database() as url:
        with TestClient(create_app(settings.model_copy(update={"database_url": url}))) as client:
            yield client


def test_the_tutorial_runs_and_registers_on_postgres(pg_client: TestClient) -> None:
    job_id = pg_client.post("/v1/jobs", json=tutorial_job()).json()["id"]
    job = wait_for(pg_client, job_id)
    assert job["status"] == "completed", job
    assert job["submitted_at"] <= job["started_at"] <= job["ended_at"]
    assert pg_client.get(f"/v1/jobs/{job_id}/metrics").json()["metrics"]["accuracy"] >= 0.9
    history = pg_client.get(f"/v1/jobs/{job_id}/metrics/accuracy/history").json()["items"]
    assert len(history) == 1
    for expected in (1, 2):
        model = pg_client.post(
            f"/v1/jobs/{job_id}/models",
            json={"model_name": "sklearn_mnist", "model_path": "outputs/sklearn_mnist_model.pkl"},
        )
        assert model.status_code == 201, model.text
        assert model.json()["version"] == expected
    latest = pg_client.get("/v1/models/sklearn_mnist/versions/latest").json()
    assert latest["version"] == 2
    assert latest["metrics"]["accuracy"] >= 0.9


def test_filters_and_keyset_paging_on_postgres(pg_client: TestClient) -> None:
    ids = [
        pg_client.post("/v1/jobs", json=script_job("sleeper.py", tags={"k\u00fc": f"v{i % 2}"})).json()["id"]
        for i in range(5)
    ]
    for job_id in ids:
        assert wait_for(pg_client, job_id)["status"] == "completed"
    tagged = pg_client.get("/v1/jobs", params={"tag": "k\u00fc:v0"}).json()["items"]
    assert sorted(j["id"] for j in tagged) == sorted(ids[0::2])
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 2, "status": "completed"}
        if cursor:
            params["cursor"] = cursor
        page = pg_client.get("/v1/jobs", params=params).json()
        seen += [j["id"] for j in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(ids, reverse=True)


def test_one_idempotency_key_makes_one_job_on_postgres(pg_client: TestClient) -> None:
    body = script_job("sleeper.py")

    def post(_: int) -> tuple[int, str]:
        response = pg_client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "same-key"})
        return response.status_code, response.json()["id"]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(post, range(16)))
    assert {status for status, _ in results} <= {200, 201}
    assert len({job_id for _, job_id in results}) == 1
    assert len(pg_client.get("/v1/jobs").json()["items"]) == 1


def test_concurrent_versions_are_numbered_by_the_database_on_postgres(pg_client: TestClient) -> None:
    def post(_: int) -> int:
        response = pg_client.post("/v1/environments", json={"name": "race-env", "pip_packages": ["numpy"]})
        assert response.status_code == 201, response.text
        return int(response.json()["version"])

    with ThreadPoolExecutor(8) as pool:
        versions = sorted(pool.map(post, range(12)))
    assert versions == list(range(1, 13))


def test_a_herd_of_model_registrations_all_get_versions_on_postgres(pg_client: TestClient) -> None:
    # More concurrent registrations of one name than the retry budget: without taking turns,
    # each round of the herd settled one writer and the rest ran out of tries with a 409.
    job_id = pg_client.post("/v1/jobs", json=script_job("write_model.py", "--kind", "garbage")).json()["id"]
    assert wait_for(pg_client, job_id)["status"] == "completed"

    def register(_: int) -> int:
        response = pg_client.post(f"/v1/jobs/{job_id}/models",
                                  json={"model_name": "herd", "model_path": "outputs/model.pkl"})
        assert response.status_code == 201, response.text
        return int(response.json()["version"])

    with ThreadPoolExecutor(16) as pool:
        versions = sorted(pool.map(register, range(24)))
    assert versions == list(range(1, 25))


def test_two_replicas_ending_one_sweep_register_its_best_once_on_postgres(pg_client: TestClient) -> None:
    # Each replica's sweeper may reach "register the best child" for the same sweep at once; the
    # once-per-sweep lookup must see the other's reservation, so one version comes of it.
    job_id = pg_client.post("/v1/jobs", json=script_job("write_model.py", "--kind", "garbage")).json()["id"]
    assert wait_for(pg_client, job_id)["status"] == "completed"
    runtime: Any = pg_client.app.state.runtime  # type: ignore[attr-defined]
    spec = ModelRegister(model_name="best", model_path="outputs/model.pkl", tags={"sweep_id": "s-1"})

    def register(_: int) -> int:
        return registry.register_model(runtime, job_id=job_id, spec=spec, once_per="sweep_id").version

    with ThreadPoolExecutor(8) as pool:
        versions = set(pool.map(register, range(8)))
    assert versions == {1}
    assert [v["version"] for v in pg_client.get("/v1/models/best/versions").json()["items"]] == [1]


def test_readyz_and_metrics_name_the_replica_and_the_database_on_postgres(settings: Settings) -> None:
    with scratch_database() as url:
        app = create_app(settings.model_copy(update={"database_url": url, "replica_id": "replica-7",
                                                      "host_id": "host-7"}))
        with TestClient(app) as client:
            ready = client.get("/readyz").json()
            scraped = client.get("/metrics").text
    assert (ready["replica"], ready["host"]) == ("replica-7", "host-7")
    assert ready["database"] == "postgresql"
    assert 'runyard_replica_info{database="postgresql",replica="replica-7"} 1.0' in scraped
