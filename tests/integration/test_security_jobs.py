"""What a job may reach (issue 20, items 2 and 3): its environment, and nothing outside its run folder."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from service.app import create_app
from service.backends.base import RunRef
from service.backends.local import LocalBackend
from service.core.checksums import tree_sha256
from service.core.errors import Conflict
from service.core.settings import Settings
from service.db.tables import ModelVersion
from service.models.endpoints import service as endpoints
from tests.support.jobs import script_job, tutorial_job, wait_for
from trainer import train

SECRETS = {
    "RUNYARD_API_KEYS": "plain-key-1",
    "RUNYARD_API_KEY_HASHES": '["' + "a" * 64 + '"]',
    "RUNYARD_DATABASE_URL": "postgresql+psycopg://runyard:hunter2@db/runyard",
    "AZURE_CLIENT_SECRET": "azure-secret",
    "AZURE_TENANT_ID": "tenant",
    "SOME_SERVICE_TOKEN": "token",
}


def test_a_job_sees_an_allow_listed_environment_only(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setenv("TZ", "UTC")
    settings.job_env_passthrough = ["CUDA_VISIBLE_DEVICES"]

    with TestClient(create_app(settings)) as client:
        job = wait_for(client, client.post("/v1/jobs", json=script_job("envdump.py")).json()["id"])
        assert job["status"] == "completed", job
        env = json.loads(client.get(f"/v1/jobs/{job['id']}/files/outputs/env.json").content)

    leaked = {name for name in env if name in SECRETS or value_leaks(env[name])}
    assert leaked == set()
    run_dir = settings.runs_dir / job["id"]
    assert env["RUNYARD_METRICS_FILE"] == str(run_dir / ".runyard" / "metrics.jsonl")
    assert env["RUNYARD_RUN_DIR"] == str(run_dir)
    assert env["RUNYARD_JOB_ID"] == job["id"]
    assert env["RUNYARD_RUN_ID"] == job["run_id"]
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["TZ"] == "UTC"
    assert env["CUDA_VISIBLE_DEVICES"] == "0"
    assert Path(env["HOME"]).is_relative_to(run_dir)
    assert env["OMP_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == env["MKL_NUM_THREADS"]
    allowed = {"PATH", "HOME", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "PYTHONUNBUFFERED",
               "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES",
               "RUNYARD_METRICS_FILE", "RUNYARD_RUN_DIR", "RUNYARD_JOB_ID", "RUNYARD_RUN_ID"}
    # Python itself may add a few of its own (LC_CTYPE coercion); nothing else comes through.
    assert set(env) - allowed <= {"LC_CTYPE"}, set(env) - allowed


def value_leaks(value: str) -> bool:
    return any(secret in value for secret in SECRETS.values())


@pytest.mark.parametrize("name", ["RUNYARD_API_KEYS", "AZURE_CLIENT_SECRET", "not a name"])
def test_the_service_s_own_variables_cannot_be_passed_through(name: str) -> None:
    with pytest.raises(ValueError, match="cannot be passed to jobs"):
        Settings(job_env_passthrough=[name])


@pytest.mark.parametrize("output_dir", ["../../models/prod-model/1", "/tmp/elsewhere", "escape"])
def test_the_trainer_refuses_output_dirs_outside_its_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], output_dir: str
) -> None:
    run = tmp_path / "runs" / "job"
    run.mkdir(parents=True)
    (run / "escape").symlink_to(tmp_path)  # a symlink leaving the folder counts as leaving it
    monkeypatch.chdir(run)
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--data-folder", "nowhere", "--output-dir", output_dir])
    assert exit_info.value.code == 2
    assert "leaves the working directory" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["escape", "job", "runs"]


def test_a_job_cannot_overwrite_a_registered_model(client: TestClient, settings: Settings) -> None:
    first = wait_for(client, client.post("/v1/jobs", json=tutorial_job()).json()["id"])
    body = {"model_name": "prod-model", "model_path": "outputs/sklearn_mnist_model.pkl"}
    registered = client.post(f"/v1/jobs/{first['id']}/models", json=body)
    assert registered.status_code == 201, registered.text
    stored = settings.models_dir / "prod-model" / "1" / "sklearn_mnist_model.pkl"
    before = stored.read_bytes()
    with client.app.state.runtime.db.session() as session:  # type: ignore[attr-defined]
        row = session.exec(select(ModelVersion).where(ModelVersion.name == "prod-model")).one()
    assert row.sha256 == hashlib.sha256(before).hexdigest()  # recorded with the version

    attack = tutorial_job(arguments=["--data-folder", {"dataset": "digits"}, "--regularization", 5,
                                     "--output-dir", "../../models/prod-model/1"])
    refused = client.post("/v1/jobs", json=attack)  # the argument is refused before any run starts...
    assert refused.status_code == 422
    assert "'..'" in refused.json()["detail"]
    assert stored.read_bytes() == before
    # ...and the trainer refuses such a folder on its own (above), should a path reach it otherwise.


def test_registered_files_are_copied_read_only_with_their_sha256(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "job"
    (run_dir / "outputs" / "folder" / "sub").mkdir(parents=True)
    (run_dir / "outputs" / "model.pkl").write_bytes(b"weights")
    (run_dir / "outputs" / "folder" / "a.bin").write_bytes(b"a")
    (run_dir / "outputs" / "folder" / "sub" / "b.bin").write_bytes(b"b")
    backend = LocalBackend(max_concurrent=1, models_dir=tmp_path / "models")
    ref = RunRef(job_id="job", run_id="run", experiment="e", compute_target="local", run_dir=run_dir)

    one = backend.register_model(ref, model_name="m", model_path="outputs/model.pkl", version=1, tags={})
    assert one.sha256 == hashlib.sha256(b"weights").hexdigest()
    copy = Path(one.location) / "model.pkl"
    assert copy.read_bytes() == b"weights"
    assert stat.S_IMODE(copy.stat().st_mode) == 0o444
    assert stat.S_IMODE(Path(one.location).stat().st_mode) == 0o555
    assert not Path(one.location).is_relative_to(run_dir)

    folder = backend.register_model(ref, model_name="f", model_path="outputs/folder", version=1, tags={})
    assert folder.files == ("folder/a.bin", "folder/sub/b.bin")
    assert folder.sha256 == tree_sha256(run_dir / "outputs" / "folder")
    (run_dir / "outputs" / "folder" / "sub" / "b.bin").rename(run_dir / "outputs" / "folder" / "b.bin")
    assert tree_sha256(run_dir / "outputs" / "folder") != folder.sha256  # a moved file changes it

    # A registration whose commit failed left its copy: the next one replaces it, read-only or not.
    again = backend.register_model(ref, model_name="f", model_path="outputs/folder", version=1, tags={})
    assert again.files == ("folder/a.bin", "folder/b.bin")


@pytest.mark.parametrize(
    ("argument", "status"),
    # A server path outside the roots is the operator's rule (403); a `..` segment the schema's (422).
    [("/etc", 403), ("--data-folder=/etc/ssl", 403), ("~/.ssh", 403), ("../../models/prod-model/1", 422),
     ("--out=a/../../b", 422)],
)
def test_arguments_naming_server_paths_outside_the_dataset_roots_are_refused(
    client: TestClient, argument: str, status: int
) -> None:
    response = client.post("/v1/jobs", json=tutorial_job(arguments=["--data-folder", argument]))
    assert response.status_code == status, response.text
    assert argument in response.json()["detail"]
    sweep = {"job": {"experiment": "paths", "source": "testscripts", "script": "scorer.py"},
             "search_space": {"--quality": {"type": "choice", "values": [1, argument]}},
             "sampling": "grid", "primary_metric": "score"}
    assert client.post("/v1/sweeps", json=sweep).status_code == status


def test_paths_inside_the_dataset_roots_and_plain_values_pass(client: TestClient, settings: Settings) -> None:
    inside = settings.datasets_dir / "digits"
    for arguments in (["--data-folder", str(inside)], ["--note", "a/b", "--ratio=1/2", "--x", 3]):
        response = client.post("/v1/jobs", json=script_job("sleeper.py", *arguments))
        assert response.status_code == 201, (arguments, response.text)


def test_a_registered_model_changed_after_registration_is_not_served(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "job"
    (run_dir / "outputs").mkdir(parents=True)
    (run_dir / "outputs" / "model.pkl").write_bytes(b"weights")
    backend = LocalBackend(max_concurrent=1, models_dir=tmp_path / "models")
    ref = RunRef(job_id="job", run_id="run", experiment="e", compute_target="local", run_dir=run_dir)
    stored = backend.register_model(ref, model_name="m", model_path="outputs/model.pkl", version=1, tags={})
    model = ModelVersion(name="m", version=1, model_path="outputs/model.pkl", location=stored.location,
                         sha256=stored.sha256)

    assert endpoints.model_file(model) == Path(stored.location) / "model.pkl"
    copy = Path(stored.location) / "model.pkl"
    copy.chmod(0o644)
    copy.write_bytes(b"swapped")  # as a run with the service's rights could
    with pytest.raises(Conflict, match="no longer matches the sha256"):
        endpoints.model_file(model)
