"""Azure ML compute targets served by azure-ai-ml (SDK v2): each run is a command job.

The job request maps as with v1: `source`/`script`/`arguments` become `command()` with the argv
(code = the source folder), dataset arguments `Input(type="uri_folder")`, the environment a v2
Environment, tags stay tags. The job's name is chosen here, one per job attempt, so a create
retried after a crash finds the job it made. Status comes from one workspace job listing per
poll; metrics, log and files from the workspace's MLflow tracking (the job's name is its MLflow
run id), rationed per cycle like v1.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any, Literal

from service.backends.azureml_progress import append_new_log_text, error_text
from service.backends.azureml_sdk import AzureNotFound
from service.backends.azureml_v2_progress import from_millis, new_history_samples
from service.backends.azureml_v2_sdk import V2Sdk, load_v2_sdk
from service.backends.azureml_v2_workspace import AzureV2Workspace
from service.backends.base import ComputeInfo, DatasetInput, RegisteredModel, RunRef, RunUpdate, SubmitRequest
from service.core.clock import utcnow
from service.core.errors import BackendError
from service.core.rundir import LOG_NAME, RunDir
from service.core.settings import Settings
from service.core.states import AZURE_STATUS_MAP, JobStatus

log = logging.getLogger(__name__)

JOB_TAG = "runyard_job_id"
# azure-ai-ml's JobStatus values; "Unknown" is what the service says when it cannot tell.
V2_STATUS_MAP: dict[str, JobStatus] = {**AZURE_STATUS_MAP, "Unknown": JobStatus.RUNNING}
BEFORE_SCRIPT = frozenset({"NotStarted", "Queued", "Preparing", "Provisioning", "Starting"})
# Jobs listed per poll before the remaining active ones are read one by one (newest first).
LIST_SCAN_LIMIT = 500
POLL_DEADLINE_SECONDS = 90.0
COMPUTE_RETRY_SECONDS = 30.0
NO_DETAILS = 3
FINAL_MARK = "azureml_final"
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def from_azure_v2(status: str) -> JobStatus:
    """A v2 job status string as runyard's; an unknown string counts as still running."""
    return V2_STATUS_MAP.get(status, JobStatus.RUNNING)


def job_name(job_key: str) -> str:
    """The v2 job name of one job attempt (`ID.2` -> `runyard-id-2`): the same on every retry.

    Lower case: azure-ai-ml lowers a node name itself (with a warning), and the name is our key.
    """
    return f"runyard-{_NAME_UNSAFE.sub('-', job_key)}".lower()[:255]


@dataclass
class _Seen:
    status: str
    read_at: float


class AzureMLV2Backend:
    """Runs jobs as azure-ai-ml command jobs on the clusters declared for SDK v2."""

    kind: Literal["local", "amlcompute"] = "amlcompute"

    def __init__(
        self, settings: Settings, *, sdk: V2Sdk | Callable[[], V2Sdk] = load_v2_sdk,
        clock: Callable[[], float] = time.monotonic, now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.workspace = AzureV2Workspace(settings, sdk=sdk, clock=clock)
        self._clock, self._now = clock, now
        self._seen: dict[str, _Seen] = {}
        self._reported: dict[str, str] = {}
        self._cancels: dict[str, bool] = {}
        self._poll_lock = threading.Lock()
        self._stop = threading.Event()

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        threading.Thread(target=self._attach_compute, name="azureml-v2-compute", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _attach_compute(self) -> None:
        while not self._stop.is_set():
            if self.workspace.ensure_compute():
                return
            self._stop.wait(COMPUTE_RETRY_SECONDS)

    # -- the Backend protocol ------------------------------------------------------

    def targets(self) -> Sequence[str]:
        return list(self.workspace.compute)

    def capacity(self, target: str) -> int | None:  # noqa: ARG002 - Azure queues jobs itself
        return None

    def submit(self, request: SubmitRequest) -> str:
        """`jobs.create_or_update(command(...))` under the attempt's own name."""
        if not (request.source_dir / request.script).is_file():
            raise BackendError(f"script {request.script!r} not found in its source", transient=False)
        ws, sdk = self.workspace, self.workspace.sdk
        environment = ws.environment(request.environment)
        argv: list[str] = ["python", request.script]
        inputs: dict[str, Any] = {}
        for arg in request.arguments:
            if isinstance(arg, DatasetInput):
                key = f"data_{len(inputs)}"
                inputs[key] = ws.data_input(arg)
                argv.append(f"${{{{inputs.{key}}}}}")  # azure-ai-ml substitutes the input's path
            else:
                argv.append(shlex.quote(str(arg)))
        name = job_name(request.job_id)
        job = sdk.command(
            name=name, display_name=request.job_id, experiment_name=request.experiment, code=str(request.source_dir),
            command=" ".join(argv), inputs=inputs, environment=environment, compute=request.compute_target,
            tags={**request.tags, JOB_TAG: request.job_id},
        )
        client = ws.client()
        try:
            created = ws.call(f"create job {name}", client.jobs.create_or_update, job)
        except BackendError as exc:
            # A create that reached Azure before (a lost answer, a crash): the name is taken by our job.
            if not exc.transient and self.find_run(request.job_id, request.experiment, request.run_dir):
                return name
            raise
        return str(created.name)

    def find_run(self, job_id: str, experiment: str, run_dir: Path) -> str | None:  # noqa: ARG002
        """The attempt's job by its deterministic name, if Azure has it."""
        name = job_name(job_id)
        client = self.workspace.client()
        try:
            self.workspace.call(f"read job {name}", client.jobs.get, name)
        except AzureNotFound:
            return None
        return name

    def poll(self, runs: Sequence[RunRef]) -> list[RunUpdate]:
        """One workspace job listing; metrics, log and files only for the jobs that need them."""
        if not self._poll_lock.acquire(blocking=False):
            return []
        try:
            return self._poll(runs)
        finally:
            self._poll_lock.release()

    def _poll(self, runs: Sequence[RunRef]) -> list[RunUpdate]:
        deadline = self._clock() + POLL_DEADLINE_SECONDS
        if not runs:
            return []
        observed = self._observe(runs)
        updates = self._reconcile(observed, deadline)
        active = {r.run_id for r in runs}
        self._seen = {k: v for k, v in self._seen.items() if k in active}
        self._reported = {k: v for k, v in self._reported.items() if k in active}
        self._cancels = {k: v for k, v in self._cancels.items() if k in active}
        return updates

    def _observe(self, refs: Sequence[RunRef]) -> list[tuple[RunRef, str | None]]:
        """Each ref with its job's status string, or None when Azure says the job does not exist."""
        ws = self.workspace
        client = ws.client()
        wanted = {r.run_id for r in refs}

        def scan() -> dict[str, str]:
            found: dict[str, str] = {}
            for job in islice(client.jobs.list(), max(LIST_SCAN_LIMIT, 2 * len(wanted))):
                if job.name in wanted:
                    found[job.name] = str(job.status)
                    if len(found) == len(wanted):
                        break  # no further page is fetched
            return found

        try:
            listed: dict[str, str] = ws.call("list the workspace's jobs", scan)
        except BackendError as exc:
            for ref in refs:  # reported in full once they can be read again
                self._reported.pop(ref.run_id, None)
            raise exc
        observed: list[tuple[RunRef, str | None]] = []
        for ref in refs:
            status = listed.get(ref.run_id)
            if status is None:
                try:
                    status = str(ws.call(f"read job {ref.run_id}", client.jobs.get, ref.run_id).status)
                except AzureNotFound:
                    status = None
                except BackendError as exc:
                    log.warning("reading job %s failed; will retry: %s", ref.run_id, exc.message)
                    continue
            observed.append((ref, status))
        return observed

    def _reconcile(self, observed: list[tuple[RunRef, str | None]], deadline: float) -> list[RunUpdate]:
        now = self._clock()
        plan: list[tuple[int, float, RunRef, str]] = []
        updates: list[RunUpdate] = []
        for ref, status in observed:
            if status is None:
                updates.append(_vanished(ref))
                continue
            seen = self._seen.get(ref.run_id)
            plan.append((self._priority(status, seen, now), seen.read_at if seen else float("-inf"), ref, status))
        plan.sort(key=lambda p: (p[0], p[1]))
        budget = self.settings.azureml_poll_detail_budget
        for priority, _, ref, status in plan:
            mapped = from_azure_v2(status)
            update: RunUpdate | None = None
            if priority < NO_DETAILS and budget > 0 and self._clock() < deadline:
                budget -= 1
                update = self._read(ref, status, mapped)
            if update is None and mapped.is_terminal():
                continue  # reported once its final metrics, log and files are in
            if update is None and self._reported.get(ref.run_id) == status:
                continue
            self._reported[ref.run_id] = status
            updates.append(update or RunUpdate(ref.run_id, status, mapped, metrics_cursor=ref.metrics_cursor,
                                               started_at=self._started(mapped)))
        return updates

    def _priority(self, status: str, seen: _Seen | None, now: float) -> int:
        if from_azure_v2(status).is_terminal():
            return 0
        if status in BEFORE_SCRIPT:
            return NO_DETAILS
        if seen is None or seen.status != status:
            return 1
        if now - seen.read_at >= self.settings.azureml_detail_refresh_seconds:
            return 2
        return NO_DETAILS

    def _read(self, ref: RunRef, status: str, mapped: JobStatus) -> RunUpdate | None:
        """MLflow: the run, each metric's history, the artifact listing and the new log text."""
        ws = self.workspace
        try:
            mlflow = ws.mlflow()
            run = ws.call(f"read MLflow run {ref.run_id}", mlflow.get_run, ref.run_id)
            histories = {key: ws.call(f"read metric {key}", mlflow.get_metric_history, ref.run_id, key)
                         for key in sorted(run.data.metrics)}
            files = tuple(sorted(self._artifacts(mlflow, ref.run_id)))
            metrics, cursor = new_history_samples(ref.run_dir, ref.metrics_cursor, histories)
            self._sync_log(ref, mlflow, files)
            error = self._job_error(ref.run_id) if mapped is JobStatus.FAILED else None
        except BackendError as exc:
            log.warning("reading job %s failed; will retry: %s", ref.run_id, exc.message)
            return None
        self._seen[ref.run_id] = _Seen(status, self._clock())
        started = from_millis(run.info.start_time) or self._started(mapped)
        if not mapped.is_terminal():
            return RunUpdate(ref.run_id, status, mapped, metrics, cursor, files, started_at=started)
        state = RunDir(ref.run_dir).state
        state.mkdir(parents=True, exist_ok=True)
        (state / FINAL_MARK).touch()
        return RunUpdate(ref.run_id, status, mapped, metrics, cursor, files, error=_reason(ref, mapped, error),
                         started_at=started, ended_at=from_millis(run.info.end_time) or self._now())

    def _job_error(self, name: str) -> str | None:
        """`code: message` of a failed job's error, from Run History's details of the job.

        Neither the SDK's Job entity nor the REST JobBase it is built from has an error field;
        Run History's `RunDetails.error` does, and azure-ai-ml reads it there itself (through
        this private operations object) when `jobs.stream()` reports a failed job. If the SDK
        no longer has it, or the details cannot be had, the reason falls back to the log.
        """
        client = self.workspace.client()
        try:
            details = self.workspace.call(f"read the details of job {name}",
                                          lambda: client.jobs._runs_operations.get_run_details(name))
        except BackendError as exc:
            if exc.transient:
                raise  # the final read is tried again next cycle
            log.warning("the error of job %s could not be read; its log says why: %s", name, exc.message)
            return None
        error = getattr(details, "error", None)
        return error_text(error.as_dict()) if error is not None else None

    def _started(self, mapped: JobStatus) -> datetime | None:
        return self._now() if mapped in (JobStatus.RUNNING, JobStatus.FINALIZING) else None

    def _artifacts(self, mlflow: Any, run_id: str, path: str | None = None) -> list[str]:
        """Every file under the job's artifacts (one listing per folder)."""
        found: list[str] = []
        for info in self.workspace.call(f"list the files of {run_id}", mlflow.list_artifacts, run_id, path):
            if info.is_dir:
                found.extend(self._artifacts(mlflow, run_id, info.path))
            else:
                found.append(str(info.path))
        return found

    def _sync_log(self, ref: RunRef, mlflow: Any, files: tuple[str, ...]) -> None:
        if LOG_NAME not in files:
            return
        state = RunDir(ref.run_dir).state
        state.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=state) as tmp:
            local = self.workspace.call("download the job's log", mlflow.download_artifacts, ref.run_id, LOG_NAME,
                                        dst_path=tmp)
            append_new_log_text(ref.run_dir, Path(local))

    def cancel(self, run: RunRef, *, force: bool) -> None:
        """`jobs.begin_cancel`, once (and once more when forced); its poller is not waited on."""
        sent = self._cancels.get(run.run_id)
        if sent is not None and (sent or not force):
            return
        client = self.workspace.client()
        self.workspace.call(f"cancel job {run.run_id}", client.jobs.begin_cancel, run.run_id)
        self._cancels[run.run_id] = force

    def fetch_file(self, run: RunRef, path: str) -> Path:
        """Download one of the job's artifacts into its run folder."""
        rundir = RunDir(run.run_dir)
        local = rundir.resolve(path)
        if local.is_file() and (path == LOG_NAME or (rundir.state / FINAL_MARK).exists()):
            return local
        mlflow = self.workspace.mlflow()
        rundir.state.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=rundir.state) as tmp:
            got = self.workspace.call(f"download {path}", mlflow.download_artifacts, run.run_id, path, dst_path=tmp)
            local.parent.mkdir(parents=True, exist_ok=True)
            os.replace(got, local)
        return local

    def register_model(
        self, run: RunRef, *, model_name: str, model_path: str, version: int, tags: Mapping[str, str]
    ) -> RegisteredModel:
        """A v2 Model on the job's artifact path; Azure numbers it, and that number is kept."""
        sdk, client = self.workspace.sdk, self.workspace.client()
        model = sdk.Model(
            name=model_name, type="custom_model",
            path=f"azureml://jobs/{run.run_id}/outputs/artifacts/paths/{model_path}",
            tags={**tags, JOB_TAG: run.job_id, "runyard_version": str(version)},
        )
        made = self.workspace.call(f"register model {model_name}", client.models.create_or_update, model)
        azure_version = int(made.version) if str(made.version).isdigit() else None
        return RegisteredModel(location=f"azureml:{made.name}:{made.version}", files=(model_path,),
                               version=azure_version)

    def describe(self) -> list[ComputeInfo]:
        infos = []
        for state in self.workspace.compute.values():
            self.workspace.refresh_compute(state)
            spec = state.spec
            infos.append(ComputeInfo(
                name=spec.name, kind="amlcompute", state=state.state, vm_size=spec.vm_size,
                min_nodes=spec.min_nodes, max_nodes=spec.max_nodes, current_nodes=state.current_nodes,
                error=state.error, sdk="v2",
            ))
        return infos

    def check(self) -> None:
        """One cheap workspace read; authentication failures surface here."""
        client = self.workspace.client()
        self.workspace.call("reach the workspace", client.workspaces.get, client.workspace_name,
                            timeout=min(self.workspace.timeout, 4.0))


def _vanished(ref: RunRef) -> RunUpdate:
    status = JobStatus.CANCELED if ref.cancel_requested else JobStatus.FAILED
    return RunUpdate(ref.run_id, "NotFound", status, metrics_cursor=ref.metrics_cursor,
                     error=f"the Azure ML job {ref.run_id} no longer exists in the workspace", ended_at=utcnow())


def _reason(ref: RunRef, mapped: JobStatus, error: str | None) -> str | None:
    if mapped is JobStatus.FAILED:
        if error:
            return f"the Azure ML job failed: {error}"
        # No error in Run History: the log's last line is the script's exception.
        lines = [line for line in _log_tail(ref.run_dir).splitlines() if line.strip()]
        return f"the Azure ML job failed: {lines[-1].strip()}" if lines else "the Azure ML job failed (no log)"
    if mapped is JobStatus.CANCELED:
        return "canceled on request" if ref.cancel_requested else "the Azure ML job was canceled outside runyard"
    return None


def _log_tail(run_dir: Path) -> str:
    path = RunDir(run_dir).log
    try:
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - 4096))
            return f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
