"""Model registration (reserve, call the backend outside any transaction, record) and the sweeper's tick."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from service.core.clock import utcnow
from service.core.errors import BackendError
from service.core.states import JobStatus, SweepStatus
from service.db.tables import ModelVersion, Sweep
from service.jobs.dispatcher import Dispatcher
from service.jobs.poller import Poller
from service.models import service as registry
from service.models.registrar import RegistrationBusy
from service.models.schemas import ModelRegister
from service.runtime import Runtime
from service.sweeps import service as sweeps
from service.sweeps.schemas import SweepCreate
from service.sweeps.sweeper import Sweeper
from tests.support.backend import TARGET, FakeBackend
from tests.support.core import core_runtime, job, queue_job

MODEL = ModelRegister(model_name="digits", model_path="outputs/model.pkl")


@pytest.fixture
def core(tmp_path: Path) -> tuple[Runtime, FakeBackend]:
    return core_runtime(tmp_path)


def completed_job(runtime: Runtime, backend: FakeBackend) -> str:
    job_id = queue_job(runtime)
    backend.script(job_id, JobStatus.COMPLETED)
    asyncio.run(Dispatcher(runtime).tick())
    asyncio.run(Poller(runtime).tick())
    assert job(runtime, job_id).status is JobStatus.COMPLETED
    return job_id


def versions(runtime: Runtime) -> list[tuple[int, bool, str | None]]:
    with runtime.db.session() as session:
        rows = session.exec(select(ModelVersion).order_by(ModelVersion.version)).all()
    return [(m.version, m.pending, m.sha256) for m in rows]


def test_registration_records_the_backends_digest_and_numbers_versions(core: tuple[Runtime, FakeBackend]) -> None:
    runtime, backend = core
    job_id = completed_job(runtime, backend)
    first = registry.register_model(runtime, job_id=job_id, spec=MODEL)  # FakeBackend asserts: no write tx open
    second = registry.register_model(runtime, job_id=job_id, spec=MODEL)
    assert (first.version, second.version) == (1, 2)
    assert first.location == "fake://digits/1"
    assert versions(runtime) == [(1, False, "0" * 64), (2, False, "0" * 64)]


def test_a_version_the_backends_registry_assigned_is_the_one_recorded(core: tuple[Runtime, FakeBackend]) -> None:
    runtime, backend = core
    backend.registry_version = 7
    model = registry.register_model(runtime, job_id=completed_job(runtime, backend), spec=MODEL)
    assert model.version == 7
    with runtime.db.session() as session:
        assert registry.get_version(session, name="digits", version="latest").version == 7


def test_a_refused_registration_gives_its_version_back(core: tuple[Runtime, FakeBackend]) -> None:
    runtime, backend = core
    job_id = completed_job(runtime, backend)
    backend.fail("register_model", transient=False)
    with pytest.raises(BackendError):
        registry.register_model(runtime, job_id=job_id, spec=MODEL)
    assert versions(runtime) == []
    assert registry.register_model(runtime, job_id=job_id, spec=MODEL).version == 1


def test_a_reserved_version_is_not_listed_and_not_taken_twice(core: tuple[Runtime, FakeBackend]) -> None:
    runtime, backend = core
    job_id = completed_job(runtime, backend)
    with runtime.uow() as tx:  # another process reserved version 1 and is still talking to its backend
        tx.session.add(ModelVersion(name="digits", version=1, model_path="outputs/model.pkl", location="",
                                    pending=True))
    with runtime.db.session() as session:
        assert registry.list_models(session, limit=10, cursor=None)[0] == []
    assert registry.register_model(runtime, job_id=job_id, spec=MODEL).version == 2


def test_concurrent_registrations_get_distinct_versions_without_a_lock(core: tuple[Runtime, FakeBackend]) -> None:
    runtime, backend = core
    job_id = completed_job(runtime, backend)
    both_inside = threading.Barrier(2, timeout=10)
    real = backend.register_model

    def slow_register(*args: Any, **kwargs: Any) -> Any:
        both_inside.wait()  # both reserved before either records: neither waits on the other
        return real(*args, **kwargs)

    backend.register_model = slow_register  # type: ignore[method-assign]
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(
        registry.register_model(runtime, job_id=job_id, spec=MODEL).version)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert sorted(results) == [1, 2]


def test_a_version_another_process_took_meanwhile_is_retried_with_the_next(
    core: tuple[Runtime, FakeBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime, backend = core
    job_id = completed_job(runtime, backend)
    with runtime.uow() as tx:  # committed by another process after our read of max(version) (PostgreSQL allows it)
        tx.session.add(ModelVersion(name="digits", version=1, model_path="x", location="elsewhere"))
    stale = [1]
    real = registry.next_version
    monkeypatch.setattr(registry, "next_version", lambda session, name: stale.pop() if stale else real(session, name))
    model = registry.register_model(runtime, job_id=job_id, spec=MODEL)
    assert model.version == 2
    assert versions(runtime) == [(1, False, None), (2, False, "0" * 64)]


def test_a_registration_a_crash_left_reserved_is_finished_once(core: tuple[Runtime, FakeBackend]) -> None:
    runtime, backend = core
    job_id = completed_job(runtime, backend)
    tagged = MODEL.model_copy(update={"tags": {"sweep_id": "s1"}})
    with runtime.uow() as tx:
        tx.session.add(ModelVersion(name="digits", version=1, job_id=job_id, model_path="outputs/model.pkl",
                                    location="", tags={"sweep_id": "s1"}, pending=True))
    model = registry.register_model(runtime, job_id=job_id, spec=tagged, once_per="sweep_id")
    again = registry.register_model(runtime, job_id=job_id, spec=tagged, once_per="sweep_id")
    assert (model.version, again.version) == (1, 1)
    assert versions(runtime) == [(1, False, "0" * 64)]
    assert backend.calls["register_model"] == 1


def test_sweeper_fills_slots_ends_the_sweep_and_registers_the_best_child(core: tuple[Runtime, FakeBackend]) -> None:
    runtime, backend = core
    spec = SweepCreate.model_validate({
        "job": {"experiment": "sweeps", "source": "testscripts", "script": "scorer.py", "compute_target": TARGET,
                "environment": "tutorial-env"},
        "search_space": {"--quality": {"type": "choice", "values": [0.1, 0.2]}},
        "sampling": "grid", "primary_metric": "score", "goal": "maximize", "max_concurrent_runs": 2,
        "register_best": {"model_name": "scorer", "model_path": "outputs/model.pkl"},
    })
    with runtime.uow() as tx:
        sweep_id = sweeps.create_sweep(tx, spec=spec, idempotency_key=None, settings=runtime.settings,
                                       backends=runtime.backends).sweep.id
    sweeper = Sweeper(runtime)
    asyncio.run(sweeper.tick())  # the second child fills the free slot
    with runtime.db.session() as session:
        children = sweeps.children_of(session, sweep_id=sweep_id)
    assert [c.sweep_index for c in children] == [0, 1]
    for child, score in zip(children, (0.1, 0.2), strict=True):
        backend.script(child.id, JobStatus.COMPLETED)
        backend.log(child.id, score=score)
    asyncio.run(Dispatcher(runtime).tick())
    asyncio.run(Poller(runtime).tick())
    asyncio.run(sweeper.tick())  # registers outside the transaction (FakeBackend asserts), then ends
    with runtime.db.session() as session:
        sweep = session.get(Sweep, sweep_id)
    assert sweep is not None
    assert (sweep.status, sweep.best_job_id, sweep.best_metric) == (SweepStatus.COMPLETED, children[1].id, 0.2)
    assert (sweep.model_name, sweep.model_version) == ("scorer", 1)
    assert backend.calls["register_model"] == 1


def replica(runtime: Runtime, name: str) -> Runtime:
    """Another replica on the same database and backend."""
    return dataclasses.replace(runtime, settings=runtime.settings.model_copy(update={"replica_id": name}))


def reserved_by(runtime: Runtime, job_id: str, owner: str, *, expires_in: float) -> None:
    with runtime.uow() as tx:  # `owner` reserved version 1 and is (or was) talking to its backend
        tx.session.add(ModelVersion(name="digits", version=1, job_id=job_id, model_path="outputs/model.pkl",
                                    location="", tags={"sweep_id": "s1"}, pending=True, registrar=owner,
                                    registrar_expires_at=utcnow() + timedelta(seconds=expires_in)))


def test_a_registration_another_replica_is_storing_is_not_sent_to_the_backend_again(
    core: tuple[Runtime, FakeBackend],
) -> None:
    runtime, backend = core
    job_id = completed_job(runtime, backend)
    tagged = MODEL.model_copy(update={"tags": {"sweep_id": "s1"}})
    reserved_by(runtime, job_id, "replica-a", expires_in=30)
    with pytest.raises(RegistrationBusy, match="replica-a"):
        registry.register_model(replica(runtime, "replica-b"), job_id=job_id, spec=tagged, once_per="sweep_id")
    assert backend.calls["register_model"] == 0
    assert versions(runtime) == [(1, True, None)]  # still replica-a's


def test_a_registration_whose_replica_died_is_finished_once_after_its_lease(
    core: tuple[Runtime, FakeBackend],
) -> None:
    runtime, backend = core
    job_id = completed_job(runtime, backend)
    tagged = MODEL.model_copy(update={"tags": {"sweep_id": "s1"}})
    reserved_by(runtime, job_id, "replica-a", expires_in=-1)  # replica-a stopped renewing: lapsed
    b = replica(runtime, "replica-b")
    model = registry.register_model(b, job_id=job_id, spec=tagged, once_per="sweep_id")
    again = registry.register_model(replica(runtime, "replica-c"), job_id=job_id, spec=tagged, once_per="sweep_id")
    assert (model.version, again.version, model.registrar) == (1, 1, None)
    assert versions(runtime) == [(1, False, "0" * 64)]
    assert backend.calls["register_model"] == 1


def test_a_slow_backend_call_keeps_its_registration_held(tmp_path: Path) -> None:
    runtime, backend = core_runtime(tmp_path, lease_seconds=1, replica_id="replica-a")
    job_id = completed_job(runtime, backend)
    tagged = MODEL.model_copy(update={"tags": {"sweep_id": "s1"}})
    real = backend.register_model
    seen: list[BaseException] = []

    def slow_register(*args: Any, **kwargs: Any) -> Any:
        # Outlive the first lease: the row is renewed meanwhile, so replica-b still finds it held.
        with runtime.db.session() as session:
            row = session.exec(select(ModelVersion)).one()
        first = row.registrar_expires_at
        assert first is not None
        renewed = threading.Event()
        for _ in range(200):
            with runtime.db.session() as session:
                later = session.exec(select(ModelVersion)).one().registrar_expires_at
            if later is not None and later > first + timedelta(seconds=0.5):
                renewed.set()
                break
            renewed.wait(0.05)
        assert renewed.is_set(), "the registration was not renewed while the backend call lasted"
        try:
            registry.register_model(replica(runtime, "replica-b"), job_id=job_id, spec=tagged, once_per="sweep_id")
        except RegistrationBusy as exc:
            seen.append(exc)
        return real(*args, **kwargs)

    backend.register_model = slow_register  # type: ignore[method-assign]
    assert registry.register_model(runtime, job_id=job_id, spec=tagged, once_per="sweep_id").version == 1
    assert len(seen) == 1
    assert backend.calls["register_model"] == 1


def test_sweeper_waits_while_another_replica_registers_its_best_model(core: tuple[Runtime, FakeBackend]) -> None:
    runtime, backend = core
    spec = SweepCreate.model_validate({
        "job": {"experiment": "sweeps", "source": "testscripts", "script": "scorer.py", "compute_target": TARGET,
                "environment": "tutorial-env"},
        "search_space": {"--quality": {"type": "choice", "values": [0.3]}},
        "sampling": "grid", "primary_metric": "score", "goal": "maximize", "max_concurrent_runs": 1,
        "register_best": {"model_name": "digits", "model_path": "outputs/model.pkl"},
    })
    with runtime.uow() as tx:
        sweep_id = sweeps.create_sweep(tx, spec=spec, idempotency_key=None, settings=runtime.settings,
                                       backends=runtime.backends).sweep.id
    with runtime.db.session() as session:
        (child,) = sweeps.children_of(session, sweep_id=sweep_id)
    backend.script(child.id, JobStatus.COMPLETED)
    backend.log(child.id, score=0.3)
    asyncio.run(Dispatcher(runtime).tick())
    asyncio.run(Poller(runtime).tick())
    with runtime.uow() as tx:  # replica-a ended the sweep's run a moment ago and is registering its best
        tx.session.add(ModelVersion(name="digits", version=1, job_id=child.id, model_path="outputs/model.pkl",
                                    location="", tags={"sweep_id": sweep_id}, pending=True, registrar="replica-a",
                                    registrar_expires_at=utcnow() + timedelta(seconds=30)))
    sweeper = Sweeper(replica(runtime, "replica-b"))
    asyncio.run(sweeper.tick())
    with runtime.db.session() as session:
        assert sweeps.get_sweep(session, sweep_id=sweep_id).status is SweepStatus.RUNNING
    assert backend.calls["register_model"] == 0
    with runtime.uow() as tx:  # replica-a stored it and recorded where
        row = tx.session.exec(select(ModelVersion)).one()
        row.pending, row.location, row.registrar, row.registrar_expires_at = False, "fake://digits/1", None, None
        tx.session.add(row)
    asyncio.run(sweeper.tick())
    with runtime.db.session() as session:
        sweep = sweeps.get_sweep(session, sweep_id=sweep_id)
    assert (sweep.status, sweep.model_name, sweep.model_version) == (SweepStatus.COMPLETED, "digits", 1)
    assert backend.calls["register_model"] == 0


def test_concurrent_registrations_numbered_by_the_backend_in_another_order_both_succeed(
    core: tuple[Runtime, FakeBackend],
) -> None:
    runtime, backend = core
    job_id = completed_job(runtime, backend)
    both_inside = threading.Barrier(2, timeout=10)
    first_recorded = threading.Event()
    real = backend.register_model

    def azure_like(run: Any, *, version: int, **kwargs: Any) -> Any:
        # Both reserved (1 and 2) before either reaches the backend, which numbers them the other
        # way round: the registration runyard reserved as 2 arrives first and is Azure's version 1.
        both_inside.wait()
        if version == 1:
            first_recorded.wait(10)
        backend.registry_version = 3 - version
        return real(run, version=version, **kwargs)

    backend.register_model = azure_like  # type: ignore[method-assign]
    results: dict[int, int] = {}

    def register() -> None:
        model = registry.register_model(runtime, job_id=job_id, spec=MODEL)
        results[model.version] = model.id or 0
        first_recorded.set()

    threads = [threading.Thread(target=register) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert sorted(results) == [1, 2]
    assert [(v, p) for v, p, _ in versions(runtime)] == [(1, False), (2, False)]
