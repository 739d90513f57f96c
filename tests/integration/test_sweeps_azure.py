"""A sweep on the Azure ML target, against the stubbed workspace (tests/fakes/azureml.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from azureml.core import ScriptRunConfig
from fastapi.testclient import TestClient

from service.app import create_app
from service.backends.azureml import AzureMLBackend
from service.backends.base import Backend
from service.backends.local import LocalBackend
from service.core.settings import Settings
from tests.fakes.azureml import WORKSPACE_SETTINGS, FakeAzure, RunScript, ScaledClock, tutorial_script
from tests.integration.sweep_support import REGULARIZATIONS, accuracy_for, max_overlap, wait_for_sweep

MNIST_URI = "https://azureopendatastorage.blob.core.windows.net/mnist/"


def script_for(config: ScriptRunConfig) -> RunScript:
    args = [str(a) for a in config.arguments]
    reg = float(args[args.index("--regularization") + 1])
    return tutorial_script(regularization=reg, accuracy=accuracy_for(reg))


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAzure]:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # azureml writes ~/.azureml caches
    azure = FakeAzure(ScaledClock(speed=10))
    azure.add_compute("cpu-cluster")
    azure.script_for = script_for
    yield azure
    azure.release()


def test_a_sweep_on_the_azure_target_keeps_and_registers_the_best(settings: Settings, fake: FakeAzure) -> None:
    cfg = Settings.model_validate({**settings.model_dump(), **WORKSPACE_SETTINGS,
                                   "azureml_detail_refresh_seconds": 0, "azureml_call_timeout_seconds": 10})

    def backends(s: Settings) -> list[Backend]:
        return [LocalBackend(max_concurrent=s.local_max_concurrent, models_dir=s.models_dir),
                # The backend's "now" is the fake's, so start times (seen) and end times (told) agree.
                AzureMLBackend(s, sdk=fake.sdk(), now=fake.clock.datetime)]

    body = {
        "job": {"experiment": "azure-sweep", "compute_target": "cpu-cluster",
                "arguments": ["--data-folder", {"dataset": "mnist"}]},
        "search_space": {"--regularization": {"type": "choice", "values": REGULARIZATIONS}},
        "sampling": "grid", "primary_metric": "accuracy", "max_concurrent_runs": 2,
        "register_best": {"model_name": "azure-best", "model_path": "outputs/sklearn_mnist_model.pkl"},
    }
    with TestClient(create_app(cfg, backends=backends)) as client:
        assert client.post("/v1/datasets", json={"name": "mnist", "uri": MNIST_URI}).status_code == 201
        created = client.post("/v1/sweeps", json=body)
        assert created.status_code == 201, created.text
        sweep = wait_for_sweep(client, created.json()["id"], timeout=120)
        version = client.get("/v1/models/azure-best/versions/latest").json()

    assert sweep["status"] == "completed", sweep
    children = sweep["children"]
    assert [c["status"] for c in children] == ["completed"] * 6
    assert [c["primary_metric"] for c in children] == [accuracy_for(r) for r in REGULARIZATIONS]
    best = max(children, key=lambda c: c["primary_metric"])
    assert best["params"] == {"--regularization": 0.5}
    assert sweep["best_job_id"] == best["job_id"]
    # Azure queues runs itself (no capacity of ours), so only the sweep holds children back.
    assert max_overlap(children) == 2
    # One run per child, each tagged with its job, and the ScriptRunConfig carried the sampled value.
    assert len(fake.submissions) == 6
    sent = sorted(float(s.config.arguments[-1]) for s in fake.submissions)
    assert sent == sorted(REGULARIZATIONS)
    assert version["job_id"] == best["job_id"]
    assert version["tags"]["sweep_id"] == sweep["id"]
    [model] = fake.models
    assert model.name == "azure-best"
    assert model.tags["sweep_id"] == sweep["id"]
    assert model.run_id == version["run_id"]
