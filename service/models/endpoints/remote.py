"""Endpoints served by a backend's web services (Azure ML): deploy, follow the state, forward scoring.

Each version of an endpoint is its own service (`service_name`), so moving to another version
deploys the new one beside the old, switches forwarding once it is ready and only then deletes
the old one: no request fails during the switch. Backend calls run in threads and never while a
database transaction is open; the endpoint's status changes only through `endpoints.mark`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from service.backends.base import ServeRequest, Serves, ServiceState
from service.core.errors import BackendError, Conflict
from service.core.settings import Settings
from service.db.engine import Database
from service.models.endpoints import service as endpoints
from service.models.endpoints.lifecycle import EndpointStatus

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)
T = TypeVar("T")

# A service being deleted is first left this long to answer the requests already sent to it.
DRAIN_SECONDS = 60.0
# A deploy makes a few SDK calls (read the model, the environment, deploy), each bounded by the call timeout.
CALLS_PER_DEPLOY = 4
MAX_RETRY_SECONDS = 30.0


class ForwardFailed(Exception):
    """Scoring could not be forwarded, or the service refused it: `http_status` is runyard's answer."""

    def __init__(self, http_status: int, detail: str) -> None:
        super().__init__(detail)
        self.http_status = http_status
        self.detail = detail


def service_name(endpoint: str, version: int) -> str:
    """The service of one endpoint version: lowercase letters, digits and dashes, 3..32 characters,
    starting with a letter (Azure's web service and online endpoint rule); a hash keeps names apart."""
    digest = hashlib.sha256(endpoint.encode()).hexdigest()[:6]
    suffix = f"-{digest}-v{version}"
    slug = re.sub(r"[^a-z0-9]+", "-", endpoint.lower()).strip("-")
    if not slug or not slug[0].isalpha():
        slug = f"ry-{slug}".rstrip("-")
    return f"{slug[: 32 - len(suffix)].rstrip('-')}{suffix}"


@dataclass
class Remote:
    """One endpoint served by a backend: the service runyard forwards to, and a version being switched to."""

    name: str
    model: str
    version: int
    target: str
    service: str
    state: EndpointStatus
    backend_state: str | None = None
    error: str | None = None
    scoring_uri: str | None = None
    key: str | None = None
    pending_version: int | None = None
    switch_error: str | None = None
    inflight: dict[str, int] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None
    switching: asyncio.Task[None] | None = None
    # Deploy calls in the SDK's thread: cancelling the task that awaits one does not stop it.
    deploys: set[asyncio.Future[None]] = field(default_factory=set)


class RemoteEndpoints:
    """Owns every endpoint served on an inference target; `Deployments` hands them here."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self._live: dict[str, Remote] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None
        self.poll_seconds = settings.poll_interval_seconds

    def get(self, name: str) -> Remote | None:
        return self._live.get(name)

    async def _db(self, fn: Callable[..., T], **kwargs: Any) -> T:
        def work() -> T:
            with self.db.write_session() as session:
                return fn(session, **kwargs)

        return await asyncio.to_thread(work)

    def launch(self, request: ServeRequest, backend: Serves, *, model: str, version: int,
               pending: tuple[ServeRequest, int] | None = None) -> None:
        """Deploy (or adopt) the version's service in the background; the endpoint becomes ready or failed.

        `pending`: a switch a PATCH started before a restart, taken up again once the endpoint is ready.
        """
        remote = Remote(request.endpoint, model, version, request.target, request.service, EndpointStatus.CREATING)
        self._live[remote.name] = remote
        remote.task = asyncio.create_task(self._bring_up(remote, request, backend, pending))

    async def _bring_up(self, remote: Remote, request: ServeRequest, backend: Serves,
                        pending: tuple[ServeRequest, int] | None = None) -> None:
        try:
            state = await self._follow(request, backend, remote)
        except Exception as exc:  # a bug, not Azure: the endpoint says so instead of staying `creating`
            log.exception("following %s failed", request.service)
            state = ServiceState("failed", "Unknown", error=f"runyard could not follow the deployment: {exc!r}")
        if state.state != "ready":
            remote.state, remote.error = EndpointStatus.FAILED, state.error
            await self._db(endpoints.mark, name=remote.name, status=EndpointStatus.FAILED, error=state.error)
            return
        remote.scoring_uri, remote.key, remote.state = state.scoring_uri, state.key, EndpointStatus.READY
        if not await self._db(endpoints.mark, name=remote.name, status=EndpointStatus.READY):
            await self._undeploy(backend, remote.target, remote.service)  # deleted while it was deploying
            return
        if pending is not None:
            self._begin_switch(remote, *pending, backend)
        await self._watch(remote, backend)

    async def _watch(self, remote: Remote, backend: Serves) -> None:
        """Read a ready endpoint's service again now and then: the API says when it broke or was deleted.

        A service that failed (or is gone) ends the endpoint `failed` with the reason; transient read
        errors change nothing; a new key or scoring URI (regenerated in the workspace) is taken over.
        """
        while True:
            await asyncio.sleep(self.settings.endpoint_recheck_seconds)
            if remote.pending_version is not None:
                continue  # a switch is reading its own service; the current one is read after it
            service = remote.service
            try:
                state = await asyncio.to_thread(backend.service_state, remote.target, service)
            except BackendError as exc:
                if exc.transient:
                    log.info("re-reading %s failed; will try again: %s", service, exc.message)
                    continue
                state = ServiceState("failed", "Gone", error=exc.message)
            if service != remote.service:
                continue  # switched meanwhile: this answer is about the old service
            remote.backend_state = state.backend_state
            if state.state == "ready":
                remote.scoring_uri, remote.key = state.scoring_uri, state.key
            elif state.state == "failed":
                error = f"the service stopped working after it was ready: {state.error}"
                remote.state, remote.error, remote.scoring_uri = EndpointStatus.FAILED, error, None
                await self._db(endpoints.mark, name=remote.name, status=EndpointStatus.FAILED, error=error)
                return

    async def _follow(self, request: ServeRequest, backend: Serves, remote: Remote) -> ServiceState:
        """Deploy, then read the state until it is ready or failed; transient faults are retried."""
        delay = self.poll_seconds
        while True:
            call = asyncio.ensure_future(asyncio.to_thread(backend.deploy, request))
            remote.deploys.add(call)
            call.add_done_callback(_settled(remote.deploys))
            try:
                await asyncio.shield(call)  # a DELETE meanwhile waits for the call (see `remove`)
                break
            except BackendError as exc:
                if not exc.transient:
                    return ServiceState("failed", "NotDeployed", error=f"the deployment was refused: {exc.message}")
                log.warning("deploying %s failed; will retry: %s", request.service, exc.message)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_SECONDS)
        while True:
            try:
                state = await asyncio.to_thread(backend.service_state, request.target, request.service)
            except BackendError as exc:
                if not exc.transient:
                    return ServiceState("failed", "Unknown", error=exc.message)
                log.warning("reading %s failed; will retry: %s", request.service, exc.message)
                await asyncio.sleep(min(self.poll_seconds * 4, MAX_RETRY_SECONDS))
                continue
            if remote.service == request.service:
                remote.backend_state = state.backend_state
            if state.state != "creating":
                return state
            await asyncio.sleep(self.poll_seconds)

    async def score(self, remote: Remote, body: dict[str, Any]) -> dict[str, Any]:
        """Forward the rows to the service's scoring URI with its key; its answer as runyard's."""
        # httpx (with the rich and pygments its CLI loads, ~0.35 s) only once something is forwarded:
        # most services never have a remote endpoint, and every start paid for it.
        import httpx

        uri, key, version = remote.scoring_uri, remote.key, remote.version
        if uri is None:
            raise ForwardFailed(503, f"endpoint {remote.name!r} is {remote.state.value}")
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        remote.inflight[uri] = remote.inflight.get(uri, 0) + 1
        try:
            reply = await self._client().post(uri, content=json.dumps(body, separators=(",", ":")), headers=headers)
        except httpx.TimeoutException as exc:
            raise ForwardFailed(504, f"the web service of endpoint {remote.name!r} gave no answer within "
                                     f"{self.settings.endpoint_predict_timeout_seconds:g}s") from exc
        except httpx.HTTPError as exc:
            raise ForwardFailed(503, f"the web service of endpoint {remote.name!r} could not be reached: "
                                     f"{type(exc).__name__}") from exc
        finally:
            remote.inflight[uri] -= 1
        return {**_answer(remote.name, reply), "version": version}

    def _client(self) -> httpx.AsyncClient:
        import httpx

        if self._http is None:
            timeout = httpx.Timeout(self.settings.endpoint_predict_timeout_seconds, connect=10.0)
            self._http = httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False)
        return self._http

    async def switch(self, request: ServeRequest, backend: Serves, *, version: int) -> None:
        """Deploy `version` beside the current service; forwarding moves once it is ready (in the background)."""
        remote = self._live.get(request.endpoint)
        if remote is None or remote.state is not EndpointStatus.READY:
            state = remote.state.value if remote else "unknown"
            raise Conflict(f"endpoint {request.endpoint!r} is {state}; only a ready endpoint can change version")
        if version == remote.version:
            return
        if remote.pending_version is not None:
            raise Conflict(f"endpoint {remote.name!r} is already moving to version {remote.pending_version}")
        # Stored first: a restart before the switch ends takes it up again instead of forgetting it
        # (and leaving the new version's service running, unused, in the workspace).
        await self._db(endpoints.set_pending, name=remote.name, version=version)
        self._begin_switch(remote, request, version, backend)

    def _begin_switch(self, remote: Remote, request: ServeRequest, version: int, backend: Serves) -> None:
        remote.pending_version, remote.switch_error = version, None
        remote.switching = self._spawn(self._switch(remote, request, backend, version))

    async def _switch(self, remote: Remote, request: ServeRequest, backend: Serves, version: int) -> None:
        try:
            state = await self._follow(request, backend, remote)
            if state.state != "ready":
                remote.switch_error = f"version {version} could not be served ({state.error}); " \
                                      f"the endpoint keeps serving version {remote.version}"
                await self._db(endpoints.set_pending, name=remote.name, version=None)
                await self._undeploy(backend, request.target, request.service)
                return
            await self._db(endpoints.set_version, name=remote.name, version=version)
            old_service, old_uri = remote.service, remote.scoring_uri
            remote.service, remote.scoring_uri, remote.key, remote.version = (
                request.service, state.scoring_uri, state.key, version)
            remote.backend_state = state.backend_state
        finally:
            remote.pending_version = None
        await self._drain(remote, old_uri)
        await self._undeploy(backend, remote.target, old_service)

    async def _drain(self, remote: Remote, uri: str | None) -> None:
        """Wait (bounded) for the requests already forwarded to `uri` to be answered."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_SECONDS
        while uri is not None and remote.inflight.get(uri, 0) > 0 and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if uri is not None:
            remote.inflight.pop(uri, None)

    async def remove(self, name: str, backend: Serves | None) -> None:
        """Stop following the endpoint and delete its services (the row is already gone)."""
        remote = self._live.pop(name, None)
        if remote is None:
            return
        services = [remote.service]
        if remote.pending_version is not None:
            services.append(service_name(name, remote.pending_version))
        for task in (remote.task, remote.switching):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if backend is None:
            return
        if remote.deploys:
            # A deploy already in the SDK's thread would create its service after a delete made now:
            # delete once it has returned (in the background: the endpoint is gone for the API already).
            self._spawn(self._undeploy_after(set(remote.deploys), backend, remote.target, services))
            return
        for service in services:
            await self._undeploy(backend, remote.target, service)

    async def _undeploy_after(self, calls: set[asyncio.Future[None]], backend: Serves, target: str,
                              services: list[str]) -> None:
        await asyncio.wait(calls, timeout=self.settings.azureml_call_timeout_seconds * CALLS_PER_DEPLOY)
        for service in services:
            await self._undeploy(backend, target, service)

    async def _undeploy(self, backend: Serves, target: str, service: str) -> None:
        try:
            await asyncio.to_thread(backend.undeploy, target, service)
        except BackendError as exc:
            log.warning("deleting web service %s failed (left in the workspace): %s", service, exc.message)

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def stop(self) -> None:
        """Stop following; the services keep running (a restart adopts them)."""
        for remote in list(self._live.values()):
            if remote.task is not None:
                remote.task.cancel()
        for task in list(self._background):
            task.cancel()
        self._live.clear()
        if self._http is not None:
            await self._http.aclose()


def _settled(calls: set[asyncio.Future[None]]) -> Callable[[asyncio.Future[None]], None]:
    """Forget a finished deploy call; its error was seen by whoever awaited it, or matters to no one."""
    def done(call: asyncio.Future[None]) -> None:
        calls.discard(call)
        if not call.cancelled():
            call.exception()  # retrieved: no "exception was never retrieved" for an abandoned call

    return done


def _answer(name: str, reply: httpx.Response) -> dict[str, Any]:
    """The service's reply as a score result, or the `ForwardFailed` it means."""
    text = " ".join(reply.text.split())[:300]
    if reply.status_code in (401, 403):
        raise ForwardFailed(502, f"the web service of endpoint {name!r} refused runyard's key "
                                 f"(HTTP {reply.status_code}); the key may have been regenerated")
    if reply.status_code == 413:
        raise ForwardFailed(413, f"the web service of endpoint {name!r} refused a body this large")
    if 400 <= reply.status_code < 500:
        raise ForwardFailed(422, f"the web service of endpoint {name!r} refused the rows "
                                 f"(HTTP {reply.status_code}): {text}")
    if reply.status_code != 200:
        raise ForwardFailed(502, f"the web service of endpoint {name!r} failed (HTTP {reply.status_code}): {text}")
    try:
        data = reply.json()
    except ValueError as exc:
        raise ForwardFailed(502, f"the web service of endpoint {name!r} answered with no JSON: {text}") from exc
    if isinstance(data, str):  # score.py returned a JSON string (the server encodes it once more)
        with contextlib.suppress(ValueError):
            data = json.loads(data)
    if isinstance(data, list):  # the tutorial's score.py returns the predictions alone
        return {"predictions": data}
    if isinstance(data, dict) and "error" in data:
        # A well-formed body the model cannot take (its width): a conflict with what the endpoint serves, as locally.
        raise ForwardFailed(409, f"the model could not score these rows: {data['error']}")
    if isinstance(data, dict) and isinstance(data.get("predictions"), list):
        return {k: data[k] for k in ("predictions", "probabilities", "classes") if k in data}
    raise ForwardFailed(502, f"the web service of endpoint {name!r} answered without predictions: {text}")
