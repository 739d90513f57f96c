"""Azure ML compute targets: each run is an azureml-core `ScriptRun` in the workspace.

The SDK itself is reached only through `azureml_sdk` (imports) and `azureml_workspace`
(connection, compute, environments, datasets); this module maps the `Backend` protocol
onto runs: submit, find by tag, poll in batches, cancel, files, model registration.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any, Literal

from service.backends.azureml_base import (
    JOB_TAG,
    MODEL_TAG,
    AzureBackendBase,
    AzureCallAbandoned,
    AzureNotFound,
    Details,
)
from service.backends.azureml_progress import (
    append_new_log_text,
    failure_reason,
    flatten_metrics,
    new_samples,
    parse_time,
)
from service.backends.azureml_sdk import AzureSdk, load_sdk
from service.backends.azureml_serving import AzureServing
from service.backends.azureml_workspace import AzureWorkspace
from service.backends.base import DatasetInput, RegisteredModel, RunRef, SubmitRequest
from service.core.clock import utcnow
from service.core.errors import BackendError
from service.core.rundir import LOG_NAME, RunDir
from service.core.settings import Settings
from service.core.states import JobStatus, from_azure

log = logging.getLogger(__name__)

# Where a run's script output is: the current runtime first, then the legacy one.
REMOTE_LOGS = (LOG_NAME, "azureml-logs/70_driver_log.txt")
# One page of `runs:query` is 500 runs, newest first. The scan reads further pages while the
# experiment has many active runs (a page per 500 beats 500 single reads), then stops; runs
# older than that are read one by one.
LIST_SCAN_LIMIT = 500
# `run.cancel()` sends its request first, then flushes; past this the request is taken as sent.
CANCEL_SEND_SECONDS = 5.0


@dataclass(frozen=True)
class _Listed:
    """A run as `list_runs` listed it (a RunDto), until a detail read needs a Run of it."""

    experiment: Any
    record: Any


class AzureMLBackend(AzureBackendBase):
    """Runs jobs on the Azure ML clusters declared in settings (azureml-core, SDK v1)."""

    sdk_label: Literal["v1", "v2"] = "v1"
    noun = "run"
    # Statuses before the script runs: there is no log or metric to read yet.
    before_script = frozenset({"NotStarted", "Unapproved", "Queued", "Preparing", "Provisioning", "Starting"})
    workspace: AzureWorkspace

    def __init__(
        self, settings: Settings, *, sdk: AzureSdk | Callable[[], AzureSdk] = load_sdk,
        clock: Callable[[], float] = time.monotonic, now: Callable[[], datetime] = utcnow,
    ) -> None:
        super().__init__(settings, AzureWorkspace(settings, sdk=sdk, clock=clock), clock=clock, now=now)
        self.serving = AzureServing(self.workspace, settings.azureml_inference_targets)

    def map_status(self, status: str) -> JobStatus:
        return from_azure(status)

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

    def _observe(self, refs: Sequence[RunRef]) -> list[tuple[RunRef, str | None, Any]]:
        """One run listing per experiment; a run not among the listed is read by its id."""
        by_experiment: dict[str, list[RunRef]] = defaultdict(list)
        for ref in refs:
            by_experiment[ref.experiment].append(ref)
        observed: list[tuple[RunRef, str | None, Any]] = []
        failures: list[BackendError] = []
        for name, group in by_experiment.items():
            try:
                observed.extend(self._observe_experiment(name, group))
            except BackendError as exc:
                log.warning("reading the runs of experiment %s failed; will retry: %s", name, exc.message)
                failures.append(exc)
                self._unreported(group)
        if failures and len(failures) == len(by_experiment):
            raise failures[0]  # nothing could be read: the poller records it on the jobs and in /readyz
        return observed

    def _observe_experiment(self, name: str, refs: list[RunRef]) -> list[tuple[RunRef, str | None, Any]]:
        ws = self.workspace
        experiment = ws.experiment(name)
        wanted = {r.run_id for r in refs}
        list_runs = ws.sdk.list_runs

        def scan() -> dict[str, tuple[str, Any]]:
            found: dict[str, tuple[str, Any]] = {}
            pages = max(1, -(-2 * len(wanted) // LIST_SCAN_LIMIT))  # whole pages, twice the active runs
            if list_runs is None or ws.sdk.run_of_listed is None:
                for run in islice(experiment.get_runs(), pages * LIST_SCAN_LIMIT):
                    if run.id in wanted:
                        found[run.id] = (str(run.status), run)
                        if len(found) == len(wanted):
                            break  # the generator fetches no further page
                return found
            # The listed records, not a Run each: `_details` builds a Run only for the runs it reads.
            for record in islice(list_runs(experiment), pages * LIST_SCAN_LIMIT):
                if record.run_id in wanted:
                    found[record.run_id] = (str(record.status), _Listed(experiment, record))
                    if len(found) == len(wanted):
                        break  # the generator fetches no further page
            return found

        listed = ws.call(f"list the runs of {name}", scan)
        observed: list[tuple[RunRef, str | None, Any]] = []
        for ref in refs:
            seen = listed.get(ref.run_id)
            if seen is None:
                try:
                    run = ws.call("read a run", ws.sdk.Run, experiment, ref.run_id, clean_up=False)
                except AzureNotFound:
                    observed.append((ref, None, None))
                    continue
                except BackendError as exc:
                    log.warning("reading run %s failed; will retry: %s", ref.run_id, exc.message)
                    continue
                seen = (str(run.status), run)
            observed.append((ref, *seen))
        return observed

    def _run(self, handle: Any) -> Any:
        """A Run: the one observed, or one built from its listed record (no request)."""
        if not isinstance(handle, _Listed):
            return handle
        run_of_listed = self.workspace.sdk.run_of_listed
        if run_of_listed is None:
            raise BackendError("a listed run record without a way to build its Run", transient=False)
        return run_of_listed(handle.experiment, handle.record)

    def _details(self, ref: RunRef, handle: Any, mapped: JobStatus) -> Details:
        """Files, new metrics, new log text (and on the end, the details): 3 calls, 4 at the end."""
        ws, run = self.workspace, self._run(handle)
        files = tuple(str(f) for f in ws.call("list the run's files", run.get_file_names))
        raw = ws.call("read the run's metrics", run.get_metrics)
        metrics, cursor = new_samples(ref.run_dir, ref.metrics_cursor, flatten_metrics(raw), self._now())
        self._sync_log(ref, run, files)
        if not mapped.is_terminal():
            return Details(metrics, cursor, files)
        details: Mapping[str, Any] = ws.call("read the run's details", run.get_details)
        return Details(metrics, cursor, files, started_at=parse_time(details.get("startTimeUtc")),
                       ended_at=parse_time(details.get("endTimeUtc")),
                       error=failure_reason(details) if mapped is JobStatus.FAILED else None)

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

    def _send_cancel(self, run: RunRef) -> None:
        """`run.cancel()`. The SDK posts the cancel, then flushes and uploads (core/run.py Run.cancel ->
        run_history_facade.cancel): a cancel still busy after CANCEL_SEND_SECONDS has sent its
        request, so it is recorded and left to finish in its thread, never holding up the poll.
        """
        handle = self._attach(run, "cancel the run")
        try:
            self.workspace.call(f"cancel run {run.run_id}", handle.cancel,
                                timeout=min(self.workspace.timeout, CANCEL_SEND_SECONDS))
        except AzureCallAbandoned:
            log.info("cancel of run %s is still flushing; taken as sent", run.run_id)

    def _download(self, run: RunRef, path: str, local: Path) -> None:
        handle = self._attach(run, "download a file")
        part = local.with_name(f".{local.name}.part")
        self.workspace.call(f"download {path}", handle.download_file, path, output_file_path=str(part))
        os.replace(part, local)

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

    def check(self) -> None:
        """One cheap workspace read; authentication failures surface here."""
        ws = self.workspace.workspace()
        self.workspace.call("reach the workspace", ws.get_details, timeout=min(self.workspace.timeout, 4.0))

    def _attach(self, run: RunRef, what: str) -> Any:
        """A Run handle without the SDK's leak: `clean_up=False` (facts §6.7)."""
        experiment = self.workspace.experiment(run.experiment)
        return self.workspace.call(f"{what}: attach to run {run.run_id}", self.workspace.sdk.Run, experiment,
                                   run.run_id, clean_up=False)


def run_id_for(experiment: str, run_key: str) -> str:
    """The run id of one attempt; ids keep to [A-Za-z0-9_-]: an attempt key `ID.2` becomes `ID-2`."""
    return f"{experiment[:100]}_{re.sub(r'[^A-Za-z0-9_-]', '-', run_key)}"
