"""The core without HTTP: a migrated database, a runtime on a FakeBackend, jobs made by the use cases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlmodel import SQLModel

from service.backends.targets import Backends
from service.catalog import service as catalog
from service.core.events import Event, Events, Notice
from service.core.settings import Settings
from service.db.engine import Database
from service.db.tables import Job
from service.db.uow import uow
from service.jobs import service as jobs
from service.jobs.schemas import JobCreate
from service.runtime import Runtime
from tests.support.backend import TARGET, FakeBackend

SCRIPTS = Path(__file__).parent.parent / "scripts"


class Heard:
    """Every event published, in order."""

    def __init__(self, events: Events) -> None:
        self.notices: list[Notice] = []
        for event in Event:
            events.subscribe(event, self.notices.append)

    def of(self, event: Event) -> list[str | None]:
        return [n.subject for n in self.notices if n.event is event]


def core_runtime(tmp_path: Path, *, capacity: int | None = None, **settings: Any) -> tuple[Runtime, FakeBackend]:
    """A runtime on a fresh SQLite database whose only target is a FakeBackend."""
    cfg = Settings(data_dir=tmp_path / "data", sources={"testscripts": SCRIPTS}, **settings)
    cfg.data_dir.mkdir(parents=True)
    db = Database(cfg.effective_database_url)
    SQLModel.metadata.create_all(db.engine)  # the tables as migrated (test_migrations proves they agree), faster
    with uow(db) as tx:
        catalog.create_environment(tx.session, spec=catalog.TUTORIAL_ENV)
    backend = FakeBackend(db, capacity=capacity)
    return Runtime(settings=cfg, db=db, backends=Backends([backend])), backend


def queue_job(runtime: Runtime, **fields: Any) -> str:
    """A queued job on the fake target, made by the submit use case."""
    spec = JobCreate.model_validate({"experiment": "core", "source": "testscripts", "script": "sleeper.py",
                                     "compute_target": TARGET, "environment": "tutorial-env", **fields})
    with runtime.uow() as tx:
        result = jobs.submit_job(tx, spec=spec, idempotency_key=None, settings=runtime.settings,
                                 backends=runtime.backends)
    return result.job.id


def job(runtime: Runtime, job_id: str) -> Job:
    with runtime.db.session() as session:
        found = session.get(Job, job_id)
    assert found is not None
    return found
