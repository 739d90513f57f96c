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
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any, Literal

from service.backends.azureml_base import JOB_TAG, MODEL_TAG, AzureBackendBase, AzureNotFound, Details
from service.backends.azureml_progress import append_new_log_text, error_text
from service.backends.azureml_v2_progress import from_millis, new_history_samples
from service.backends.azureml_v2_sdk import V2Sdk, load_v2_sdk
from service.backends.azureml_v2_serving import AzureV2Serving
from service.backends.azureml_v2_workspace import AzureV2Workspace
from service.backends.base import DatasetInput, RegisteredModel, RunRef, SubmitRequest
from service.core.clock import utcnow
from service.core.errors import BackendError
from service.core.rundir import LOG_NAME, RunDir
from service.core.settings import Settings
from service.core.states import AZURE_STATUS_MAP, JobStatus

log = logging.getLogger(__name__)

# azure-ai-ml's JobStatus values; "Unknown" is what the service says when it cannot tell.
V2_STATUS_MAP: dict[str, JobStatus] = {**AZURE_STATUS_MAP, "Unknown": JobStatus.RUNNING}
# Jobs listed per poll before the remaining active ones are read one by one (newest first).
LIST_SCAN_LIMIT = 500
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def from_azure_v2(status: str) -> JobStatus:
    """A v2 job status string as runyard's; an unknown string counts as still running."""
    return V2_STATUS_MAP.get(status, JobStatus.RUNNING)


def job_name(job_key: str) -> str:
    """The v2 job name of one job attempt (`ID.2` -> `runyard-id-2`): the same on every retry.

    Lower case: azure-ai-ml lowers a node name itself (with a warning), and the name is our key.
    """
    return f"runyard-{_NAME_UNSAFE.sub('-', job_key)}".lower()[:255]


class AzureMLV2Backend(AzureBackendBase):
    """Runs jobs as azure-ai-ml command jobs on the clusters declared for SDK v2."""

    sdk_label: Literal["v1", "v2"] = "v2"
    noun = "job"
    before_script = frozenset({"NotStarted", "Queued", "Preparing", "Provisioning", "Starting"})
    workspace: AzureV2Workspace

    def __init__(
        self, settings: Settings, *, sdk: V2Sdk | Callable[[], V2Sdk] = load_v2_sdk,
        clock: Callable[[], float] = time.monotonic, now: Callable[[], datetime] = utcnow,
    ) -> None:
        super().__init__(settings, AzureV2Workspace(settings, sdk=sdk, clock=clock), clock=clock, now=now)
        self.serving = AzureV2Serving(self.workspace, settings.azureml_inference_targets)

    def map_status(self, status: str) -> JobStatus:
        return from_azure_v2(status)

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

    def _observe(self, refs: Sequence[RunRef]) -> list[tuple[RunRef, str | None, Any]]:
        """One listing of the workspace's jobs (v2 has none per experiment); a job not listed is read by name."""
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
        except BackendError:
            self._unreported(refs)
            raise
        observed: list[tuple[RunRef, str | None, Any]] = []
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
            observed.append((ref, status, None))
        return observed

    def _details(self, ref: RunRef, handle: Any, mapped: JobStatus) -> Details:  # noqa: ARG002 - read by name
        """MLflow: the run, each metric's history, the artifact listing, the new log text (and a failure's error)."""
        ws = self.workspace
        mlflow = ws.mlflow()
        run = ws.call(f"read MLflow run {ref.run_id}", mlflow.get_run, ref.run_id)
        histories = {key: ws.call(f"read metric {key}", mlflow.get_metric_history, ref.run_id, key)
                     for key in sorted(run.data.metrics)}
        files = tuple(sorted(self._artifacts(mlflow, ref.run_id)))
        metrics, cursor = new_history_samples(ref.run_dir, ref.metrics_cursor, histories)
        self._sync_log(ref, mlflow, files)
        error = self._failure(ref) if mapped is JobStatus.FAILED else None
        return Details(metrics, cursor, files, started_at=from_millis(run.info.start_time),
                       ended_at=from_millis(run.info.end_time) if mapped.is_terminal() else None, error=error)

    def _failure(self, ref: RunRef) -> str:
        """Why a job failed: its error in Run History, else the last line of its log (the script's exception)."""
        error = self._job_error(ref.run_id)
        if error:
            return f"the Azure ML job failed: {error}"
        lines = [line for line in _log_tail(ref.run_dir).splitlines() if line.strip()]
        return f"the Azure ML job failed: {lines[-1].strip()}" if lines else "the Azure ML job failed (no log)"

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

    def _send_cancel(self, run: RunRef) -> None:
        """`jobs.begin_cancel`; its poller is not waited on."""
        client = self.workspace.client()
        self.workspace.call(f"cancel job {run.run_id}", client.jobs.begin_cancel, run.run_id)

    def _download(self, run: RunRef, path: str, local: Path) -> None:
        mlflow, state = self.workspace.mlflow(), RunDir(run.run_dir).state
        state.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=state) as tmp:
            got = self.workspace.call(f"download {path}", mlflow.download_artifacts, run.run_id, path, dst_path=tmp)
            os.replace(got, local)

    def register_model(
        self, run: RunRef, *, model_name: str, model_path: str, version: int, tags: Mapping[str, str]
    ) -> RegisteredModel:
        """A v2 Model on the job's artifact path; Azure numbers it, and that number is kept.

        Idempotent: the model is tagged with its job and path, and a retry (say after a timeout
        whose registration went through) finds that model instead of registering another version.
        """
        key = f"{run.run_id}/{model_path}"
        made = self._registered(model_name, key)
        if made is None:
            sdk, client = self.workspace.sdk, self.workspace.client()
            model = sdk.Model(
                name=model_name, type="custom_model",
                path=f"azureml://jobs/{run.run_id}/outputs/artifacts/paths/{model_path}",
                tags={**tags, JOB_TAG: run.job_id, MODEL_TAG: key, "runyard_version": str(version)},
            )
            made = self.workspace.call(f"register model {model_name}", client.models.create_or_update, model)
        azure_version = int(made.version) if str(made.version).isdigit() else None
        return RegisteredModel(location=f"azureml:{made.name}:{made.version}", files=(model_path,),
                               version=azure_version)

    def _registered(self, model_name: str, key: str) -> Any:
        """The model version already registered for this job and path, if any (one listing of the name's versions)."""
        client = self.workspace.client()

        def find() -> list[Any]:
            return [m for m in client.models.list(name=model_name) if (m.tags or {}).get(MODEL_TAG) == key]

        try:
            found: list[Any] = self.workspace.call(f"find model {model_name}", find)
        except AzureNotFound:
            return None
        return max(found, key=lambda m: int(m.version) if str(m.version).isdigit() else 0, default=None)

    def check(self) -> None:
        """One cheap workspace read; authentication failures surface here."""
        client = self.workspace.client()
        self.workspace.call("reach the workspace", client.workspaces.get, client.workspace_name,
                            timeout=min(self.workspace.timeout, 4.0))


def _log_tail(run_dir: Path) -> str:
    path = RunDir(run_dir).log
    try:
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - 4096))
            return f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
