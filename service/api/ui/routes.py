"""The dashboard at /ui: pages rendered on the server, refreshed in place by a small script.

Reads call the feature packages' use cases; every change (cancel, register) is made by the page's
script through the JSON API with the session cookie, so each operation keeps one home.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from service.api.auth import ApiKeys, session_of
from service.api.deps import RuntimeDep, SessionDep
from service.api.session import Sessions, clear_cookie, set_cookie
from service.api.ui import views
from service.catalog import routes as catalog_routes
from service.catalog import service as catalog
from service.core.errors import InvalidRequest, RunyardError
from service.core.states import JobStatus
from service.jobs import artifacts
from service.jobs import service as jobs
from service.models import service as registry
from service.sweeps import service as sweeps
from service.sweeps.schemas import SweepStatus

if TYPE_CHECKING:
    from mako.lookup import TemplateLookup

HERE = Path(__file__).parent
STATIC = HERE / "static"
ASSET_VERSION = hashlib.blake2s(
    b"".join(p.read_bytes() for p in sorted(STATIC.iterdir())), digest_size=5
).hexdigest()
PAGE_SIZE = 50
SECURITY_HEADERS = {
    # Everything the pages use comes from this server; nothing inline but the SVG markup.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
                               "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@functools.cache
def _templates() -> TemplateLookup:
    # Mako (and the pygments it loads for its error pages) only when a page is first shown:
    # ~0.13 s that an API-only start-up does not need.
    from mako.lookup import TemplateLookup

    return TemplateLookup(directories=[str(HERE / "templates")], default_filters=["h"], strict_undefined=True,
                          input_encoding="utf-8")


router = APIRouter(prefix="/ui", include_in_schema=False)
P = ParamSpec("P")


@dataclass(frozen=True)
class Viewer:
    """Who is looking: the CSRF token pages embed, and where to go first when signed out."""

    csrf: str
    signed_in: bool
    login: Response | None = None


async def get_viewer(request: Request) -> Viewer:
    keys: ApiKeys = request.app.state.api_keys
    if not keys.enabled:
        return Viewer(csrf="", signed_in=False)
    token = session_of(request)
    if token is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if request.query_params.get("fragment"):  # the page's script: let it reload into the form
            return Viewer("", False, Response(status_code=401))
        return Viewer("", False, RedirectResponse(f"/ui/login?{urlencode({'next': target})}", status_code=303))
    sessions: Sessions = request.app.state.sessions
    return Viewer(csrf=sessions.csrf_token(token), signed_in=True)


ViewerDep = Annotated[Viewer, Depends(get_viewer)]


def render(template: str, viewer: Viewer, *, status_code: int = 200, section: str = "", **context: Any) -> Response:
    """A whole page; `fragment=<def>` in the query renders just that part, for the page's script."""
    page = _templates().get_template(template)
    common = {"csrf": viewer.csrf, "signed_in": viewer.signed_in, "asset_version": ASSET_VERSION,
              "section": section, "views": views}
    fragment = context.pop("fragment", None)
    if fragment:
        html = page.get_def(fragment).render(**common, **context)
    else:
        html = page.render(**common, **context)
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)


def guarded(route: Callable[P, Response]) -> Callable[P, Response]:
    """Pages answer bad input and unknown ids with an HTML page saying so, not problem+json."""

    @functools.wraps(route)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Response:
        try:
            return route(*args, **kwargs)
        except RunyardError as exc:
            viewer = kwargs.get("viewer")
            assert isinstance(viewer, Viewer)
            return render("error.mako", viewer, status_code=exc.status_code, title=exc.title, detail=exc.detail)

    return wrapper


Fragment = Annotated[str | None, Query(pattern="^(rows|live)$")]


@router.get("")
@router.get("/jobs")
@guarded
def jobs_page(
    session: SessionDep, viewer: ViewerDep,
    status: Annotated[str, Query(max_length=16)] = "",
    experiment: Annotated[str, Query(max_length=255)] = "",
    tag: Annotated[str, Query(max_length=1280)] = "",
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
    fragment: Fragment = None,
) -> Response:
    if viewer.login:
        return viewer.login
    try:
        wanted = JobStatus(status) if status else None
    except ValueError:
        raise InvalidRequest(f"status must be one of {', '.join(s.value for s in JobStatus)}") from None
    page, next_cursor = jobs.list_jobs(session, experiment=experiment or None, status=wanted, tag=tag or None,
                                       limit=PAGE_SIZE, cursor=cursor)
    filters = {k: v for k, v in {"status": status, "experiment": experiment, "tag": tag}.items() if v}
    here = {**filters, **({"cursor": cursor} if cursor else {})}
    experiments, _ = ([], None) if fragment else catalog.list_experiments(session, limit=200, cursor=None)
    return render(
        "jobs.mako", viewer, section="jobs", fragment=fragment, items=views.job_rows(session, page),
        status=status, experiment=experiment, tag=tag, statuses=[s.value for s in JobStatus],
        experiments=[e.name for e in experiments], paged=cursor is not None,
        rows_url="/ui?" + urlencode({**here, "fragment": "rows"}),
        next_url="/ui?" + urlencode({**filters, "cursor": next_cursor}) if next_cursor else None,
        first_url="/ui?" + urlencode(filters),
    )


@router.get("/jobs/{job_id}")
@guarded
def job_page(job_id: str, session: SessionDep, runtime: RuntimeDep, viewer: ViewerDep,
             fragment: Fragment = None) -> Response:
    if viewer.login:
        return viewer.login
    job = jobs.get_job(session, job_id=job_id)
    attempts = jobs.attempts_of(session, job_ids=[job.id])[job.id]
    latest = artifacts.latest_metrics(session, job_id=job.id)
    files, _ = artifacts.list_files(job, runtime.job_dir(job), limit=500, cursor=None)
    return render(
        "job.mako", viewer, section="jobs", fragment=fragment, job=job, status=JobStatus(job.status),
        steps=views.timeline(job, attempts), metrics=latest, charts=views.metric_charts(session, job.id, list(latest)),
        files=files, models=registry.versions_of_job(session, job_id=job.id),
        outputs=[f.path for f in files if f.path.startswith("outputs/")],
    )


@router.get("/sweeps")
@guarded
def sweeps_page(session: SessionDep, viewer: ViewerDep,
                cursor: Annotated[str | None, Query(max_length=2048)] = None) -> Response:
    if viewer.login:
        return viewer.login
    page, next_cursor = sweeps.list_sweeps(session, experiment=None, status=None, limit=PAGE_SIZE, cursor=cursor)
    return render("sweeps.mako", viewer, section="sweeps", sweeps=sweeps.describe(session, page),
                  next_url=f"/ui/sweeps?{urlencode({'cursor': next_cursor})}" if next_cursor else None)


@router.get("/sweeps/{sweep_id}")
@guarded
def sweep_page(
    sweep_id: str, session: SessionDep, viewer: ViewerDep,
    sort: Annotated[str, Query(pattern="^(metric|index|status)$")] = "metric",
    order: Annotated[str, Query(pattern="^(asc|desc|)$")] = "",
    fragment: Fragment = None,
) -> Response:
    if viewer.login:
        return viewer.login
    detail = sweeps.detail(session, sweeps.get_sweep(session, sweep_id=sweep_id))
    view = views.sweep_view(detail, sort=sort, descending={"asc": False, "desc": True}.get(order))
    return render("sweep.mako", viewer, section="sweeps", fragment=fragment, view=view, sweep=detail,
                  open=not SweepStatus(detail.status).is_terminal(),
                  live_url=f"/ui/sweeps/{detail.id}?" + urlencode({"sort": sort, "order": order, "fragment": "live"}))


@router.get("/models")
@guarded
def models_page(session: SessionDep, viewer: ViewerDep) -> Response:
    if viewer.login:
        return viewer.login
    names, more = registry.list_models(session, limit=100, cursor=None)
    versions = {m.name: registry.list_versions(session, name=m.name, limit=100, cursor=None)[0] for m in names}
    return render("models.mako", viewer, section="models", models=names, versions=versions, more=more is not None)


@router.get("/compute")
@guarded
def compute_page(session: SessionDep, runtime: RuntimeDep, viewer: ViewerDep) -> Response:
    if viewer.login:
        return viewer.login
    targets = catalog_routes.list_compute(session, runtime).items
    return render("compute.mako", viewer, section="compute", targets=targets)


def _safe_next(target: str | None) -> str:
    # Only our own pages: never an absolute or protocol-relative URL (no open redirect).
    if target and target.startswith("/ui") and not target.startswith("//") and "\\" not in target:
        return target
    return "/ui"


@router.get("/login")
def login_form(request: Request, next: Annotated[str, Query(max_length=2048)] = "/ui") -> Response:
    keys: ApiKeys = request.app.state.api_keys
    if not keys.enabled or session_of(request):
        return RedirectResponse(_safe_next(next), status_code=303)
    return render("login.mako", Viewer("", False), next_url=_safe_next(next), error="")


@router.post("/login")
async def login(request: Request) -> Response:
    """The key arrives in the form body only (never the URL) and is not logged or stored."""
    keys: ApiKeys = request.app.state.api_keys
    form = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=4)
    target = _safe_next((form.get("next") or ["/ui"])[0])
    key_id = keys.key_id((form.get("key") or [""])[0].strip()) if keys.enabled else None
    if key_id is None:
        return render("login.mako", Viewer("", False), status_code=401, next_url=target,
                      error="That key is not valid." if keys.enabled else "No API keys are configured.")
    sessions: Sessions = request.app.state.sessions
    response = RedirectResponse(target, status_code=303)
    set_cookie(response, request, sessions.issue(key_id))
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    token = session_of(request)
    form = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=4)
    sessions: Sessions = request.app.state.sessions
    if token is not None and not sessions.csrf_ok(token, (form.get("csrf") or [""])[0]):
        return render("error.mako", Viewer("", False), status_code=403, title="Forbidden",
                      detail="the sign-out form had no valid CSRF token")
    response = RedirectResponse("/ui/login", status_code=303)
    clear_cookie(response)
    return response


def install(app: FastAPI) -> None:
    """Serve the pages and their two static files; sessions are signed with a key of this process."""
    app.state.sessions = Sessions()
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")
