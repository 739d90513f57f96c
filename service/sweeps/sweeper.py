"""Advances open sweeps: stops children the policy rules out, fills free slots, ends and registers."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass

from sqlmodel import Session, col, select

from service.core.clock import utcnow
from service.core.errors import BackendError, RunyardError
from service.core.loop import BackgroundLoop
from service.core.states import JobStatus
from service.db.tables import Job, MetricPoint, ModelVersion, Sweep
from service.db.uow import UnitOfWork
from service.jobs import service as jobs
from service.models import service as registry
from service.models.registrar import RegistrationBusy
from service.models.schemas import ModelRegister
from service.runtime import Runtime
from service.sweeps import early_stop, lifecycle
from service.sweeps import service as sweeps
from service.sweeps.schemas import SweepCreate, SweepStatus

log = logging.getLogger(__name__)

# job id -> (step, value) of the primary metric, in logging order.
SeriesByJob = dict[str, list[tuple[int, float]]]


@dataclass(frozen=True)
class Outcome:
    free_slots: int = 0
    register: bool = False  # done and completed: register the best model, then end


class Sweeper:
    """One tick: reconcile every open sweep, then launch children into its free slots."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.loop = BackgroundLoop("sweeper", self.tick, runtime.settings.poll_interval_seconds)

    async def tick(self) -> None:
        for sweep_id in await asyncio.to_thread(self._open_ids):
            try:
                await asyncio.to_thread(self.advance, sweep_id)
            except Exception:
                # One sweep's trouble (a backend down while registering...) must not stall the others.
                log.exception("sweep %s: advancing failed; retrying next tick", sweep_id)

    def _open_ids(self) -> list[str]:
        with self.runtime.db.session() as session:
            return sweeps.open_sweep_ids(session)

    def advance(self, sweep_id: str) -> None:
        """Reconcile the sweep, then launch as many children as it has free slots."""
        with self.runtime.uow() as tx:
            outcome = reconcile(tx, sweep_id=sweep_id)
        if outcome.register:
            self._register_and_finish(sweep_id)
        launched = 0
        while launched < outcome.free_slots:
            with self.runtime.uow() as tx:
                if launch_next(tx, sweep_id=sweep_id, runtime=self.runtime) is None:
                    break
            launched += 1

    def _register_and_finish(self, sweep_id: str) -> None:
        """Register the best child's model (the backend called outside any transaction), then end the sweep."""
        with self.runtime.db.session() as session:
            sweep = sweeps.get_sweep(session, sweep_id=sweep_id)
        spec = SweepCreate.model_validate(sweep.spec)
        model: ModelVersion | None = None
        error: str | None = None
        try:
            model = _register_best(sweep, spec, self.runtime)
        except RegistrationBusy as exc:
            log.info("sweep %s: %s; ending it once that is done", sweep_id, exc.detail)
            return  # the sweep stays open; a later tick finds the version registered (or takes it over)
        except RunyardError as exc:
            error = f"registering the best child's model failed: {exc.detail}"
        except BackendError as exc:
            if exc.transient:
                raise  # the sweep stays open; the next tick tries again
            error = f"registering the best child's model failed: {exc.message}"
        with self.runtime.uow() as tx:
            sweep = sweeps.get_sweep(tx.session, sweep_id=sweep_id, for_update=True)
            if sweep.status is not SweepStatus.RUNNING:
                return  # canceled meanwhile (the next reconcile ends it canceled), or another replica ended it
            if model is not None:
                sweep.model_name, sweep.model_version = model.name, model.version
            status = SweepStatus.COMPLETED if error is None else SweepStatus.FAILED
            lifecycle.set_status(sweep, status, now=utcnow(), error=error)
            tx.session.add(sweep)
        _log_end(sweep, spec)


def launch_next(tx: UnitOfWork, *, sweep_id: str, runtime: Runtime) -> Job | None:
    """Submit the next child of the plan if the sweep is running and has a free slot."""
    session = tx.session
    # Read under the write lock, so a cancel committed a moment ago is seen.
    sweep = _lock(session, sweep_id)
    if sweep is None or sweep.status is not SweepStatus.RUNNING or sweep.error is not None:
        return None
    children = sweeps.children_of(session, sweep_id=sweep_id)
    active = sum(not c.status.is_terminal() for c in children)
    if len(children) >= len(sweep.plan) or active >= sweep.spec["max_concurrent_runs"]:
        return None
    try:
        return sweeps.launch_child(tx, sweep=sweep, index=len(children), settings=runtime.settings,
                                   backends=runtime.backends)
    except RunyardError as exc:
        # Definitive (a dataset or environment gone since): stop launching; the sweep ends failed.
        tx.start_over()
        sweep = sweeps.get_sweep(session, sweep_id=sweep_id)
        sweep.error, sweep.updated_at = f"child {len(children)} could not be submitted: {exc.detail}", utcnow()
        session.add(sweep)
        log.warning("sweep %s: %s", sweep_id, sweep.error)
        return None


def reconcile(tx: UnitOfWork, *, sweep_id: str) -> Outcome:
    """Apply cancels and the early-termination policy, track the best child, end the sweep when done."""
    session = tx.session
    sweep = _lock(session, sweep_id)
    if sweep is None or sweep.status.is_terminal():
        return Outcome()
    spec = SweepCreate.model_validate(sweep.spec)
    children = sweeps.children_of(session, sweep_id=sweep_id)
    series = _series(session, [c.id for c in children], spec.primary_metric)
    if sweep.status is SweepStatus.CANCELING:
        sweeps.cancel_children(tx, children)
    else:
        _apply_policy(tx, sweep, spec, children, series)
    best = _best(children, series, spec)
    if best != (sweep.best_job_id, sweep.best_metric):
        sweep.best_job_id, sweep.best_metric, sweep.updated_at = *best, utcnow()
        session.add(sweep)
    active = sum(not c.status.is_terminal() for c in children)
    exhausted = len(children) >= len(sweep.plan) or sweep.error is not None or sweep.status is not SweepStatus.RUNNING
    if exhausted and not active:
        return Outcome(register=_finish(tx, sweep, spec, children))
    return Outcome(free_slots=0 if exhausted else max(0, spec.max_concurrent_runs - active))


def _lock(session: Session, sweep_id: str) -> Sweep | None:
    """The sweep under its row lock, or None while another replica is advancing it (PostgreSQL).

    Every replica runs the sweeper: the row lock lets one at a time reconcile or launch, so two
    cannot both end a sweep; SQLite has one writer anyway and ignores the clause.
    """
    return session.get(Sweep, sweep_id, with_for_update={"skip_locked": True}, populate_existing=True)


def _series(session: Session, job_ids: list[str], metric: str) -> SeriesByJob:
    """Each job's points of `metric`; a point logged without a step counts as the next step."""
    found: SeriesByJob = defaultdict(list)
    rows = session.exec(
        select(MetricPoint.job_id, MetricPoint.step, MetricPoint.value)
        .where(col(MetricPoint.job_id).in_(job_ids), MetricPoint.name == metric)
        .order_by(col(MetricPoint.id))
    )
    for job_id, step, value in rows:
        points = found[job_id]
        points.append((len(points) if step is None else step, value))
    return found


def _apply_policy(tx: UnitOfWork, sweep: Sweep, spec: SweepCreate, children: list[Job], series: SeriesByJob) -> None:
    """Cancel running children the policy rules out."""
    policy = spec.early_termination
    if policy is None:
        return
    stopped: dict[str, str] = {}
    by_step = {job_id: sorted(points) for job_id, points in series.items()}
    for child in children:
        if child.status is not JobStatus.RUNNING or child.id in sweep.terminated:
            continue
        others = [points for job_id, points in by_step.items() if job_id != child.id]
        reason = early_stop.verdict(policy, goal=spec.goal, run=by_step.get(child.id, []), others=others)
        if reason is not None:
            jobs.request_cancel(tx, child)
            stopped[child.id] = reason
            log.info("sweep %s: stopping job %s: %s", sweep.id, child.id, reason)
    if stopped:
        sweep.terminated = {**sweep.terminated, **stopped}  # a new dict, so the JSON column is saved
        sweep.updated_at = utcnow()
        tx.session.add(sweep)


def _best(children: list[Job], series: SeriesByJob, spec: SweepCreate) -> tuple[str | None, float | None]:
    """The completed child whose last logged primary metric is best (the earliest child on a tie)."""
    scored = [(c.id, series[c.id][-1][1]) for c in children if c.status is JobStatus.COMPLETED and series[c.id]]
    if not scored:
        return None, None
    sign = 1 if spec.goal == "maximize" else -1
    job_id, value = max(scored, key=lambda item: sign * item[1])
    return job_id, value


def _finish(tx: UnitOfWork, sweep: Sweep, spec: SweepCreate, children: list[Job]) -> bool:
    """End the sweep with its final status; True instead when the best model is to be registered first."""
    error: str | None = None
    if sweep.status is SweepStatus.CANCELING:
        status = SweepStatus.CANCELED
    elif sweep.error is not None:
        status = SweepStatus.FAILED
    elif sweep.best_job_id is None:
        status = SweepStatus.FAILED
        failed = sum(c.status is JobStatus.FAILED for c in children)
        error = (f"all {failed} children failed" if failed == len(children)
                 else f"no completed child logged {spec.primary_metric!r}")
    else:
        status = SweepStatus.COMPLETED
    if status is SweepStatus.COMPLETED and spec.register_best is not None:
        return True
    lifecycle.set_status(sweep, status, now=utcnow(), error=error)
    tx.session.add(sweep)
    _log_end(sweep, spec)
    return False


def _log_end(sweep: Sweep, spec: SweepCreate) -> None:
    log.info("sweep %s %s (best job %s, %s=%s)", sweep.id, sweep.status.value, sweep.best_job_id,
             spec.primary_metric, sweep.best_metric)


def _register_best(sweep: Sweep, spec: SweepCreate, runtime: Runtime) -> ModelVersion:
    """Register the best child's model once, tagged with the sweep and its metric."""
    target = spec.register_best
    if target is None or sweep.best_job_id is None:
        raise RuntimeError(f"sweep {sweep.id} has nothing to register")
    tags = {**target.tags, "sweep_id": sweep.id, "primary_metric": spec.primary_metric,
            spec.primary_metric: repr(sweep.best_metric)}
    register = ModelRegister(model_name=target.model_name, model_path=target.model_path, tags=tags)
    # once_per: a crash after the registration committed but before the sweep did must not register twice.
    return registry.register_model(runtime, job_id=sweep.best_job_id, spec=register, once_per="sweep_id")
