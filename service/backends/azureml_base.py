"""What the two Azure ML backends share, whichever SDK serves a cluster. No SDK is imported here.

`azureml.py` (azureml-core, v1) and `azureml_v2.py` (azure-ai-ml, v2) differ in how they reach
Azure: how a run is submitted, listed and read, cancelled and downloaded from. The rest is the
same and lives here: the SDK call in its own thread, the lazily connected workspace with its
clusters, and the poll that rations detail reads (finished runs first, then changed ones, then
stale ones, at most `RUNYARD_AZUREML_POLL_DETAIL_BUDGET` a cycle), gives up on a finished run
whose results cannot be read, and reports a run only when something changed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from service.backends.base import ComputeInfo, MetricSample, RunRef, RunUpdate, ServeRequest, Serves, ServiceState
from service.core.clock import utcnow
from service.core.errors import BackendError
from service.core.rundir import LOG_NAME, RunDir
from service.core.settings import AzureComputeSpec, Settings
from service.core.states import JobStatus

log = logging.getLogger(__name__)
T = TypeVar("T")
S = TypeVar("S")

# Tags runyard puts on what it makes in Azure: the job a run or job belongs to, and the run and
# path a model was registered from (a retried registration finds it instead of adding a version).
JOB_TAG = "runyard_job_id"
MODEL_TAG = "runyard_registration"
# HTTP answers that say "try again later"; everything else from Azure is definitive.
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504, 530})
RECONNECT_SECONDS = 10.0
# What a cluster's provisioning_state says, in the words GET /v1/compute uses for `local`.
COMPUTE_STATES = {"succeeded": "ready", "creating": "provisioning", "updating": "provisioning",
                  "failed": "failed", "canceled": "failed", "deleting": "deleting"}
# Cluster states in which jobs wait rather than being submitted.
WAIT_FOR_COMPUTE = frozenset({"connecting", "provisioning"})
COMPUTE_RETRY_SECONDS = 30.0
# The poller waits 120 s for a poll; stop starting detail reads well before that.
POLL_DEADLINE_SECONDS = 90.0
NO_DETAILS = 3  # the priority of a run that needs only its status this cycle
FINAL_MARK = "azureml_final"
# A finished run whose final metrics, log, files or details cannot be read for this long ends
# `failed` with the reason, rather than staying active for ever.
FINAL_READ_GIVE_UP_SECONDS = 600.0


class AzureNotFound(BackendError):
    """Azure answered that the thing asked for does not exist (a definitive answer)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, transient=False)


class AzureCallAbandoned(BackendError):
    """The call gave no answer in time; it may still complete in its thread."""

    def __init__(self, message: str) -> None:
        super().__init__(message, transient=True)


def call_in_thread(
    what: str, timeout: float, translate: Callable[[BaseException, str], BackendError], fn: Callable[..., T],
    *args: Any, **kwargs: Any,
) -> T:
    """Run one SDK call in its own daemon thread; give up after `timeout` seconds.

    Many SDK calls have no timeout of their own (v1's compute and environment calls use bare
    `requests`; both SDKs retry and sleep inside a call). A daemon thread, unlike a
    ThreadPoolExecutor worker, cannot hold up the process at exit when such a call hangs; the
    abandoned call finishes in the background. The SDK's exceptions come out through `translate`.
    """
    result: Future[T] = Future()

    def work() -> None:
        try:
            result.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to the caller, translated there
            result.set_exception(exc)

    threading.Thread(target=work, name=f"azureml: {what}", daemon=True).start()
    if not wait([result], timeout).done:
        log.warning("Azure ML call %r gave no answer within %.0fs; abandoned", what, timeout)
        raise AzureCallAbandoned(f"{what}: no answer from Azure ML within {timeout:g}s")
    error = result.exception()
    if error is None:
        return result.result()
    if isinstance(error, BackendError):
        raise error
    raise translate(error, what) from error


@dataclass(frozen=True)
class ServicePrincipal:
    tenant_id: str
    client_id: str
    secret: str


@dataclass(frozen=True)
class ManagedIdentity:
    client_id: str | None  # a user-assigned identity; None: the system-assigned one


def azure_identity(settings: Settings) -> ServicePrincipal | ManagedIdentity:
    """Service principal from the AZURE_* variables, else managed identity; never interactive."""
    tenant, client, secret = settings.azure_tenant_id, settings.azure_client_id, settings.azure_client_secret
    if tenant and client and secret:
        return ServicePrincipal(tenant.get_secret_value(), client.get_secret_value(), secret.get_secret_value())
    if tenant or secret:
        raise BackendError("set all of AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET for a "
                           "service principal, or none of them for a managed identity", transient=False)
    return ManagedIdentity(client.get_secret_value() if client else None)


@dataclass
class ComputeState:
    """What runyard knows about one declared cluster."""

    spec: AzureComputeSpec
    state: str = "connecting"
    target: Any = None
    current_nodes: int | None = None
    error: str | None = None
    checked_at: float = float("-inf")


class AzureWorkspaceBase(Generic[S]):
    """A workspace connected on first use (retried at most every few seconds), and its clusters.

    `S` is the SDK's bundle of classes (`AzureSdk`, `V2Sdk`), imported on first use; subclasses
    say how to connect, call and attach a cluster.
    """

    def __init__(self, settings: Settings, *, load_sdk: Callable[[], S], clock: Callable[[], float]) -> None:
        self.settings = settings
        self.timeout = settings.azureml_call_timeout_seconds
        self._load_sdk = load_sdk
        self._sdk: S | None = None
        self._clock = clock
        self._lock = threading.Lock()
        self._connection: Any = None
        self._connect_error: BackendError | None = None
        self._retry_at = float("-inf")
        self.compute = {spec.name: ComputeState(spec) for spec in settings.azureml_compute_targets}

    @property
    def sdk(self) -> S:
        """The SDK classes, imported on first use."""
        if self._sdk is None:
            self._sdk = self._load_sdk()
        return self._sdk

    def call(self, what: str, fn: Callable[..., Any], *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        """One SDK call with its own timeout; SDK errors come out as `BackendError`."""
        raise NotImplementedError

    def connection(self) -> Any:
        """The connected workspace (v1) or client (v2); after a failure, retried at most every few seconds."""
        with self._lock:
            if self._connection is not None:
                return self._connection
            if self._connect_error is not None and self._clock() < self._retry_at:
                raise self._connect_error
            try:
                self._connection = self.call("connect to the Azure ML workspace", self._connect)
            except BackendError as exc:
                self._connect_error, self._retry_at = exc, self._clock() + RECONNECT_SECONDS
                raise
            self._connect_error = None
            return self._connection

    def _connect(self) -> Any:
        raise NotImplementedError

    def ensure_compute(self) -> bool:
        """Attach each declared cluster, creating missing ones; True once all are attached.

        Never waits for provisioning (minutes; v1's `wait_for_completion` sleeps up to 25).
        """
        for state in self.compute.values():
            if state.target is not None:
                continue
            try:
                self._ensure_one(state)
            except BackendError as exc:
                state.state, state.error = "error", exc.message
                log.warning("compute target %s is not usable: %s", state.spec.name, exc.message)
        return all(state.target is not None for state in self.compute.values())

    def _ensure_one(self, state: ComputeState) -> None:
        raise NotImplementedError

    def refresh_compute(self, state: ComputeState, *, force: bool = False) -> None:
        """Read the cluster's provisioning state and node count, at most every refresh interval."""
        raise NotImplementedError

    def refresh_seconds(self) -> float:
        return max(self.settings.azureml_detail_refresh_seconds, 5.0)

    def _due(self, state: ComputeState, force: bool) -> bool:
        """Whether a cluster's state is to be read now (and if so, stamp the read)."""
        if state.target is None or (not force and self._clock() - state.checked_at < self.refresh_seconds()):
            return False
        state.checked_at = self._clock()
        return True


@dataclass
class Seen:
    status: str
    read_at: float


@dataclass(frozen=True)
class Details:
    """One detailed read of a run: what is new since the stored cursor, and its times and error."""

    metrics: tuple[MetricSample, ...]
    cursor: int
    files: tuple[str, ...]
    started_at: datetime | None = None
    ended_at: datetime | None = None
    error: str | None = None  # why a failed run failed


class AzureBackendBase:
    """The Backend protocol's Azure half that does not depend on the SDK.

    Subclasses list runs (`_observe`), read one run's details (`_details`), send a cancel
    (`_send_cancel`) and download a file (`_download`); this class decides which runs to read
    in a cycle, what to report, when a finished run is done with, and keeps the bookkeeping.
    """

    kind: Literal["local", "amlcompute"] = "amlcompute"
    sdk_label: Literal["v1", "v2"]
    noun = "run"  # what Azure calls a run in this SDK's words
    before_script: frozenset[str]  # statuses before the script runs: nothing to read yet
    serving: Serves  # deploys registered models (web services in v1, online endpoints in v2)

    def __init__(
        self, settings: Settings, workspace: AzureWorkspaceBase[Any], *, clock: Callable[[], float],
        now: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self.workspace = workspace
        self._clock, self._now = clock, now
        self._seen: dict[str, Seen] = {}
        self._reported: dict[str, str] = {}  # run id -> the status last reported with nothing else new
        self._cancels: dict[str, bool] = {}  # run id -> whether a forced cancel was sent
        self._final_failing: dict[str, float] = {}  # run id -> when its final read first failed
        self._poll_lock = threading.Lock()
        self._stop = threading.Event()

    def map_status(self, status: str) -> JobStatus:
        raise NotImplementedError

    # -- serving (the Serves protocol), by the SDK's own deployer in `serving` ---------

    def serving_targets(self) -> Sequence[str]:
        return self.serving.serving_targets()

    def deploy(self, request: ServeRequest) -> None:
        self.serving.deploy(request)

    def service_state(self, target: str, service: str) -> ServiceState:
        return self.serving.service_state(target, service)

    def undeploy(self, target: str, service: str) -> None:
        self.serving.undeploy(target, service)

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        """Connect and attach (or create) the clusters in the background; never blocks startup."""
        threading.Thread(target=self._attach_compute, name=f"azureml-{self.sdk_label}-compute", daemon=True).start()

    def stop(self) -> None:
        """Stop retrying the compute attachment."""
        self._stop.set()

    def _attach_compute(self) -> None:
        """Attach every cluster, then follow the ones still provisioning until they are ready."""
        while not self._stop.is_set():
            if self.workspace.ensure_compute():
                break
            self._stop.wait(COMPUTE_RETRY_SECONDS)
        while not self._stop.is_set():
            waiting = [s for s in self.workspace.compute.values() if s.state in WAIT_FOR_COMPUTE]
            if not waiting:
                return
            for state in waiting:
                self.workspace.refresh_compute(state)
            self._stop.wait(self.workspace.refresh_seconds())

    def targets(self) -> Sequence[str]:
        return list(self.workspace.compute)

    def capacity(self, target: str) -> int | None:
        """0 while the cluster is being attached or provisioned (the tutorial waits for it too); then no
        limit: Azure queues runs itself. A cluster in error takes jobs, which then fail with its reason."""
        state = self.workspace.compute.get(target)
        return 0 if state is not None and state.state in WAIT_FOR_COMPUTE else None

    def describe(self) -> list[ComputeInfo]:
        infos = []
        for state in self.workspace.compute.values():
            self.workspace.refresh_compute(state)
            spec = state.spec
            infos.append(ComputeInfo(
                name=spec.name, kind="amlcompute", state=state.state, vm_size=spec.vm_size,
                min_nodes=spec.min_nodes, max_nodes=spec.max_nodes, current_nodes=state.current_nodes,
                error=state.error, sdk=self.sdk_label,
            ))
        return infos

    # -- polling -------------------------------------------------------------------

    def poll(self, runs: Sequence[RunRef]) -> list[RunUpdate]:
        """Runs' statuses from a listing; metrics, log and files only for runs that need them."""
        if not self._poll_lock.acquire(blocking=False):
            return []  # the previous poll is still running (the poller gave up waiting on it)
        try:
            deadline = self._clock() + POLL_DEADLINE_SECONDS
            updates = self._reconcile(self._observe(runs) if runs else [], deadline)
            active = {r.run_id for r in runs}
            self._seen = {k: v for k, v in self._seen.items() if k in active}
            self._reported = {k: v for k, v in self._reported.items() if k in active}
            self._cancels = {k: v for k, v in self._cancels.items() if k in active}
            self._final_failing = {k: v for k, v in self._final_failing.items() if k in active}
            return updates
        finally:
            self._poll_lock.release()

    def _observe(self, refs: Sequence[RunRef]) -> list[tuple[RunRef, str | None, Any]]:
        """Each ref with its status string and a handle `_details` takes (status None: the run is gone).

        A ref whose status could not be read this cycle is left out; when nothing could be read,
        the error is raised (the poller records it on the jobs and in /readyz).
        """
        raise NotImplementedError

    def _details(self, ref: RunRef, handle: Any, mapped: JobStatus) -> Details:
        """Read one run's new metrics, files, log (and at the end its times and error)."""
        raise NotImplementedError

    def _unreported(self, refs: Sequence[RunRef]) -> None:
        """Report these runs in full once they can be read again (their listing failed)."""
        for ref in refs:
            self._reported.pop(ref.run_id, None)

    def _reconcile(self, observed: list[tuple[RunRef, str | None, Any]], deadline: float) -> list[RunUpdate]:
        """Read details for the runs that need them most, within the per-cycle budget."""
        now = self._clock()
        plan: list[tuple[int, float, RunRef, Any, str, JobStatus]] = []
        updates: list[RunUpdate] = []
        for ref, status, handle in observed:
            if status is None:
                updates.append(self._vanished(ref))
                continue
            seen, mapped = self._seen.get(ref.run_id), self.map_status(status)
            plan.append((self._priority(status, mapped, seen, now), seen.read_at if seen else float("-inf"), ref,
                         handle, status, mapped))
        plan.sort(key=lambda p: (p[0], p[1]))
        budget = self.settings.azureml_poll_detail_budget
        for priority, _, ref, handle, status, mapped in plan:
            update: RunUpdate | None = None
            if priority < NO_DETAILS and budget > 0 and self._clock() < deadline:
                budget -= 1
                update = self._read(ref, handle, status, mapped)
            if update is None and mapped.is_terminal():
                continue  # reported once its final metrics, log and files are in
            if update is None and self._reported.get(ref.run_id) == status:
                continue  # nothing new: with thousands of runs, the poller's writes are the cost
            self._reported[ref.run_id] = status
            updates.append(update or RunUpdate(ref.run_id, status, mapped, metrics_cursor=ref.metrics_cursor,
                                               started_at=self._started(mapped)))
        return updates

    def _priority(self, status: str, mapped: JobStatus, seen: Seen | None, now: float) -> int:
        if mapped.is_terminal():
            return 0
        if status in self.before_script:
            return NO_DETAILS
        if seen is None or seen.status != status:
            return 1
        if now - seen.read_at >= self.settings.azureml_detail_refresh_seconds:
            return 2
        return NO_DETAILS

    def _read(self, ref: RunRef, handle: Any, status: str, mapped: JobStatus) -> RunUpdate | None:
        try:
            got = self._details(ref, handle, mapped)
        except BackendError as exc:
            if mapped.is_terminal():
                return self._final_read_failed(ref, status, exc)
            log.warning("reading %s %s failed; will retry: %s", self.noun, ref.run_id, exc.message)
            return None
        self._final_failing.pop(ref.run_id, None)
        self._seen[ref.run_id] = Seen(status, self._clock())
        started = got.started_at or self._started(mapped)
        if not mapped.is_terminal():
            return RunUpdate(ref.run_id, status, mapped, got.metrics, got.cursor, got.files, started_at=started)
        self._mark_final(ref)
        return RunUpdate(ref.run_id, status, mapped, got.metrics, got.cursor, got.files,
                         error=self._reason(ref, mapped, got.error), started_at=started,
                         ended_at=got.ended_at or self._now())

    def _final_read_failed(self, ref: RunRef, status: str, exc: BackendError) -> RunUpdate | None:
        """Retry a finished run's last read; after FINAL_READ_GIVE_UP_SECONDS end the job with the reason."""
        first = self._final_failing.setdefault(ref.run_id, self._clock())
        if self._clock() - first < FINAL_READ_GIVE_UP_SECONDS:
            log.warning("final read of %s %s failed; will retry: %s", self.noun, ref.run_id, exc.message)
            return None
        log.error("final read of %s %s kept failing for %.0fs; the job fails: %s", self.noun, ref.run_id,
                  self._clock() - first, exc.message)
        self._final_failing.pop(ref.run_id, None)
        self._mark_final(ref)
        return RunUpdate(ref.run_id, status, JobStatus.FAILED, metrics_cursor=ref.metrics_cursor,
                         error=f"the Azure ML {self.noun} ended {status}, but its results could not be read: "
                               f"{exc.message}", ended_at=self._now())

    def _mark_final(self, ref: RunRef) -> None:
        """The run's files no longer change: `fetch_file` serves them from the run folder from now on."""
        state = RunDir(ref.run_dir).state
        state.mkdir(parents=True, exist_ok=True)
        (state / FINAL_MARK).touch()

    def _started(self, mapped: JobStatus) -> datetime | None:
        return self._now() if mapped in (JobStatus.RUNNING, JobStatus.FINALIZING) else None

    def _vanished(self, ref: RunRef) -> RunUpdate:
        status = JobStatus.CANCELED if ref.cancel_requested else JobStatus.FAILED
        return RunUpdate(ref.run_id, "NotFound", status, metrics_cursor=ref.metrics_cursor,
                         error=f"the Azure ML {self.noun} {ref.run_id} no longer exists in the workspace",
                         ended_at=utcnow())

    def _reason(self, ref: RunRef, mapped: JobStatus, error: str | None) -> str | None:
        if mapped is JobStatus.FAILED:
            return error or f"the Azure ML {self.noun} failed without an error message"
        if mapped is JobStatus.CANCELED:
            return "canceled on request" if ref.cancel_requested else \
                f"the Azure ML {self.noun} was canceled outside runyard"
        return None

    # -- requests --------------------------------------------------------------------

    def cancel(self, run: RunRef, *, force: bool) -> None:
        """Cancel once (and once more when forced: Azure has no harder cancel)."""
        sent = self._cancels.get(run.run_id)
        if sent is not None and (sent or not force):
            return
        self._send_cancel(run)
        self._cancels[run.run_id] = force

    def _send_cancel(self, run: RunRef) -> None:
        raise NotImplementedError

    def fetch_file(self, run: RunRef, path: str) -> Path:
        """Download one of the run's files into its run folder (the log is kept there already)."""
        rundir = RunDir(run.run_dir)
        local = rundir.resolve(path)
        if local.is_file() and (path == LOG_NAME or (rundir.state / FINAL_MARK).exists()):
            return local  # a finished run's files no longer change
        local.parent.mkdir(parents=True, exist_ok=True)
        self._download(run, path, local)
        return local

    def _download(self, run: RunRef, path: str, local: Path) -> None:
        """Put the run's file `path` at `local`, whole (written aside, then renamed)."""
        raise NotImplementedError
