"""A sweep on a cluster served by azure-ai-ml (SDK v2), through the HTTP API, on the stubbed v2 workspace."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("azure.ai.ml", reason="the azure-v2 extra is not installed: pip install -e .[azure-v2]")
from azure.ai.ml.entities import Command
from fastapi.testclient import TestClient

from service.app import create_app
from service.backends.azureml_v2 import AzureMLV2Backend
from service.backends.base import Backend
from service.backends.local import LocalBackend
from service.core.settings import Settings
from tests.fakes.azureml import WORKSPACE_SETTINGS, RunScript, ScaledClock, tutorial_script
from tests.fakes.azureml_v2 import FakeAzureV2
from tests.integration.sweep_support import REGULARIZATIONS, accuracy_for, max_overlap, wait_for_sweep

MNIST_URI = "https://azureopendatastorage.blob.core.windows.net/mnist/"
MODEL = "outputs/sklearn_mnist_model.pkl"
MAX_TOTAL_RUNS = 4  # fewer than the grid's 6 points: the sweep must stop at 4 children


def script_for(job: Command) -> RunScript:
    words = str(job.command).split()
    reg = float(words[words.index("--regularization") + 1])
    return tutorial_script(regularization=reg, accuracy=accuracy_for(reg))


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAzureV2]:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    azure = FakeAzureV2(ScaledClock(speed=10))
    azure.add_compute("cpu-cluster")
    azure.script_for = script_for
    yield azure
    azure.release()


def test_a_sweep_on_a_v2_cluster_stops_at_max_total_runs_and_registers_the_best(
    settings: Settings, fake: FakeAzureV2
) -> None:
    cfg = Settings.model_validate({**settings.model_dump(), **WORKSPACE_SETTINGS, "azureml_sdk": "v2",
                                   "azureml_detail_refresh_seconds": 0, "azureml_call_timeout_seconds": 10})

    def backends(s: Settings) -> list[Backend]:
        return [LocalBackend(max_concurrent=s.local_max_concurrent, models_dir=s.models_dir),
                # The backend's "now" is the fake's, so start times (seen) and end times (told) agree.
                AzureMLV2Backend(s.for_azureml_sdk("v2"), sdk=fake.sdk(), now=fake.clock.datetime)]

    body = {
        "job": {"experiment": "azure-v2-sweep", "compute_target": "cpu-cluster",
                "arguments": ["--data-folder", {"dataset": "mnist"}]},
        "search_space": {"--regularization": {"type": "choice", "values": REGULARIZATIONS}},
        "sampling": "grid", "primary_metric": "accuracy", "max_concurrent_runs": 2, "max_total_runs": MAX_TOTAL_RUNS,
        "register_best": {"model_name": "azure-v2-best", "model_path": MODEL},
    }
    with TestClient(create_app(cfg, backends=backends)) as client:
        assert client.get("/v1/compute").json()["items"][-1]["sdk"] == "v2"
        assert client.post("/v1/datasets", json={"name": "mnist", "uri": MNIST_URI}).status_code == 201
        created = client.post("/v1/sweeps", json=body)
        assert created.status_code == 201, created.text
        sweep = wait_for_sweep(client, created.json()["id"], timeout=120)
        version = client.get("/v1/models/azure-v2-best/versions/latest").json()
        best_job = client.get(f"/v1/jobs/{sweep['best_job_id']}").json()

    assert sweep["status"] == "completed", sweep
    children = sweep["children"]
    assert len(children) == MAX_TOTAL_RUNS
    assert [c["status"] for c in children] == ["completed"] * MAX_TOTAL_RUNS
    tried = REGULARIZATIONS[:MAX_TOTAL_RUNS]  # the grid's first points, in order
    assert [c["params"] for c in children] == [{"--regularization": r} for r in tried]
    assert [c["primary_metric"] for c in children] == [accuracy_for(r) for r in tried]
    best = max(children, key=lambda c: c["primary_metric"])
    assert best["params"] == {"--regularization": 0.5}
    assert (sweep["best_job_id"], sweep["best_metric"]) == (best["job_id"], accuracy_for(0.5))
    assert max_overlap(children) == 2  # Azure queues jobs itself: only the sweep holds children back

    # One command job per child (exactly max_total_runs), each carrying its sampled value.
    assert len(fake.created) == len(fake.jobs) == MAX_TOTAL_RUNS
    sent = sorted(float(str(job.command).split()[-1]) for job in fake.created)
    assert sent == sorted(tried)
    assert all(job.experiment_name == "azure-v2-sweep" and job.compute == "cpu-cluster" for job in fake.created)

    # The best child's model registered once, as a v2 Model on that job's artifact path.
    [model] = fake.models
    assert model.name == "azure-v2-best"
    assert model.path == f"azureml://jobs/{best_job['run_id']}/outputs/artifacts/paths/{MODEL}"
    assert model.tags["sweep_id"] == sweep["id"]
    assert (version["job_id"], version["run_id"], version["version"]) == (best["job_id"], best_job["run_id"], 1)
    assert version["tags"]["sweep_id"] == sweep["id"]
    assert version["metrics"]["accuracy"] == accuracy_for(0.5)
