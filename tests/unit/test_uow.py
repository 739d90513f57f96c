"""The unit of work: one commit, a rollback on error, side effects only after a commit."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError
from sqlmodel import SQLModel, select

from service.core.events import Event, Events
from service.db.engine import Database, storage_problem
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


def test_this_processs_writers_queue_instead_of_meeting_sqlites_busy_handler(tmp_path: Path) -> None:
    # SQLite's own busy timeout set to 0: a writer that found SQLite's lock taken would fail at once
    # ("database is locked"); they must wait for each other in the process instead (so in arrival
    # order, not in SQLite's growing sleeps).
    database = Database(f"sqlite:///{tmp_path / 'queue.db'}", busy_timeout_ms=10_000)

    @event.listens_for(database.engine, "connect")
    def _impatient(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA busy_timeout=0")

    SQLModel.metadata.create_all(database.engine)
    start = threading.Barrier(8)

    def writer(n: int) -> None:
        start.wait()
        for i in range(25):
            with uow(database) as tx:
                tx.session.add(Experiment(name=f"w{n}-{i}"))
                tx.session.flush()
                time.sleep(0.0005)  # hold the lock a moment, so the others do arrive meanwhile

    with ThreadPoolExecutor(8) as pool:
        for done in [pool.submit(writer, n) for n in range(8)]:
            done.result()
    assert len(names(database)) == 8 * 25


def test_a_writer_waits_no_longer_than_the_busy_timeout_then_storage_is_busy(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'wait.db'}", busy_timeout_ms=200)
    SQLModel.metadata.create_all(database.engine)
    holding, release = threading.Event(), threading.Event()

    def holder() -> None:
        with database.write_session() as session:
            session.add(Experiment(name="held"))
            session.flush()
            holding.set()
            release.wait(10)
            session.commit()

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert holding.wait(10)
        began = time.monotonic()
        with pytest.raises(OperationalError) as refused, uow(database) as tx:
            tx.session.add(Experiment(name="late"))
        waited = time.monotonic() - began
        problem = storage_problem(refused.value)
        assert problem is not None
        assert "busy" in problem.reason
        assert 0.15 <= waited < 5
        assert not database.writing
        assert database.writes.recent_failure(within_seconds=60) == problem.reason  # readiness hears of it
    finally:
        release.set()
        thread.join()
    with uow(database) as tx:  # the queue is free again once the holder is done
        tx.session.add(Experiment(name="after"))
    assert sorted(names(database)) == ["after", "held"]
