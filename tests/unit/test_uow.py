"""The unit of work: one commit, a rollback on error, side effects only after a commit."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import SQLModel, select

from service.core.events import Event, Events
from service.db.engine import Database
from service.db.tables import Experiment
from service.db.uow import uow


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'uow.db'}")
    SQLModel.metadata.create_all(database.engine)
    return database


def names(db: Database) -> list[str]:
    with db.session() as session:
        return list(session.exec(select(Experiment.name)).all())


def test_callbacks_run_after_the_commit_and_see_the_data(db: Database) -> None:
    seen: list[list[str]] = []
    with uow(db) as tx:
        tx.session.add(Experiment(name="a"))
        tx.after_commit(lambda: seen.append(names(db)))
        assert db.writing
    assert seen == [["a"]]
    assert not db.writing


def test_an_error_rolls_back_and_runs_no_callback(db: Database) -> None:
    events, heard = Events(), []
    events.subscribe(Event.JOB_QUEUED, heard.append)

    def failing_use_case() -> None:
        with uow(db, events) as tx:
            tx.session.add(Experiment(name="a"))
            tx.publish(Event.JOB_QUEUED, "local")
            raise RuntimeError("use case failed")

    with pytest.raises(RuntimeError):
        failing_use_case()
    assert names(db) == []
    assert heard == []
    assert not db.writing


def test_start_over_forgets_what_was_queued(db: Database) -> None:
    events, heard = Events(), []
    events.subscribe(Event.JOB_QUEUED, heard.append)
    with uow(db, events) as tx:
        tx.session.add(Experiment(name="lost"))
        tx.publish(Event.JOB_QUEUED, "lost")
        tx.start_over()
        tx.session.add(Experiment(name="kept"))
        tx.publish(Event.JOB_QUEUED, "kept")
    assert names(db) == ["kept"]
    assert [n.subject for n in heard] == ["kept"]


def test_a_failing_subscriber_does_not_undo_or_stop_the_others(db: Database) -> None:
    events, heard = Events(), []

    def broken(_notice: object) -> None:
        raise ValueError("listener bug")

    events.subscribe(Event.JOB_ENDED, broken)
    events.subscribe(Event.JOB_ENDED, heard.append)
    with uow(db, events) as tx:
        tx.session.add(Experiment(name="a"))
        tx.publish(Event.JOB_ENDED)
    assert names(db) == ["a"]
    assert len(heard) == 1
