"""trainer/train.py inside a simulated Azure ML SDK v2 job: its metrics go to the job's MLflow run.

The v2 runtime creates the job's MLflow run and hands it to the script as MLFLOW_TRACKING_URI and
MLFLOW_RUN_ID (with MLFLOW_EXPERIMENT_ID, MLFLOW_TRACKING_TOKEN, AZUREML_RUN_ID). Here the tracking
URI is a real local MLflow file store, so what the script logs is read back as MLflow stores it,
and as the v2 backend turns it into runyard's samples.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mlflow", reason="mlflow-skinny comes with the azure-v2 extra: pip install -e .[azure-v2]")
from mlflow.tracking import MlflowClient

from service.backends.azureml_v2_progress import new_history_samples
from service.catalog.offline_data import write_digits_dataset
from service.core.settings import REPO_ROOT

TRAIN_PY = REPO_ROOT / "trainer" / "train.py"
CLEARED = {"AZUREML_RUN_ID", "RUNYARD_METRICS_FILE", "PYTHONWARNINGS"}


@pytest.fixture(scope="module")
def digits_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("data") / "digits"
    write_digits_dataset(folder)
    return folder


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    # MLflow 3 keeps the file store only behind this switch; the tracking API on it is the same.
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    return (tmp_path / "mlruns").as_uri()


def train(cwd: Path, digits_folder: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in CLEARED and not k.startswith("MLFLOW_")}
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run([sys.executable, str(TRAIN_PY), "--data-folder", str(digits_folder), "--regularization",
                           "0.5"], cwd=cwd, env={**base, **env}, capture_output=True, text=True, timeout=300,
                          check=False)


def test_inside_a_v2_job_the_trainer_logs_the_local_metrics_through_mlflow(
    tmp_path: Path, digits_folder: Path, store: str
) -> None:
    # The job's run, made before the script starts, as the v2 runtime makes it.
    client = MlflowClient(tracking_uri=store)
    experiment = client.create_experiment("Tutorial-sklearn-mnist")
    run_id = client.create_run(experiment, run_name="runyard-job-1").info.run_id

    local_metrics = tmp_path / "local" / "metrics.jsonl"
    local = train(tmp_path / "local", digits_folder, RUNYARD_METRICS_FILE=str(local_metrics))
    assert local.returncode == 0, local.stderr
    v2 = train(tmp_path / "v2", digits_folder, MLFLOW_TRACKING_URI=store, MLFLOW_RUN_ID=run_id,
               MLFLOW_EXPERIMENT_ID=experiment, MLFLOW_TRACKING_TOKEN="job-token", AZUREML_RUN_ID=run_id,
               MLFLOW_ALLOW_FILE_STORE="true")
    assert v2.returncode == 0, v2.stderr
    assert (tmp_path / "v2" / "outputs" / "sklearn_mnist_model.pkl").is_file()

    # The same names and values as the local run's metrics file, each at step 0 of its MLflow history.
    logged: list[dict[str, Any]] = [json.loads(line) for line in local_metrics.read_text().splitlines()]
    assert [r["name"] for r in logged] == ["regularization rate", "accuracy"]
    run = client.get_run(run_id)
    assert run.data.metrics == {r["name"]: r["value"] for r in logged}
    histories = {name: client.get_metric_history(run_id, name) for name in run.data.metrics}
    assert {name: [(m.value, m.step) for m in points] for name, points in histories.items()} == {
        r["name"]: [(r["value"], 0)] for r in logged}
    assert run.info.status == "RUNNING"  # the script leaves ending the run to the job runtime
    assert len(client.search_runs([experiment])) == 1  # no run of its own

    # What the v2 backend stores from those histories: the values with MLflow's steps and times.
    samples, cursor = new_history_samples(tmp_path / "rundir", 0, histories)
    assert cursor == 2
    assert sorted((s.name, s.value, s.step) for s in samples) == sorted(
        (r["name"], r["value"], 0) for r in logged)
    assert all(s.timestamp.year >= 2026 for s in samples)


def test_steps_logged_by_a_script_land_in_the_mlflow_history(tmp_path: Path, store: str) -> None:
    client = MlflowClient(tracking_uri=store)
    run_id = client.create_run(client.create_experiment("steps")).info.run_id
    script = tmp_path / "curve.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(REPO_ROOT / 'trainer')!r})\n"
        "from utils import get_run_logger\n"
        "run = get_run_logger()\n"
        "for loss in (0.9, 0.5, 0.3):\n"
        "    run.log('loss', loss)\n"
        "run.log('lr', 0.1, step=10)\n"
        "run.log('lr', 0.01)\n"
    )
    base = {k: v for k, v in os.environ.items() if k not in CLEARED and not k.startswith("MLFLOW_")}
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env={**base, "MLFLOW_TRACKING_URI": store, "MLFLOW_RUN_ID": run_id,
                                 "MLFLOW_ALLOW_FILE_STORE": "true"}, check=False)
    assert result.returncode == 0, result.stderr

    def steps(name: str) -> list[tuple[float, int]]:
        return [(m.value, m.step) for m in client.get_metric_history(run_id, name)]

    assert steps("loss") == [(0.9, 0), (0.5, 1), (0.3, 2)]
    assert steps("lr") == [(0.1, 10), (0.01, 11)]
