"""Advances open sweeps: stops children the policy rules out, fills free slots, ends and registers."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from sqlmodel import Session, col, select

from service.core.clock import utcnow
from service.core.errors import BackendError, RunyardError
from service.core.loop import BackgroundLoop
from service.core.states import JobStatus
from service.db.tables import Job, MetricPoint, ModelVersion, Sweep
from service.jobs import service as jobs
from service.models import service as registry
from service.models.schemas import ModelRegister
from service.runtime import Runtime
from service.sweeps import early_stop
from service.sweeps import service as sweeps
from service.sweeps.schemas import SweepCreate, SweepStatus

log = logging.getLogger(__name__)

# job id -> (step, value) of the primary metric, in logging order.
SeriesByJob = dict[str, list[tuple[int, float]]]


@dataclass(frozen=True)
class Outcome:
    free_slots: int = 0
    canceled: bool = False


class Sweeper:
    """One tick: reconcile every open sweep, then launch children into its free slots."""

    def __init__(
        self, runtime: Runtime, *, on_launched: Callable[[], None] = lambda: None,
        on_canceled: Callable[[], None] = lambda: None,
    ) -> None:
        self.runtime = runtime
        self._on_launched = on_launched
        self._on_canceled = on_canceled
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
        with self.runtime.db.write_session() as session:
            outcome = reconcile(session, sweep_id=sweep_id, runtime=self.runtime)
        if outcome.canceled:
            self._on_canceled()
        launched = 0
        while launched < outcome.free_slots:
            with self.runtime.db.write_session() as session:
                if launch_next(session, sweep_id=sweep_id, runtime=self.runtime) is None:
                    break
            launched += 1
        if launched:
            self._on_launched()


def launch_next(session: Session, *, sweep_id: str, runtime: Runtime) -> Job | None:
    """Submit the next child of the plan if the sweep is running and has a free slot."""
    # Read under the write lock, so a cancel committed a moment ago is seen.
    sweep = session.get(Sweep, sweep_id)
    if sweep is None or sweep.status != SweepStatus.RUNNING.value or sweep.error is not None:
        return None
    children = sweeps.children_of(session, sweep_id=sweep_id)
    active = sum(not JobStatus(c.status).is_terminal() for c in children)
    if len(children) >= len(sweep.plan) or active >= sweep.spec["max_concurrent_runs"]:
        return None
    try:
        return sweeps.launch_child(session, sweep=sweep, index=len(children), settings=runtime.settings,
                                   backends=runtime.backends)
    except RunyardError as exc:
        # Definitive (a dataset or environment gone since): stop launching; the sweep ends failed.
        session.rollback()
        sweep = sweeps.get_sweep(session, sweep_id=sweep_id)
        sweep.error, sweep.updated_at = f"child {len(children)} could not be submitted: {exc.detail}", utcnow()
        session.add(sweep)
        session.commit()
        log.warning("sweep %s: %s", sweep_id, sweep.error)
        return None


def reconcile(session: Session, *, sweep_id: str, runtime: Runtime) -> Outcome:
    """Apply cancels and the early-termination policy, track the best child, end the sweep when done."""
    sweep = session.get(Sweep, sweep_id)
    if sweep is None or SweepStatus(sweep.status).is_terminal():
        return Outcome()
    spec = SweepCreate.model_validate(sweep.spec)
    children = sweeps.children_of(session, sweep_id=sweep_id)
    series = _series(session, [c.id for c in children], spec.primary_metric)
    if sweep.status == SweepStatus.CANCELING.value:
        canceled = sweeps.cancel_children(session, children)
    else:
        canceled = _apply_policy(session, sweep, spec, children, series)
    best = _best(children, series, spec)
    if best != (sweep.best_job_id, sweep.best_metric):
        sweep.best_job_id, sweep.best_metric, sweep.updated_at = *best, utcnow()
        session.add(sweep)
    active = sum(not JobStatus(c.status).is_terminal() for c in children)
    exhausted = len(children) >= len(sweep.plan) or sweep.error is not None or sweep.status != SweepStatus.RUNNING.value
    if exhausted and not active:
        _finish(session, sweep, spec, children, runtime)
        return Outcome(canceled=canceled)
    session.commit()
    return Outcome(free_slots=0 if exhausted else max(0, spec.max_concurrent_runs - active), canceled=canceled)


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


def _apply_policy(session: Session, sweep: Sweep, spec: SweepCreate, children: list[Job], series: SeriesByJob) -> bool:
    """Cancel running children the policy rules out; True if any was."""
    policy = spec.early_termination
    if policy is None:
        return False
    stopped: dict[str, str] = {}
    by_step = {job_id: sorted(points) for job_id, points in series.items()}
    for child in children:
        if child.status != JobStatus.RUNNING.value or child.id in sweep.terminated:
            continue
        others = [points for job_id, points in by_step.items() if job_id != child.id]
        reason = early_stop.verdict(policy, goal=spec.goal, run=by_step.get(child.id, []), others=others)
        if reason is not None:
            jobs.request_cancel(child)
            session.add(child)
            stopped[child.id] = reason
            log.info("sweep %s: stopping job %s: %s", sweep.id, child.id, reason)
    if stopped:
        sweep.terminated = {**sweep.terminated, **stopped}  # a new dict, so the JSON column is saved
        sweep.updated_at = utcnow()
        session.add(sweep)
    return bool(stopped)


def _best(children: list[Job], series: SeriesByJob, spec: SweepCreate) -> tuple[str | None, float | None]:
    """The completed child whose last logged primary metric is best (the earliest child on a tie)."""
    scored = [(c.id, series[c.id][-1][1]) for c in children if c.status == JobStatus.COMPLETED.value and series[c.id]]
    if not scored:
        return None, None
    sign = 1 if spec.goal == "maximize" else -1
    job_id, value = max(scored, key=lambda item: sign * item[1])
    return job_id, value


def _finish(session: Session, sweep: Sweep, spec: SweepCreate, children: list[Job], runtime: Runtime) -> None:
    """Decide the final status, register the best model if asked, and commit."""
    if sweep.status == SweepStatus.CANCELING.value:
        status = SweepStatus.CANCELED
    elif sweep.error is not None:
        status = SweepStatus.FAILED
    elif sweep.best_job_id is None:
        status = SweepStatus.FAILED
        failed = sum(c.status == JobStatus.FAILED.value for c in children)
        sweep.error = (f"all {failed} children failed" if failed == len(children)
                       else f"no completed child logged {spec.primary_metric!r}")
    else:
        status = SweepStatus.COMPLETED
    if status is SweepStatus.COMPLETED and spec.register_best is not None:
        try:
            model = _register_best(session, sweep, spec, runtime)
            sweep.model_name, sweep.model_version = model.name, model.version
        except RunyardError as exc:
            status, sweep.error = SweepStatus.FAILED, f"registering the best child's model failed: {exc.detail}"
        except BackendError as exc:
            if exc.transient:
                raise  # the tick rolls back; the next one tries again
            status, sweep.error = SweepStatus.FAILED, f"registering the best child's model failed: {exc.message}"
    sweep.status, sweep.ended_at, sweep.updated_at = status.value, utcnow(), utcnow()
    session.add(sweep)
    session.commit()
    log.info("sweep %s %s (best job %s, %s=%s)", sweep.id, status.value, sweep.best_job_id,
             spec.primary_metric, sweep.best_metric)


def _register_best(session: Session, sweep: Sweep, spec: SweepCreate, runtime: Runtime) -> ModelVersion:
    """Register the best child's model once, tagged with the sweep and its metric."""
    target = spec.register_best
    best = session.get(Job, sweep.best_job_id)
    if target is None or best is None:
        raise RuntimeError(f"sweep {sweep.id} has nothing to register")
    # A crash after the registration committed but before the sweep did must not register twice.
    for earlier in session.exec(
        select(ModelVersion).where(ModelVersion.job_id == best.id, ModelVersion.name == target.model_name)
    ):
        if earlier.tags.get("sweep_id") == sweep.id:
            return earlier
    tags = {**target.tags, "sweep_id": sweep.id, "primary_metric": spec.primary_metric,
            spec.primary_metric: repr(sweep.best_metric)}
    register = ModelRegister(model_name=target.model_name, model_path=target.model_path, tags=tags)
    return registry.register_model(session, job=best, runtime=runtime, spec=register)
