"""The endpoints this process serves: their worker pools, brought up, switched and stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sqlmodel import Session

from service.backends.base import ServeRequest
from service.backends.targets import Backends
from service.core.errors import Conflict
from service.core.settings import Settings
from service.db.engine import Database
from service.db.tables import ModelVersion
from service.models.endpoints import service as endpoints
from service.models.endpoints.batcher import BatchLimits, Pool, PoolClosed
from service.models.endpoints.lifecycle import EndpointStatus
from service.models.endpoints.linear import LinearModel
from service.models.endpoints.remote import RemoteEndpoints, service_name
from service.models.endpoints.worker_client import Worker, WorkerFailed, WorkerSpec

log = logging.getLogger(__name__)
T = TypeVar("T")


class NotServing(Exception):
    """The endpoint exists but cannot score now; `state` and `reason` say why."""

    def __init__(self, state: str, reason: str | None) -> None:
        super().__init__(reason)
        self.state = state
        self.reason = reason


@dataclass
class Deployment:
    """What this process serves for one endpoint. `state` mirrors the row's status for the scoring
    path (which reads no database); only lifecycle.set_status changes the row's."""

    name: str
    model: str
    version: int
    state: EndpointStatus
    error: str | None = None
    pool: Pool | None = None
    task: asyncio.Task[None] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Deployments:
    """Owns every local endpoint's pool; routes reach it through `app.state.endpoints`."""

    def __init__(self, settings: Settings, db: Database, backends: Backends | None = None) -> None:
        self.settings = settings
        self.db = db
        self.backends = backends or Backends([])
        # Endpoints on an inference target (Azure ML web services): deployed and followed there.
        self.remote = RemoteEndpoints(settings, db)
        self._live: dict[str, Deployment] = {}
        self._background: set[asyncio.Task[None]] = set()
        self.limits = BatchLimits(
            max_rows=settings.endpoint_batch_max_rows,
            window_seconds=settings.endpoint_batch_window_ms / 1000,
            call_timeout_seconds=settings.endpoint_predict_timeout_seconds,
            inline_max_rows=settings.endpoint_inline_max_rows,
        )

    async def _db(self, fn: Callable[..., T], **kwargs: Any) -> T:
        def work() -> T:
            with self.db.write_session() as session:
                return fn(session, **kwargs)

        return await asyncio.to_thread(work)

    async def start(self) -> None:
        """Bring back every endpoint that was not failed (they are `creating` until loaded)."""
        rows = await self._db(endpoints.to_serve)
        for row in rows:
            if row.compute != endpoints.LOCAL:
                await self._restart_remote(row.name, row.compute, row.model_name, row.model_version,
                                           row.pending_version)
                continue
            with self.db.session() as session:
                try:
                    path = endpoints.model_file(
                        endpoints.model_version(session, model=row.model_name, version=row.model_version)
                    )
                except Exception as exc:  # noqa: BLE001 - recorded on the endpoint, never stops the start
                    await self._db(endpoints.mark, name=row.name, status=EndpointStatus.FAILED, error=str(exc))
                    continue
            self.launch(row.name, row.model_name, row.model_version, path, row.replicas)

    async def _restart_remote(self, name: str, target: str, model: str, version: int, pending: int | None) -> None:
        """Follow the endpoint's service again (the deploy adopts the one already in the workspace), and
        the version a PATCH was moving it to."""
        try:
            backend = self.backends.for_serving(target)
            request = await asyncio.to_thread(self._serve_request, name, target, model, version)
        except Exception as exc:  # noqa: BLE001 - recorded on the endpoint, never stops the start
            await self._db(endpoints.mark, name=name, status=EndpointStatus.FAILED, error=str(exc))
            return
        switch: tuple[ServeRequest, int] | None = None
        if pending is not None:
            try:
                switch = (await asyncio.to_thread(self._serve_request, name, target, model, pending), pending)
            except Exception as exc:  # noqa: BLE001 - the endpoint keeps its version; the switch is dropped
                log.warning("endpoint %s: the switch to version %s is dropped: %s", name, pending, exc)
                await self._db(endpoints.set_pending, name=name, version=None)
        self.remote.launch(request, backend, model=model, version=version, pending=switch)

    def _serve_request(self, name: str, target: str, model: str, version: int) -> ServeRequest:
        with self.db.session() as session:
            row = endpoints.model_version(session, model=model, version=version)
            return self.serve_request(session, name, target, row)

    def serve_request(self, session: Session, name: str, target: str, model: ModelVersion) -> ServeRequest:
        """What the backend of `target` is given to serve `model` as endpoint `name`."""
        return endpoints.serve_request(
            session, endpoint=name, target=target, model=model, service=service_name(name, model.version),
            source_dir=self.settings.data_dir / "endpoints" / name / f"azure-v{model.version}",
        )

    async def stop(self) -> None:
        await self.remote.stop()
        for deployment in list(self._live.values()):
            await self._discard(deployment, drain=False)
        for task in list(self._background):
            task.cancel()

    def launch(self, name: str, model: str, version: int, path: Path, replicas: int) -> None:
        """Start the endpoint's workers in the background; it becomes ready or failed."""
        deployment = Deployment(name, model, version, EndpointStatus.CREATING)
        self._live[name] = deployment
        deployment.task = asyncio.create_task(self._bring_up(deployment, path, replicas))

    async def _bring_up(self, deployment: Deployment, path: Path, replicas: int) -> None:
        try:
            pool = await self._pool(deployment, path, deployment.version, replicas)
        except WorkerFailed as exc:
            deployment.state, deployment.error = EndpointStatus.FAILED, exc.reason
            await self._db(endpoints.mark, name=deployment.name, status=EndpointStatus.FAILED, error=exc.reason)
            return
        # Served before the row says ready, so whoever reads `ready` can score at once.
        deployment.pool, deployment.state = pool, EndpointStatus.READY
        if not await self._db(endpoints.mark, name=deployment.name, status=EndpointStatus.READY):
            deployment.pool = None
            await pool.close(drain=False)  # deleted while loading

    async def _pool(self, deployment: Deployment, path: Path, version: int, replicas: int) -> Pool:
        spec = WorkerSpec(
            model_path=path,
            memory_limit_mb=self.settings.endpoint_memory_limit_mb,
            load_timeout_seconds=self.settings.endpoint_load_timeout_seconds,
            log_path=self.settings.data_dir / "endpoints" / deployment.name / f"v{version}.log",
        )
        started = await asyncio.gather(*(Worker.start(spec) for _ in range(replicas)), return_exceptions=True)
        workers = [w for w in started if isinstance(w, Worker)]
        failures = [e for e in started if isinstance(e, BaseException)]
        if failures:
            await asyncio.gather(*(w.stop() for w in workers))
            raise failures[0]
        inline = await asyncio.to_thread(_inline, workers[0]) if self.limits.inline_max_rows else None
        return Pool(
            workers,
            version=version,
            limits=self.limits,
            respawn=lambda: Worker.start(spec),
            on_broken=lambda reason: self._spawn(self._broken(deployment, reason)),
            inline=inline,
        )

    async def _broken(self, deployment: Deployment, reason: str) -> None:
        pool, deployment.pool = deployment.pool, None
        deployment.state, deployment.error = EndpointStatus.FAILED, reason
        await self._db(endpoints.mark, name=deployment.name, status=EndpointStatus.FAILED, error=reason)
        if pool is not None:
            await pool.close(drain=False)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def get(self, name: str) -> Deployment | None:
        return self._live.get(name)

    async def score(self, name: str, rows: Any, *, probabilities: bool) -> tuple[Deployment, int, dict[str, Any]]:
        """Score on the endpoint's current pool; a pool retired meanwhile hands over to its successor."""
        while True:
            deployment = self._live.get(name)
            if deployment is None:
                raise KeyError(name)
            pool = deployment.pool
            if pool is None:
                raise NotServing(deployment.state.value, deployment.error)
            try:
                return deployment, pool.version, await pool.score(rows, probabilities=probabilities)
            except PoolClosed:
                continue

    async def switch(self, name: str, path: Path, version: int, replicas: int) -> None:
        """Serve `version` instead: start its workers, swap, then drain and stop the old ones."""
        deployment = self._live.get(name)
        if deployment is None or deployment.pool is None:
            status = deployment.state.value if deployment else "unknown"
            raise Conflict(f"endpoint {name!r} is {status}; only a ready endpoint can change version")
        async with deployment.lock:
            if deployment.pool is None or deployment.pool.version == version:
                return
            try:
                fresh = await self._pool(deployment, path, version, replicas)
            except WorkerFailed as exc:
                raise Conflict(
                    f"version {version} could not be served ({exc.reason}); "
                    f"the endpoint keeps serving version {deployment.version}"
                ) from exc
            await self._db(endpoints.set_version, name=name, version=version)
            old, deployment.pool, deployment.version = deployment.pool, fresh, version
            if old is not None:
                self._spawn(old.close(drain=True))

    async def remove(self, name: str) -> None:
        deployment = self._live.pop(name, None)
        if deployment is not None:
            await self._discard(deployment, drain=False)

    async def _discard(self, deployment: Deployment, *, drain: bool) -> None:
        self._live.pop(deployment.name, None)
        if deployment.task is not None and not deployment.task.done():
            deployment.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await deployment.task
        pool, deployment.pool = deployment.pool, None
        if pool is not None:
            await pool.close(drain=drain)


def _inline(worker: Worker) -> LinearModel | None:
    """The service's own copy of the worker's model, if the worker exported one that checks out."""
    if worker.exported is None:
        return None
    header, parameters = worker.exported
    model = LinearModel.rebuild(header, parameters, worker.info.classes)
    if model is None:
        log.warning("the exported parameters of model worker %s do not reproduce its answers: scored there only",
                    worker.pid)
    return model
