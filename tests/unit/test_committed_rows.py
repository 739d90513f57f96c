"""Experiments remembered once committed: a submit to a known one reads nothing, a rollback forgets."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel, select

from service.catalog import service as catalog
from service.db.engine import Database
from service.db.tables import Experiment
from service.db.uow import uow
from tests.support.core import core_runtime, job, queue_job


def _database(path: Path) -> Database:
    db = Database(f"sqlite:///{path}")
    SQLModel.metadata.create_all(db.engine)
    return db


def _statements(engine: Engine) -> list[str]:
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
    return seen


def test_a_committed_experiment_is_not_read_again(tmp_path: Path) -> None:
    db = _database(tmp_path / "a.db")
    with uow(db) as tx:
        catalog.ensure_experiment(tx.session, name="exp")
    seen = _statements(db.engine)
    with uow(db) as tx:
        catalog.ensure_experiment(tx.session, name="exp")
    assert not [s for s in seen if "experiment" in s.lower()]


def test_an_experiment_made_in_a_rolled_back_transaction_is_made_again(tmp_path: Path) -> None:
    runtime, _ = core_runtime(tmp_path)

    def failed_submit() -> None:
        with runtime.uow() as tx:
            catalog.ensure_experiment(tx.session, name="core")
            raise RuntimeError("the submit failed after the experiment was made")

    with pytest.raises(RuntimeError):
        failed_submit()
    job_id = queue_job(runtime)  # experiment "core": its row must be inserted now, else the job's key fails
    assert job(runtime, job_id).experiment == "core"
    with runtime.db.session() as session:
        assert session.get(Experiment, "core") is not None


def test_each_database_knows_its_own_experiments(tmp_path: Path) -> None:
    first, second = _database(tmp_path / "a.db"), _database(tmp_path / "b.db")
    with uow(first) as tx:
        catalog.ensure_experiment(tx.session, name="exp")
    with uow(second) as tx:
        catalog.ensure_experiment(tx.session, name="exp")
    with second.session() as session:
        assert session.exec(select(Experiment.name)).all() == ["exp"]
