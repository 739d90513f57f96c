"""trainer/train.py run the way the service runs it: `python train.py ...` in a run folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier

from service.catalog.offline_data import DIGITS_FILES, write_digits_dataset
from trainer.train import build_model, build_parser
from trainer.utils import load_mnist

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAINER_DIR = REPO_ROOT / "trainer"
TRAIN_PY = TRAINER_DIR / "train.py"
MODEL_NAME = "sklearn_mnist_model.pkl"
TIMEOUT = 300

# Runs the script as `python train.py` would, but with `service`, `trainer`
# (the installed package) and `azureml` made unimportable: the script must work
# from a bare copy of its folder with only numpy, scikit-learn and joblib.
_ISOLATED_RUNNER = """
import importlib.abc, runpy, sys

class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"service", "trainer", "azureml"}:
            raise ImportError(f"{name} must not be imported by the trainer")
        return None

sys.meta_path.insert(0, _Block())
script = sys.argv[1]
sys.argv = sys.argv[1:]
sys.path.insert(0, script.rsplit("/", 1)[0])
runpy.run_path(script, run_name="__main__")
"""


@pytest.fixture(scope="module")
def digits_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("data") / "digits"
    write_digits_dataset(folder)
    return folder


def _env(metrics_file: Path | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in {"AZUREML_RUN_ID", "RUNYARD_METRICS_FILE", "MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID"}}
    env.pop("PYTHONWARNINGS", None)
    if metrics_file is not None:
        env["RUNYARD_METRICS_FILE"] = str(metrics_file)
    env.update(extra)
    return env


def _run(
    args: list[str],
    cwd: Path,
    metrics_file: Path | None = None,
    script: Path = TRAIN_PY,
    **extra_env: str,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script), *args],
        cwd=cwd,
        env=_env(metrics_file, **extra_env),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def _metrics(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _accuracy_of(model: Any, digits_folder: Path) -> float:
    data = load_mnist(digits_folder)
    predicted = model.predict(data["test_images"] / 255.0)
    return float(np.average(predicted == data["test_labels"]))


# --------------------------------------------------------------- the happy path


def test_lbfgs_trains_logs_metrics_and_saves_model(tmp_path: Path, digits_folder: Path) -> None:
    metrics_file = tmp_path / "metrics.jsonl"

    result = _run(["--data-folder", str(digits_folder), "--regularization", "0.5"], tmp_path, metrics_file)

    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"Data folder: {digits_folder}" in out
    assert "(1347, 64)\n(1347,)\n(450, 64)\n(450,)" in out
    assert "Train a logistic regression model with regularization rate of 0.5" in out
    assert "Accuracy is" in out

    records = _metrics(metrics_file)
    assert [r["name"] for r in records] == ["regularization rate", "accuracy"]
    assert records[0]["value"] == 0.5
    accuracy = records[1]["value"]
    assert accuracy >= 0.9
    assert all(r["step"] is None for r in records)
    assert f"Accuracy is {accuracy}" in out  # the printed and the logged value agree

    model_path = tmp_path / "outputs" / MODEL_NAME
    model = joblib.load(model_path)
    assert isinstance(model, LogisticRegression)
    assert model.C == pytest.approx(2.0)
    assert _accuracy_of(model, digits_folder) == pytest.approx(accuracy)
    assert sorted(p.name for p in model_path.parent.iterdir()) == [MODEL_NAME]  # no temp file left


def test_liblinear_is_one_vs_rest_like_the_tutorial(tmp_path: Path, digits_folder: Path) -> None:
    metrics_file = tmp_path / "metrics.jsonl"

    result = _run(
        ["--data-folder", str(digits_folder), "--regularization", "0.5", "--solver", "liblinear"],
        tmp_path,
        metrics_file,
    )

    assert result.returncode == 0, result.stderr
    accuracy = {r["name"]: r["value"] for r in _metrics(metrics_file)}["accuracy"]
    assert accuracy >= 0.9
    model = joblib.load(tmp_path / "outputs" / MODEL_NAME)
    assert isinstance(model, OneVsRestClassifier)
    assert model.estimator.solver == "liblinear"
    assert len(model.estimators_) == 10
    assert _accuracy_of(model, digits_folder) == pytest.approx(accuracy)


def test_runs_from_a_bare_copy_without_service_or_azureml(tmp_path: Path, digits_folder: Path) -> None:
    # The service snapshots trainer/ into the run folder; nothing else comes along.
    source = tmp_path / "src"
    source.mkdir()
    for name in ("train.py", "utils.py"):
        shutil.copy(TRAINER_DIR / name, source / name)
    runner = tmp_path / "runner.py"
    runner.write_text(_ISOLATED_RUNNER)
    run_dir = tmp_path / "run"
    run_dir.mkdir()

    result = subprocess.run(
        [
            sys.executable,
            str(runner),
            str(source / "train.py"),
            "--data-folder",
            str(digits_folder),
            "--regularization",
            "0.5",
            "--solver",
            "newton-cg",
        ],
        cwd=run_dir,
        env=_env(None),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    # No RUNYARD_METRICS_FILE: metrics go to stdout.
    metric_lines = [line for line in result.stdout.splitlines() if line.startswith("metric ")]
    assert metric_lines[0] == "metric regularization rate=0.5"
    assert metric_lines[1].startswith("metric accuracy=")
    assert float(metric_lines[1].split("=", 1)[1]) >= 0.9
    assert (run_dir / "outputs" / MODEL_NAME).is_file()


def test_runs_as_a_module_with_custom_output_dir(tmp_path: Path, digits_folder: Path) -> None:
    out_dir = tmp_path / "custom" / "models"

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "trainer.train",
            "--data-folder",
            str(digits_folder),
            "--regularization",
            "1",
            "--solver",
            "saga",
            "--output-dir",
            str(out_dir),
        ],
        cwd=tmp_path,
        env=_env(tmp_path / "metrics.jsonl", PYTHONPATH=str(REPO_ROOT)),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert joblib.load(out_dir / MODEL_NAME).solver == "saga"
    assert not (tmp_path / "outputs").exists()


def test_convergence_warning_is_shown_but_not_fatal(tmp_path: Path, digits_folder: Path) -> None:
    # Even with UserWarnings (ConvergenceWarning's base) escalated to errors.
    result = _run(
        ["--data-folder", str(digits_folder), "--max-iter", "1"],
        tmp_path,
        tmp_path / "metrics.jsonl",
        PYTHONWARNINGS="error::UserWarning",
    )

    assert result.returncode == 0, result.stderr
    assert "ConvergenceWarning" in result.stderr
    assert (tmp_path / "outputs" / MODEL_NAME).is_file()


def test_step_is_written_by_the_script_side_logger(tmp_path: Path) -> None:
    # Imported the way train.py imports it when run as a script.
    metrics_file = tmp_path / "metrics.jsonl"
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from utils import get_run_logger; "
        "log = get_run_logger(); log.log('loss', 0.5, step=3); log.log('loss', 0.25, step=4)"
    )

    result = subprocess.run(
        [sys.executable, "-c", code, str(TRAINER_DIR)],
        cwd=tmp_path,
        env=_env(metrics_file),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert [(r["name"], r["value"], r["step"]) for r in _metrics(metrics_file)] == [
        ("loss", 0.5, 3),
        ("loss", 0.25, 4),
    ]


# ------------------------------------------------------------------- failures


def test_missing_data_folder_fails_cleanly(tmp_path: Path) -> None:
    metrics_file = tmp_path / "metrics.jsonl"

    result = _run(["--data-folder", str(tmp_path / "nowhere")], tmp_path, metrics_file)

    assert result.returncode != 0
    assert "train.py: error:" in result.stderr
    assert str(tmp_path / "nowhere") in result.stderr
    assert "Traceback" not in result.stderr
    assert not metrics_file.exists()
    assert not (tmp_path / "outputs").exists()


def test_missing_file_is_named(tmp_path: Path, digits_folder: Path) -> None:
    partial = tmp_path / "partial"
    shutil.copytree(digits_folder, partial)
    (partial / DIGITS_FILES["test_labels"]).unlink()

    result = _run(["--data-folder", str(partial)], tmp_path)

    assert result.returncode != 0
    assert "t10k-labels-idx1-ubyte.gz" in result.stderr
    assert "Traceback" not in result.stderr


def test_malformed_file_fails_cleanly(tmp_path: Path, digits_folder: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(digits_folder, broken)
    # A label file where the images should be.
    shutil.copy(broken / DIGITS_FILES["train_labels"], broken / DIGITS_FILES["train_images"])

    result = _run(["--data-folder", str(broken)], tmp_path)

    assert result.returncode != 0
    assert "bad IDX magic number 0x00000801" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("rate", ["0", "-0.5", "nan", "inf", "abc"])
def test_bad_regularization_is_an_argparse_error(tmp_path: Path, rate: str) -> None:
    result = _run(["--data-folder", str(tmp_path), "--regularization", rate], tmp_path)

    assert result.returncode == 2
    assert "--regularization" in result.stderr


# ------------------------------------------------------ in-process, fast checks


def test_parser_defaults_match_the_tutorial() -> None:
    args = build_parser().parse_args(["--data-folder", "d"])

    assert (args.data_folder, args.reg, args.solver, args.max_iter, args.output_dir) == (
        "d",
        0.01,
        "lbfgs",
        100,
        "outputs",
    )


@pytest.mark.parametrize(
    "argv",
    [
        [],  # --data-folder is required
        ["--data-folder", "d", "--solver", "sag"],
        ["--data-folder", "d", "--max-iter", "0"],
        ["--data-folder", "d", "--regularization", "-1"],
    ],
)
def test_parser_rejects(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        build_parser().parse_args(argv)
    assert excinfo.value.code == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize("solver", ["lbfgs", "saga", "newton-cg"])
def test_multinomial_solvers_use_c_as_inverse_rate(solver: str) -> None:
    model = build_model(solver, 0.25, 50)

    assert isinstance(model, LogisticRegression)
    assert (model.solver, model.C, model.max_iter, model.random_state) == (solver, 4.0, 50, 42)


def test_liblinear_model_is_wrapped() -> None:
    model = build_model("liblinear", 0.01, 100)

    assert isinstance(model, OneVsRestClassifier)
    assert (model.estimator.solver, model.estimator.C, model.estimator.random_state) == ("liblinear", 100.0, 42)


def test_unknown_solver_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown solver"):
        build_model("sag", 1.0, 100)
