"""The FastAPI application and its lifespan: migrate, seed, start the background loops."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from service.api import docs_assets, health, openapi, problems, telemetry
from service.api.auth import ApiKeys, LoopbackOnly, is_loopback, require_api_key
from service.api.middleware import BodySizeLimit, RequestObservability
from service.api.openapi import operation_id
from service.api.ui import routes as dashboard
from service.backends.base import Backend, BackgroundWork, ReportsExits
from service.backends.local import LocalBackend
from service.backends.targets import Backends
from service.catalog import routes as catalog_routes
from service.catalog import service as catalog
from service.core.events import Event, Events, Handler, Notice, waker
from service.core.metrics import Metrics
from service.core.settings import Settings, get_settings
from service.db import migrate
from service.db.engine import Database
from service.db.uow import uow
from service.jobs import routes as job_routes
from service.jobs.dispatcher import Dispatcher
from service.jobs.metrics import JobsByStatus
from service.jobs.poller import Poller
from service.jobs.retention import RetentionLoop
from service.models import routes as model_routes
from service.models.endpoints import routes as endpoint_routes
from service.models.endpoints.deployments import Deployments
from service.runtime import Runtime
from service.sweeps import routes as sweep_routes
from service.sweeps.sweeper import Sweeper

log = logging.getLogger(__name__)

DESCRIPTION = """
runyard runs training jobs shaped like Azure ML's `ScriptRunConfig` on a local compute target
or an Azure ML cluster, and serves their status, metrics, logs, output files and registered
model versions. Errors are `application/problem+json` (RFC 9457).
"""

BackendFactory = Callable[[Settings], list[Backend]]
V1_ROUTERS = (
    job_routes.router, model_routes.router, endpoint_routes.router, catalog_routes.router, sweep_routes.router
)


def default_backends(settings: Settings) -> list[Backend]:
    """The local target, always; the Azure ML clusters when a workspace is configured."""
    prestart = settings.data_dir / "prestart" if settings.local_prestart else None
    found: list[Backend] = [LocalBackend(max_concurrent=settings.local_max_concurrent, models_dir=settings.models_dir,
                                         env_passthrough=settings.job_env_passthrough, prestart_dir=prestart)]
    if not settings.azureml_configured:
        return found
    # Imported only here: without a workspace the service never loads an Azure ML SDK, and each
    # SDK's backend is built only when some cluster uses it (azure-ai-ml alone costs seconds).
    if settings.azureml_uses("v1"):
        from service.backends.azureml import AzureMLBackend

        found.append(AzureMLBackend(settings.for_azureml_sdk("v1")))
    if settings.azureml_uses("v2"):
        from service.backends.azureml_v2 import AzureMLV2Backend

        found.append(AzureMLV2Backend(settings.for_azureml_sdk("v2")))
    return found


def subscribe(events: Events, *, metrics: Metrics, dispatcher: Dispatcher, poller: Poller, sweeper: Sweeper) -> None:
    """Who acts on what: each loop wakes for the changes that give it work."""

    def count_submit(notice: Notice) -> None:
        metrics.submits.labels(notice.subject or "").inc()

    wakes: dict[Event, list[Handler]] = {
        Event.JOB_ACCEPTED: [count_submit],
        Event.JOB_QUEUED: [dispatcher.job_queued],
        Event.CANCEL_REQUESTED: [waker(poller.loop.wake), waker(dispatcher.loop.wake)],
        Event.RUN_SUBMITTED: [waker(poller.loop.wake)],
        Event.RUN_EXITED: [waker(poller.loop.wake)],
        # A job that ends frees a slot on its target, and maybe in its sweep.
        Event.JOB_ENDED: [waker(dispatcher.loop.wake), waker(sweeper.loop.wake)],
        Event.SWEEP_CHANGED: [waker(sweeper.loop.wake)],
    }
    for event, handlers in wakes.items():
        for handler in handlers:
            events.subscribe(event, handler)


def create_app(settings: Settings | None = None, *, backends: BackendFactory = default_backends) -> FastAPI:
    """Build the app; `settings` and `backends` are injectable for tests."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        cfg = settings or get_settings()
        for folder in (cfg.data_dir, cfg.runs_dir, cfg.models_dir, cfg.datasets_dir):
            folder.mkdir(parents=True, exist_ok=True)
        migrate.upgrade(cfg.effective_database_url)
        db = Database(cfg.effective_database_url, busy_timeout_ms=cfg.sqlite_busy_timeout_ms)
        with uow(db) as tx:
            catalog.seed_defaults(tx.session, settings=cfg)
        events = Events()
        runtime = Runtime(settings=cfg, db=db, backends=Backends(backends(cfg)), metrics=metrics, events=events)
        metrics.watch(JobsByStatus(db))
        metrics.identify(replica=cfg.effective_replica_id, database=db.engine.dialect.name)
        dispatcher, poller, sweeper = Dispatcher(runtime), Poller(runtime), Sweeper(runtime)
        subscribe(events, metrics=metrics, dispatcher=dispatcher, poller=poller, sweeper=sweeper)
        for backend in runtime.backends.unique():
            if isinstance(backend, ReportsExits):
                backend.set_exit_listener(lambda: events.publish(Event.RUN_EXITED))
            if isinstance(backend, BackgroundWork):
                backend.start()
        app.state.runtime = runtime
        app.state.endpoints = deployments = Deployments(cfg, db, runtime.backends)
        await deployments.start()
        dispatcher.loop.start()
        poller.loop.start()
        sweeper.loop.start()
        retention = RetentionLoop(runtime)
        retention.loop.start()
        log.info("runyard ready: data in %s, targets %s", cfg.data_dir, runtime.backends.targets())
        try:
            yield
        finally:
            await retention.loop.stop()
            await sweeper.loop.stop()
            await dispatcher.loop.stop()
            await poller.loop.stop()
            await deployments.stop()
            for backend in runtime.backends.unique():
                if isinstance(backend, BackgroundWork):
                    backend.stop()
            metrics.unwatch()
            db.dispose()

    app = FastAPI(
        title="runyard", version="0.1.0", summary="Training runs over HTTP, on a laptop or Azure ML.",
        description=DESCRIPTION, lifespan=lifespan,
        # served by docs_assets from installed files (not a CDN), behind a key when asked to
        docs_url=None, redoc_url=None, openapi_url=None,
        # operationId = the route function's name (`submit_job`): what generated clients call their methods
        generate_unique_id_function=operation_id,
    )
    metrics = Metrics()
    problems.install(app)
    cfg = settings or get_settings()
    app.state.api_keys = api_keys = ApiKeys.from_settings(cfg)
    if not api_keys.enabled and not is_loopback(cfg.host):
        raise RuntimeError(f"refusing to serve on {cfg.host} without API keys: set RUNYARD_API_KEYS")
    # Every /v1 route needs a key once keys are configured; health stays open, and metrics and
    # docs too unless the operator asks for a key there (docs/security.md).
    keyed = [Depends(require_api_key)]
    for router in V1_ROUTERS:
        app.include_router(router, dependencies=keyed)
    app.include_router(health.router)
    app.include_router(telemetry.router, dependencies=keyed if cfg.metrics_require_key else [])
    docs_assets.install(app, dependencies=keyed if cfg.docs_require_key else [])
    openapi.refine(app, keys_required=api_keys.enabled,
                   keyed=("/v1/", "/metrics") if cfg.metrics_require_key else ("/v1/",), settings=cfg)
    dashboard.install(app)  # /ui: pages for people; the key (if any) is asked once, then a session cookie
    app.add_middleware(BodySizeLimit, max_bytes=(settings or get_settings()).max_body_bytes)
    if not api_keys.enabled:
        app.add_middleware(LoopbackOnly)
    app.add_middleware(RequestObservability, metrics=metrics)  # outermost: even a 413 gets a request id
    return app
