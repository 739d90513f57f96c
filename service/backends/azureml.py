"""Azure ML compute targets: each run is an azureml-core `ScriptRun` in the workspace.

The SDK itself is reached only through `azureml_sdk` (imports) and `azureml_workspace`
(connection, compute, environments, datasets); this module maps the `Backend` protocol
onto runs: submit, find by tag, poll in batches, cancel, files, model registration.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any, Literal

from service.backends.azureml_progress import (
    append_new_log_text,
    failure_reason,
    flatten_metrics,
    new_samples,
    parse_time,
)
from service.backends.azureml_sdk import AzureCallAbandoned, AzureNotFound, AzureSdk, load_sdk
from service.backends.azureml_serving import AzureServing
from service.backends.azureml_workspace import AzureWorkspace
from service.backends.base import (
    ComputeInfo,
    DatasetInput,
    RegisteredModel,
    RunRef,
    RunUpdate,
    ServeRequest,
    ServiceState,
    SubmitRequest,
)
from service.core.clock import utcnow
from service.core.errors import BackendError
from service.core.rundir import LOG_NAME, RunDir
from service.core.settings import Settings
from service.core.states import JobStatus, from_azure

log = logging.getLogger(__name__)

JOB_TAG = "runyard_job_id"
# Where a run's script output is: the current runtime first, then the legacy one.
REMOTE_LOGS = (LOG_NAME, "azureml-logs/70_driver_log.txt")
# Statuses before the script runs: there is no log or metric to read yet.
BEFORE_SCRIPT = frozenset({"NotStarted", "Unapproved", "Queued", "Preparing", "Provisioning", "Starting"})
# One page of `runs:query` is 500 runs, newest first. The scan reads further pages while the
# experiment has many active runs (a page per 500 beats 500 single reads), then stops; runs
# older than that are read one by one.
LIST_SCAN_LIMIT = 500
# The poller waits 120 s for a poll; stop starting detail reads well before that.
POLL_DEADLINE_SECONDS = 90.0
COMPUTE_RETRY_SECONDS = 30.0
NO_DETAILS = 3  # the priority of a run that needs only its status this cycle
FINAL_MARK = "azureml_final"
# A finished run whose final metrics, log, files or details cannot be read for this long ends
# `failed` with the reason, rather than staying active for ever.
FINAL_READ_GIVE_UP_SECONDS = 600.0
# `run.cancel()` sends its request first, then flushes; past this the request is taken as sent.
CANCEL_SEND_SECONDS = 5.0
MODEL_TAG = "runyard_registration"
# Cluster states (azureml_workspace.COMPUTE_STATES) in which jobs wait rather than being submitted.
WAIT_FOR_COMPUTE = frozenset({"connecting", "provisioning"})


@dataclass
class _Seen:
    status: str
    read_at: float


class AzureMLBackend:
    """Runs jobs on the Azure ML clusters declared in settings."""

    kind: Literal["local", "amlcompute"] = "amlcompute"

    def __init__(
        self, settings: Settings, *, sdk: AzureSdk | Callable[[], AzureSdk] = load_sdk,
        clock: Callable[[], float] = time.monotonic, now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.workspace = AzureWorkspace(settings, sdk=sdk, clock=clock)
        self.serving = AzureServing(self.workspace, settings.azureml_inference_targets)
        self._clock, self._now = clock, now
        self._seen: dict[str, _Seen] = {}
        self._reported: dict[str, str] = {}  # run id -> the status last reported with nothing else new
        self._cancels: dict[str, bool] = {}  # run id -> whether a forced cancel was sent
        self._final_failing: dict[str, float] = {}  # run id -> when its final read first failed
        self._poll_lock = threading.Lock()
        self._stop = threading.Event()

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        """Connect and attach (or create) the clusters in the background; never blocks startup."""
        threading.Thread(target=self._attach_compute, name="azureml-compute", daemon=True).start()

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

    # -- the Backend protocol ------------------------------------------------------

    def targets(self) -> Sequence[str]:
        return list(self.workspace.compute)

    def capacity(self, target: str) -> int | None:
        """0 while the cluster is being attached or provisioned (the tutorial waits for it too); then no
        limit: Azure queues runs itself. A cluster in error takes jobs, which then fail with its reason."""
        state = self.workspace.compute.get(target)
        return 0 if state is not None and state.state in WAIT_FOR_COMPUTE else None

    def submit(self, request: SubmitRequest) -> str:
        """A real ScriptRunConfig sent with `Experiment.submit`, tagged with the job id."""
        if not (request.source_dir / request.script).is_file():
            raise BackendError(f"script {request.script!r} not found in its source", transient=False)
        ws = self.workspace
        experiment = ws.experiment(request.experiment)
        environment = ws.environment(request.environment)
        arguments = [ws.dataset_input(a) if isinstance(a, DatasetInput) else str(a) for a in request.arguments]
        config = ws.sdk.ScriptRunConfig(
            source_directory=str(request.source_dir), script=request.script, arguments=arguments,
            compute_target=request.compute_target, environment=environment,
        )
        tags = {**request.tags, JOB_TAG: request.job_id}
        # One run id per attempt: a submit abandoned after its timeout keeps running in its thread
        # (the SDK sleeps through 429s, the snapshot upload has no limit), and the retry must meet
        # the run it may create instead of starting a second one.
        run_id = run_id_for(request.experiment, request.job_id)
        try:
            run = ws.call("submit the run", experiment.submit, config, tags=tags, run_id=run_id)
        except AzureCallAbandoned:
            raise
        except BackendError as exc:
            # A conflict (the abandoned submit got there first) or a failure after the run was
            # created: the run with this attempt's id is the job's.
            if self._run_exists(experiment, run_id):
                log.info("submit of %s failed (%s) but its run exists: adopted", run_id, exc.message)
                return run_id
            raise
        return str(run.id)

    def find_run(self, job_id: str, experiment: str, run_dir: Path) -> str | None:  # noqa: ARG002
        """The attempt's run by its id (404: none), else by its tag (runs named before ids were fixed)."""
        exp = self.workspace.experiment(experiment)
        run_id = run_id_for(experiment, job_id)
        if self._run_exists(exp, run_id):
            return run_id
        tagged: list[str] = self.workspace.call(
            "find the job's run by tag", lambda: [str(r.id) for r in islice(exp.get_runs(tags={JOB_TAG: job_id}), 1)]
        )
        return tagged[0] if tagged else None

    def _run_exists(self, experiment: Any, run_id: str) -> bool:
        try:
            self.workspace.call("look up the run", self.workspace.sdk.Run, experiment, run_id, clean_up=False)
        except AzureNotFound:
            return False
        return True

    def poll(self, runs: Sequence[RunRef]) -> list[RunUpdate]:
        """One run listing per experiment; metrics, log and files only for runs that need them."""
        if not self._poll_lock.acquire(blocking=False):
            return []  # the previous poll is still running (the poller gave up waiting on it)
        try:
            return self._poll(runs)
        finally:
            self._poll_lock.release()

    def _poll(self, runs: Sequence[RunRef]) -> list[RunUpdate]:
        deadline = self._clock() + POLL_DEADLINE_SECONDS
        by_experiment: dict[str, list[RunRef]] = defaultdict(list)
        for ref in runs:
            by_experiment[ref.experiment].append(ref)
        observed: list[tuple[RunRef, Any]] = []
        failures: list[BackendError] = []
        for name, refs in by_experiment.items():
            try:
                observed.extend(self._observe(name, refs))
            except BackendError as exc:
                log.warning("reading the runs of experiment %s failed; will retry: %s", name, exc.message)
                failures.append(exc)
                for ref in refs:  # report them in full once they can be read again
                    self._reported.pop(ref.run_id, None)
        if failures and len(failures) == len(by_experiment):
            raise failures[0]  # nothing could be read: the poller records it on the jobs and in /readyz
        updates = self._reconcile(observed, deadline)
        active = {r.run_id for r in runs}
        self._seen = {k: v for k, v in self._seen.items() if k in active}
        self._reported = {k: v for k, v in self._reported.items() if k in active}
        self._cancels = {k: v for k, v in self._cancels.items() if k in active}
        self._final_failing = {k: v for k, v in self._final_failing.items() if k in active}
        return updates

    def _observe(self, name: str, refs: list[RunRef]) -> list[tuple[RunRef, Any]]:
        """Each ref with its Run (status as listed), or None when Azure says it does not exist."""
        ws = self.workspace
        experiment = ws.experiment(name)
        wanted = {r.run_id for r in refs}

        def scan() -> dict[str, Any]:
            found: dict[str, Any] = {}
            pages = max(1, -(-2 * len(wanted) // LIST_SCAN_LIMIT))  # whole pages, twice the active runs
            for run in islice(experiment.get_runs(), pages * LIST_SCAN_LIMIT):
                if run.id in wanted:
                    found[run.id] = run
                    if len(found) == len(wanted):
                        break  # the generator fetches no further page
            return found

        listed = ws.call(f"list the runs of {name}", scan)
        observed: list[tuple[RunRef, Any]] = []
        for ref in refs:
            run = listed.get(ref.run_id)
            if run is None:
                try:
                    run = ws.call("read a run", ws.sdk.Run, experiment, ref.run_id, clean_up=False)
                except AzureNotFound:
                    run = None
                except BackendError as exc:
                    log.warning("reading run %s failed; will retry: %s", ref.run_id, exc.message)
                    continue
            observed.append((ref, run))
        return observed

    def _reconcile(self, observed: list[tuple[RunRef, Any]], deadline: float) -> list[RunUpdate]:
        """Read details for the runs that need them most, within the per-cycle budget."""
        now = self._clock()
        plan: list[tuple[int, float, RunRef, Any, str]] = []
        updates: list[RunUpdate] = []
        for ref, run in observed:
            if run is None:
                updates.append(_vanished(ref))
                continue
            status = str(run.status)
            seen = self._seen.get(ref.run_id)
            priority = self._priority(status, seen, now)
            plan.append((priority, seen.read_at if seen else float("-inf"), ref, run, status))
        plan.sort(key=lambda p: (p[0], p[1]))
        budget = self.settings.azureml_poll_detail_budget
        for priority, _, ref, run, status in plan:
            mapped = from_azure(status)
            update: RunUpdate | None = None
            if priority < NO_DETAILS and budget > 0 and self._clock() < deadline:
                budget -= 1
                update = self._read(ref, run, status, mapped)
            if update is None and mapped.is_terminal():
                continue  # reported once its final metrics, log and files are in
            if update is None and self._reported.get(ref.run_id) == status:
                continue  # nothing new: with thousands of runs, the poller's writes are the cost
            self._reported[ref.run_id] = status
            updates.append(update or self._status_only(ref, status, mapped))
        return updates

    def _priority(self, status: str, seen: _Seen | None, now: float) -> int:
        if from_azure(status).is_terminal():
            return 0
        if status in BEFORE_SCRIPT:
            return NO_DETAILS
        if seen is None or seen.status != status:
            return 1
        if now - seen.read_at >= self.settings.azureml_detail_refresh_seconds:
            return 2
        return NO_DETAILS

    def _read(self, ref: RunRef, run: Any, status: str, mapped: JobStatus) -> RunUpdate | None:
        """Files, new metrics, new log text (and on the end, the details): 3 calls, 4 at the end."""
        ws = self.workspace
        try:
            files = tuple(str(f) for f in ws.call("list the run's files", run.get_file_names))
            raw = ws.call("read the run's metrics", run.get_metrics)
            metrics, cursor = new_samples(ref.run_dir, ref.metrics_cursor, flatten_metrics(raw), self._now())
            self._sync_log(ref, run, files)
            details: Mapping[str, Any] = {}
            if mapped.is_terminal():
                details = ws.call("read the run's details", run.get_details)
        except BackendError as exc:
            if mapped.is_terminal():
                return self._final_read_failed(ref, status, exc)
            log.warning("reading run %s failed; will retry: %s", ref.run_id, exc.message)
            return None
        self._final_failing.pop(ref.run_id, None)
        self._seen[ref.run_id] = _Seen(status, self._clock())
        started = parse_time(details.get("startTimeUtc")) or self._started(mapped)
        if not mapped.is_terminal():
            return RunUpdate(ref.run_id, status, mapped, metrics, cursor, files, started_at=started)
        state = RunDir(ref.run_dir).state
        state.mkdir(parents=True, exist_ok=True)
        (state / FINAL_MARK).touch()
        return RunUpdate(ref.run_id, status, mapped, metrics, cursor, files, error=_reason(ref, mapped, details),
                         started_at=started, ended_at=parse_time(details.get("endTimeUtc")) or self._now())

    def _final_read_failed(self, ref: RunRef, status: str, exc: BackendError) -> RunUpdate | None:
        """Retry a finished run's last read; after FINAL_READ_GIVE_UP_SECONDS end the job with the reason."""
        first = self._final_failing.setdefault(ref.run_id, self._clock())
        if self._clock() - first < FINAL_READ_GIVE_UP_SECONDS:
            log.warning("final read of run %s failed; will retry: %s", ref.run_id, exc.message)
            return None
        log.error("final read of run %s kept failing for %.0fs; the job fails: %s", ref.run_id,
                  self._clock() - first, exc.message)
        self._final_failing.pop(ref.run_id, None)
        state = RunDir(ref.run_dir).state
        state.mkdir(parents=True, exist_ok=True)
        (state / FINAL_MARK).touch()
        return RunUpdate(ref.run_id, status, JobStatus.FAILED, metrics_cursor=ref.metrics_cursor,
                         error=f"the Azure ML run ended {status}, but its results could not be read: {exc.message}",
                         ended_at=self._now())

    def _status_only(self, ref: RunRef, status: str, mapped: JobStatus) -> RunUpdate:
        return RunUpdate(ref.run_id, status, mapped, metrics_cursor=ref.metrics_cursor,
                         started_at=self._started(mapped))

    def _started(self, mapped: JobStatus) -> datetime | None:
        return self._now() if mapped in (JobStatus.RUNNING, JobStatus.FINALIZING) else None

    def _sync_log(self, ref: RunRef, run: Any, files: tuple[str, ...]) -> None:
        """Bring the local log (read by the logs endpoint) up to the run's."""
        name = next((n for n in REMOTE_LOGS if n in files), None)
        if name is None:
            return
        state = RunDir(ref.run_dir).state
        state.mkdir(parents=True, exist_ok=True)
        part = state / "azureml_log.part"
        self.workspace.call("download the run's log", run.download_file, name, output_file_path=str(part))
        append_new_log_text(ref.run_dir, part)
        part.unlink(missing_ok=True)

    def cancel(self, run: RunRef, *, force: bool) -> None:
        """`run.cancel()`, once (and once more when forced: Azure has no harder cancel).

        The SDK posts the cancel, then flushes and uploads (core/run.py Run.cancel ->
        run_history_facade.cancel): a cancel still busy after CANCEL_SEND_SECONDS has sent its
        request, so it is recorded and left to finish in its thread, never holding up the poll.
        """
        sent = self._cancels.get(run.run_id)
        if sent is not None and (sent or not force):
            return
        handle = self._attach(run, "cancel the run")
        try:
            self.workspace.call(f"cancel run {run.run_id}", handle.cancel,
                                timeout=min(self.workspace.timeout, CANCEL_SEND_SECONDS))
        except AzureCallAbandoned:
            log.info("cancel of run %s is still flushing; taken as sent", run.run_id)
        self._cancels[run.run_id] = force

    def fetch_file(self, run: RunRef, path: str) -> Path:
        """Download one of the run's files into its run folder (the log is kept there already)."""
        rundir = RunDir(run.run_dir)
        local = rundir.resolve(path)
        if local.is_file() and (path == LOG_NAME or (rundir.state / FINAL_MARK).exists()):
            return local  # a finished run's files no longer change
        handle = self._attach(run, "download a file")
        local.parent.mkdir(parents=True, exist_ok=True)
        part = local.with_name(f".{local.name}.part")
        self.workspace.call(f"download {path}", handle.download_file, path, output_file_path=str(part))
        os.replace(part, local)
        return local

    def register_model(
        self, run: RunRef, *, model_name: str, model_path: str, version: int,  # noqa: ARG002 - Azure numbers
        tags: Mapping[str, str],
    ) -> RegisteredModel:
        """`run.register_model`; the version is the workspace's, the Azure model id the location.

        Idempotent: the model is tagged with its run and path, and a retry (say after a timeout
        whose registration went through) finds that model instead of registering another version.
        """
        key = f"{run.run_id}/{model_path}"
        model = self._registered(model_name, key)
        if model is None:
            handle = self._attach(run, "register a model")
            azure_tags = {**tags, JOB_TAG: run.job_id, MODEL_TAG: key}
            model = self.workspace.call(f"register model {model_name}", handle.register_model,
                                        model_name=model_name, model_path=model_path, tags=azure_tags)
        return RegisteredModel(location=str(model.id), files=(model_path,), version=int(model.version))

    def _registered(self, model_name: str, key: str) -> Any:
        """The model version already registered for this run and path, if any."""
        ws = self.workspace
        models = ws.call(f"find model {model_name}", ws.sdk.Model.list, ws.workspace(), name=model_name,
                         tags=[[MODEL_TAG, key]])
        return max(models, key=lambda m: int(m.version), default=None)

    def describe(self) -> list[ComputeInfo]:
        infos = []
        for state in self.workspace.compute.values():
            self.workspace.refresh_compute(state)
            spec = state.spec
            infos.append(ComputeInfo(
                name=spec.name, kind="amlcompute", state=state.state, vm_size=spec.vm_size,
                min_nodes=spec.min_nodes, max_nodes=spec.max_nodes, current_nodes=state.current_nodes,
                error=state.error, sdk="v1",
            ))
        return infos

    def check(self) -> None:
        """One cheap workspace read; authentication failures surface here."""
        ws = self.workspace.workspace()
        self.workspace.call("reach the workspace", ws.get_details, timeout=min(self.workspace.timeout, 4.0))

    # -- serving (the Serves protocol): web services on the inference targets ------------

    def serving_targets(self) -> Sequence[str]:
        return self.serving.serving_targets()

    def deploy(self, request: ServeRequest) -> None:
        self.serving.deploy(request)

    def service_state(self, target: str, service: str) -> ServiceState:
        return self.serving.service_state(target, service)

    def undeploy(self, target: str, service: str) -> None:
        self.serving.undeploy(target, service)

    def _attach(self, run: RunRef, what: str) -> Any:
        """A Run handle without the SDK's leak: `clean_up=False` (facts §6.7)."""
        experiment = self.workspace.experiment(run.experiment)
        return self.workspace.call(f"{what}: attach to run {run.run_id}", self.workspace.sdk.Run, experiment,
                                   run.run_id, clean_up=False)



def run_id_for(experiment: str, run_key: str) -> str:
    """The run id of one attempt; ids keep to [A-Za-z0-9_-]: an attempt key `ID.2` becomes `ID-2`."""
    return f"{experiment[:100]}_{re.sub(r'[^A-Za-z0-9_-]', '-', run_key)}"


def _vanished(ref: RunRef) -> RunUpdate:
    status = JobStatus.CANCELED if ref.cancel_requested else JobStatus.FAILED
    return RunUpdate(ref.run_id, "NotFound", status, metrics_cursor=ref.metrics_cursor,
                     error=f"the Azure ML run {ref.run_id} no longer exists in the workspace", ended_at=utcnow())


def _reason(ref: RunRef, mapped: JobStatus, details: Mapping[str, Any]) -> str | None:
    if mapped is JobStatus.FAILED:
        return failure_reason(details)
    if mapped is JobStatus.CANCELED:
        return "canceled on request" if ref.cancel_requested else "the Azure ML run was canceled outside runyard"
    return None
