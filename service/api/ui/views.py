"""What the dashboard's pages show, assembled from the feature packages' use cases."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

from markupsafe import Markup
from sqlmodel import Session

from service.api.ui import charts
from service.core.clock import utcnow
from service.core.states import JobStatus
from service.db.tables import Job, JobAttempt
from service.jobs import artifacts
from service.sweeps.schemas import SweepChild, SweepDetail

# Icons are text, so they scale and need no image requests; colour is never the only signal.
ICONS = {
    "queued": "◷", "starting": "▷", "running": "▶", "finalizing": "◔", "canceling": "⊘",
    "completed": "✓", "failed": "✕", "canceled": "⊘",
}
MAX_PARAMS_CHARS = 60


def when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else "—"


def duration(start: datetime | None, end: datetime | None) -> str:
    """How long a run took, or has taken so far."""
    if start is None:
        return "—"
    seconds = int(((end or utcnow()) - start).total_seconds())
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def url_path(path: str) -> str:
    """A run file's relative path as it goes into a download link."""
    return quote(path)


def number(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def argument_text(argument: Any) -> str:
    if isinstance(argument, dict) and "dataset" in argument:
        version = f":{argument['version']}" if argument.get("version") else ""
        return f"{argument['dataset']}{version}"
    return str(argument)


def key_params(arguments: list[Any]) -> str:
    """The job's arguments in one short line: flags and values, datasets by name."""
    text = " ".join(argument_text(a) for a in arguments)
    return text if len(text) <= MAX_PARAMS_CHARS else text[: MAX_PARAMS_CHARS - 1] + "…"


@dataclass(frozen=True)
class JobRow:
    id: str
    status: str
    experiment: str
    target: str
    params: str
    metric: str
    created: str
    duration: str
    sweep_id: str | None

    @property
    def active(self) -> bool:
        return JobStatus(self.status).is_active()

    @property
    def version(self) -> str:
        """Changes whenever anything the row shows changes; the page's script swaps only those rows."""
        return hashlib.blake2s(repr(self).encode(), digest_size=6).hexdigest()


def job_rows(session: Session, page: list[Job]) -> list[JobRow]:
    metrics = artifacts.last_logged(session, job_ids=[j.id for j in page])
    rows = []
    for job in page:
        name, value = metrics.get(job.id, ("", None))
        rows.append(JobRow(
            id=job.id, status=job.status, experiment=job.experiment, target=job.compute_target,
            params=key_params(job.sweep_params and [f"{k} {v}" for k, v in job.sweep_params.items()]
                              or job.arguments),
            metric=f"{name} {number(value)}" if name else "—", created=when(job.created_at),
            duration=duration(job.started_at, job.ended_at), sweep_id=job.sweep_id,
        ))
    return rows


@dataclass(frozen=True)
class Step:
    label: str
    at: str
    status: str
    note: str = ""


def timeline(job: Job, attempts: list[JobAttempt]) -> list[Step]:
    """The job's life in order: earlier attempts, then queued → starting → running → the end."""
    steps = [Step("queued", when(job.created_at), "queued")]
    for attempt in attempts:
        steps.append(Step(f"attempt {attempt.attempt}", when(attempt.started_at), attempt.status,
                          f"ended {when(attempt.ended_at)}: {attempt.status}"
                          + (f" — {attempt.error}" if attempt.error else "")))
    if job.submitted_at:
        steps.append(Step("starting", when(job.submitted_at), "starting",
                          f"attempt {job.attempt}" if job.attempt > 1 else ""))
    if job.started_at:
        steps.append(Step("running", when(job.started_at), "running"))
    if job.cancel_requested_at:
        steps.append(Step("cancel requested", when(job.cancel_requested_at), "canceling"))
    if job.ended_at:
        steps.append(Step(job.status, when(job.ended_at), job.status, job.error or ""))
    elif not JobStatus(job.status).is_terminal() and job.status != steps[-1].status:
        steps.append(Step(job.status, "now", job.status))
    return steps


def metric_charts(session: Session, job_id: str, names: list[str]) -> dict[str, Markup]:
    """A line chart of each metric's history (the first 2,000 points)."""
    found = {}
    for name in names:
        points, _ = artifacts.metric_history(session, job_id=job_id, name=name, limit=2000, cursor=None)
        xy = [(float(p.step if p.step is not None else i), p.value) for i, p in enumerate(points)]
        found[name] = charts.line_chart(name, xy)
    return found


@dataclass
class SweepView:
    detail: SweepDetail
    children: list[SweepChild]
    sort: str
    descending: bool
    charts: dict[str, Markup] = field(default_factory=dict)
    parallel: Markup | None = None


SORTS = ("metric", "index", "status")


def sweep_view(detail: SweepDetail, *, sort: str, descending: bool | None) -> SweepView:
    """Children sorted (missing metrics last), and the charts against each searched parameter."""
    maximize = detail.goal == "maximize"
    down = (maximize and sort == "metric") if descending is None else descending
    if sort == "metric":
        scored = [c for c in detail.children if c.primary_metric is not None]
        unscored = [c for c in detail.children if c.primary_metric is None]
        children = sorted(scored, key=lambda c: c.primary_metric or 0.0, reverse=down) + unscored
    elif sort == "status":
        children = sorted(detail.children, key=lambda c: c.status.value, reverse=down)
    else:
        children = sorted(detail.children, key=lambda c: c.index, reverse=down)
    trials = [
        charts.Trial(index=c.index, params={k: _plottable(v) for k, v in c.params.items()}, metric=c.primary_metric,
                     best=c.job_id == detail.best_job_id, stopped=c.early_terminated is not None)
        for c in detail.children
    ]
    logs = {flag: space.type == "loguniform" for flag, space in detail.search_space.items()}
    view = SweepView(detail=detail, children=children, sort=sort, descending=down)
    if any(t.metric is not None for t in trials):
        view.charts = {flag: charts.scatter(detail.primary_metric, flag, trials, log=logs[flag]) for flag in logs}
        view.parallel = charts.parallel(detail.primary_metric, list(logs), logs, trials)
    return view


def _plottable(value: Any) -> float | str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return float(value)


def confusion(model: str, version: Any) -> Markup:
    """A model version's stored evaluation as a confusion-matrix chart."""
    evaluation = version.evaluation or {}
    title = (f"Confusion matrix of {model} v{version.version} on {evaluation.get('dataset')}: "
             f"accuracy {number(evaluation.get('accuracy'))}")
    return charts.confusion_matrix(evaluation.get("labels", []), evaluation.get("confusion_matrix", []), title=title)
