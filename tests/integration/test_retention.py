"""Retention (issue 19, problem 8): run folders of jobs ended long ago go, a registered model's job's
stay; `runyard gc --dry-run` lists without deleting."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from service.cli.main import app as cli
from service.core.clock import utcnow
from service.core.settings import Settings
from service.db.tables import Job, ModelVersion
from tests.conftest import script_job, wait_for


def test_gc_deletes_old_run_folders_but_never_a_registered_models(client: TestClient, settings: Settings) -> None:
    old, registered, recent = (client.post("/v1/jobs", json=script_job("sleeper.py")).json()["id"] for _ in range(3))
    for job_id in (old, registered, recent):
        wait_for(client, job_id)
    runtime: Any = client.app.state.runtime  # type: ignore[attr-defined]
    with runtime.uow() as tx:
        for job_id in (old, registered):
            job = tx.session.get(Job, job_id)
            job.ended_at = utcnow() - timedelta(days=10)
            tx.session.add(job)
        tx.session.add(ModelVersion(name="kept", version=1, job_id=registered, model_path="outputs/m.pkl",
                                    location=str(settings.models_dir / "kept" / "1")))
    env = {"RUNYARD_DATA_DIR": str(settings.data_dir)}
    folders = {job_id: settings.runs_dir / job_id for job_id in (old, registered, recent)}
    assert all(folder.is_dir() for folder in folders.values())

    dry = CliRunner().invoke(cli, ["gc", "--dry-run", "--days", "7"], env=env)
    assert dry.exit_code == 0, dry.output
    assert f"would delete {folders[old]}" in dry.output
    assert registered not in dry.output
    assert recent not in dry.output
    assert folders[old].is_dir()

    done = CliRunner().invoke(cli, ["gc", "--days", "7"], env=env)
    assert done.exit_code == 0, done.output
    assert not folders[old].exists()
    assert folders[registered].is_dir()
    assert folders[recent].is_dir()
    assert client.get(f"/v1/jobs/{old}").json()["status"] == "completed"  # the job itself is kept


def test_gc_without_a_retention_setting_is_a_usage_error(settings: Settings) -> None:
    result = CliRunner().invoke(cli, ["gc", "--dry-run"], env={"RUNYARD_DATA_DIR": str(settings.data_dir)})
    assert result.exit_code == 2
    assert "RUNYARD_RETENTION_DAYS" in result.output
