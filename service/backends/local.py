"""The `local` compute target: each run is a process session on this machine."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from service.backends.base import (
    Arg,
    ComputeInfo,
    DatasetInput,
    RegisteredModel,
    RunRef,
    RunUpdate,
    SubmitRequest,
)
from service.backends.local_metrics import read_batch
from service.backends.local_template import Template, TemplateUnavailable
from service.core.checksums import tree_sha256
from service.core.clock import utcnow
from service.core.errors import BackendError
from service.core.ids import new_id
from service.core.rundir import RunDir
from service.core.states import JobStatus

log = logging.getLogger(__name__)
LOCAL = "local"
LOG_TAIL_LINES = 20
# What a run gets from the service's environment: nothing else. Keys, the database URL and the
# Azure credentials live there too, and any job script could read its own environment.
INHERITED_ENV = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")
BLAS_THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
RUNNER = Path(__file__).with_name("local_runner.py")
# Walking a run folder costs a stat per file: at most this many are listed, this often while it runs.
MAX_LISTED_FILES = 10_000
FILES_REFRESH_SECONDS = 10.0


class LocalBackend:
    """Runs `python <source>/<script> <argv>` under a supervising runner process."""

    kind: Literal["local", "amlcompute"] = "local"

    def __init__(
        self,
        *,
        max_concurrent: int,
        models_dir: Path,
        python: str = sys.executable,
        on_exit: Callable[[], None] | None = None,
        env_passthrough: Sequence[str] = (),
        prestart_dir: Path | None = None,
    ) -> None:
        self.max_concurrent = max_concurrent
        self.models_dir = models_dir
        self.python = python
        self.env_passthrough = tuple(env_passthrough)
        self._on_exit = on_exit
        # Run id -> its runner (a child of this process, or the pid of one forked by the template).
        self._children: dict[str, subprocess.Popen[bytes] | int] = {}
        self._forked: dict[int, str] = {}  # runner pid -> run id, for the template's exit reports
        # With a folder for it, runs start as forks of a prestarted interpreter (local_prestart.py).
        self.template = None if prestart_dir is None else Template(
            python, self._base_env(home=prestart_dir), prestart_dir, self._forked_exit)
        self._listed: dict[str, float] = {}  # run id -> when its files were last listed (monotonic)
        self._lock = threading.Lock()

    def start(self) -> None:
        """Nothing yet: the prestarted interpreter starts with the first run (which starts plainly
        while it imports), so a service that runs no local job never spends ~1 s of CPU on it."""

    def stop(self) -> None:
        """Stop the prestarted interpreter (the runs it started go on, in their own sessions)."""
        if self.template is not None:
            self.template.stop()

    def set_exit_listener(self, on_exit: Callable[[], None]) -> None:
        """Called (from a thread) whenever a run started by this process ends."""
        self._on_exit = on_exit

    def targets(self) -> Sequence[str]:
        return [LOCAL]

    def capacity(self, target: str) -> int | None:  # noqa: ARG002 - one target
        return self.max_concurrent

    def submit(self, request: SubmitRequest) -> str:
        rundir = RunDir(request.run_dir)
        rundir.state.mkdir(parents=True, exist_ok=True)
        script = request.source_dir / request.script
        if not script.is_file():
            raise BackendError(f"script {request.script!r} not found in its source", transient=False)
        run_id = f"{request.experiment}_{int(datetime.now(UTC).timestamp())}_{new_id()[-8:].lower()}"
        _write_json(rundir.state / "run.json", {"run_id": run_id, "job_id": request.job_id})
        env = self.run_env(rundir, job_id=request.job_id, run_id=run_id)
        command = [
            self.python,
            "-I",  # the runner is standard library only: no PYTHON* variables, no user site
            str(RUNNER),
            "--state-dir",
            str(rundir.state),
            "--log",
            str(rundir.log),
            "--",
            self.python,
            str(script),
            *(_argv(arg) for arg in request.arguments),
        ]
        if self.template is not None:
            try:
                pid = self.template.run(state_dir=rundir.state, log_path=rundir.log, cwd=rundir.root, env=env,
                                        command=command[command.index("--") + 1 :])
            except (TemplateUnavailable, OSError) as exc:
                log.warning("run %s starts plainly: %s", run_id, exc)
            else:
                with self._lock:
                    self._children[run_id] = pid
                    self._forked[pid] = run_id
                return run_id
        try:
            child = subprocess.Popen(  # noqa: S603 - argv list, never a shell
                command,
                cwd=rundir.root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            raise BackendError(f"could not start the run: {exc}", transient=True) from exc
        with self._lock:
            self._children[run_id] = child
        threading.Thread(target=self._reap, args=(run_id, child), daemon=True).start()
        return run_id

    def run_env(self, rundir: RunDir, *, job_id: str, run_id: str) -> dict[str, str]:
        """The whole environment of a run: an allow-list of the service's, and the run's own."""
        home = rundir.state / "home"  # caches land in the run's state, not the service user's home
        home.mkdir(parents=True, exist_ok=True)
        return self._base_env(home=home) | {
            "RUNYARD_METRICS_FILE": str(rundir.metrics),
            "RUNYARD_RUN_DIR": str(rundir.root),
            "RUNYARD_JOB_ID": job_id,
            "RUNYARD_RUN_ID": run_id,
        }

    def _base_env(self, *, home: Path) -> dict[str, str]:
        """What every run's environment has (the prestarted interpreter imports under it too)."""
        names = (*INHERITED_ENV, *BLAS_THREADS, *self.env_passthrough)
        env = {name: os.environ[name] for name in names if name in os.environ}
        env.setdefault("PATH", os.defpath)
        env |= {"HOME": str(home), "PYTHONUNBUFFERED": "1"}
        # N runs each starting one BLAS thread per core oversubscribe the CPU (3x the CPU time
        # for the same fit, measured): give each run its share unless the operator chose already.
        share = str(max(1, (os.cpu_count() or 1) // self.max_concurrent))
        for variable in BLAS_THREADS:
            env.setdefault(variable, share)
        return env

    def _forked_exit(self, pid: int) -> None:
        """The template reports that a runner it forked ended."""
        with self._lock:
            run_id = self._forked.pop(pid, None)
            if run_id is not None:
                self._children.pop(run_id, None)
        if run_id is not None and self._on_exit is not None:
            self._on_exit()

    def _reap(self, run_id: str, child: subprocess.Popen[bytes]) -> None:
        child.wait()
        with self._lock:
            self._children.pop(run_id, None)
        if self._on_exit is not None:
            self._on_exit()

    def find_run(self, job_id: str, experiment: str, run_dir: Path) -> str | None:  # noqa: ARG002
        state = RunDir(run_dir).state
        run = _read_json(state / "run.json")
        # run.json is written before the runner starts; without runner.json it never did.
        if run is None or run.get("job_id") != job_id:
            return None
        if _read_json(state / "runner.json") is None and not _lock_held(state):
            return None
        return str(run["run_id"])

    def poll(self, runs: Sequence[RunRef]) -> list[RunUpdate]:
        return [self._poll_one(run) for run in runs]

    def _poll_one(self, run: RunRef) -> RunUpdate:
        rundir = RunDir(run.run_dir)
        runner = _read_json(rundir.state / "runner.json")
        started = _parse_time(runner.get("started_at")) if runner else None
        exit_info = _read_json(rundir.state / "exit.json")
        alive = exit_info is None and _lock_held(rundir.state)
        if exit_info is None and not alive:
            # The runner writes exit.json before it lets go of the lock: look once more.
            exit_info = _read_json(rundir.state / "exit.json")
        # Metrics are read after the exit check, so a finished run's last lines are in.
        batch = read_batch(rundir.metrics, run.metrics_cursor)
        metrics, cursor, skipped = batch.samples, batch.cursor, batch.skipped
        if not alive and exit_info is None and runner is None and run.run_id in self._children:
            # Spawned a moment ago; the runner has not taken its lock yet.
            return RunUpdate(run.run_id, "Starting", JobStatus.STARTING, metrics, cursor, metrics_skipped=skipped)
        if alive:
            status = JobStatus.RUNNING if runner else JobStatus.STARTING
            return RunUpdate(run.run_id, "Running" if runner else "Starting", status, metrics, cursor,
                             self._files(run, rundir, final=False), started_at=started, metrics_skipped=skipped)
        if exit_info is None and runner is not None:
            # The runner died (kill -9) and may have left its script running unsupervised.
            _kill_leftovers(int(runner["pgid"]), rundir.root)
        if batch.more:
            # Ended, but its metrics are still being read in batches: end it once they are all in.
            return RunUpdate(run.run_id, "Finalizing", JobStatus.FINALIZING, metrics, cursor,
                             started_at=started, metrics_skipped=skipped)
        outcome = _outcome(run, rundir, exit_info)
        return RunUpdate(
            run.run_id,
            outcome.backend_status,
            outcome.status,
            metrics,
            cursor,
            self._files(run, rundir, final=True),
            exit_code=outcome.exit_code,
            error=outcome.error,
            started_at=started,
            ended_at=outcome.ended_at,
            metrics_skipped=skipped,
        )

    def _files(self, run: RunRef, rundir: RunDir, *, final: bool) -> tuple[str, ...] | None:
        """The run's files: at the end, and at most every FILES_REFRESH_SECONDS while it runs."""
        now = time.monotonic()
        if not final and now - self._listed.get(run.run_id, -FILES_REFRESH_SECONDS) < FILES_REFRESH_SECONDS:
            return None  # unchanged, as far as the poller knows
        if final:
            self._listed.pop(run.run_id, None)
        else:
            self._listed[run.run_id] = now
        return tuple(rundir.list_files(limit=MAX_LISTED_FILES))

    def cancel(self, run: RunRef, *, force: bool) -> None:
        state = RunDir(run.run_dir).state
        runner = _read_json(state / "runner.json")
        if runner is None or not _lock_held(state):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(int(runner["pgid"]), signal.SIGKILL if force else signal.SIGTERM)

    def fetch_file(self, run: RunRef, path: str) -> Path:
        return RunDir(run.run_dir).resolve(path)

    def register_model(
        self,
        run: RunRef,
        *,
        model_name: str,
        model_path: str,
        version: int,
        tags: Mapping[str, str],  # noqa: ARG002
    ) -> RegisteredModel:
        source = RunDir(run.run_dir).resolve(model_path)
        target = self.models_dir / model_name / str(version)
        # Built beside its place and renamed in: two replicas may finish one reservation at once
        # (both ending a sweep), and neither may see the other's half-copied folder.
        staging = target.with_name(f".{target.name}.{new_id()}")
        staging.mkdir(parents=True)
        if source.is_dir():
            shutil.copytree(source, staging / source.name, symlinks=False)
        else:
            shutil.copy2(source, staging / source.name)
        # The registry's copy is out of the run folder and read-only, and its digest is recorded:
        # a later run writing there is refused (for another user) and caught when served.
        _make_read_only(staging)
        if target.exists():
            with contextlib.suppress(OSError):  # another registration may be replacing it too
                _make_writable(target)
            shutil.rmtree(target, ignore_errors=True)  # left by a registration whose commit failed
        try:
            staging.rename(target)
        except OSError:
            # The same reservation's copy, placed a moment ago by a concurrent registration.
            _make_writable(staging)
            shutil.rmtree(staging, ignore_errors=True)
        files = tuple(p.relative_to(target).as_posix() for p in sorted(target.rglob("*")) if p.is_file())
        return RegisteredModel(location=str(target), files=files, sha256=tree_sha256(target / source.name))

    def describe(self) -> list[ComputeInfo]:
        return [ComputeInfo(name=LOCAL, kind="local", state="ready", max_concurrent=self.max_concurrent)]

    def check(self) -> None:
        return None


@dataclass(frozen=True)
class _Outcome:
    backend_status: str
    status: JobStatus
    exit_code: int | None
    error: str | None
    ended_at: datetime


def _outcome(run: RunRef, rundir: RunDir, exit_info: dict[str, Any] | None) -> _Outcome:
    """How a run that is no longer alive ended, from its exit record (or the lack of one)."""
    if exit_info is None:
        if run.cancel_requested:
            return _Outcome("Canceled", JobStatus.CANCELED, None, "canceled on request (process killed)", utcnow())
        error = ("the outcome is unknown: the run's process ended without recording an exit code (its runner "
                 "was killed, or the disk was full); any process left in its group was killed") + _tail(rundir)
        return _Outcome("Failed", JobStatus.FAILED, None, error, utcnow())
    if exit_info.get("exit_code") is None:
        error = str(exit_info.get("error") or "the run recorded no exit code") + _tail(rundir)
        return _Outcome("Failed", JobStatus.FAILED, None, error, _parse_time(exit_info.get("ended_at")) or utcnow())
    code = int(exit_info["exit_code"])
    ended = _parse_time(exit_info.get("ended_at")) or utcnow()
    if code == 0:
        return _Outcome("Completed", JobStatus.COMPLETED, 0, None, ended)
    if run.cancel_requested:
        return _Outcome("Canceled", JobStatus.CANCELED, code, "canceled on request", ended)
    return _Outcome("Failed", JobStatus.FAILED, code, _failure(code, rundir), ended)


def _make_read_only(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        if not path.is_symlink():
            path.chmod(0o555 if path.is_dir() else 0o444)


def _make_writable(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)


def _argv(arg: Arg) -> str:
    if isinstance(arg, DatasetInput):
        if arg.path is None:
            raise BackendError(f"dataset {arg.name} v{arg.version} has no local folder", transient=False)
        return arg.path
    return str(arg)


def _kill_leftovers(pgid: int, root: Path) -> None:
    """SIGKILL the processes of group `pgid` still working in `root` (a reused group id is left alone)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return
    target = str(root.resolve())
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) != pgid or os.readlink(entry / "cwd") != target:
                continue
            os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, ValueError):
            continue  # gone meanwhile, or not ours to inspect
        log.warning("killed process %s left running by the dead runner of %s", entry.name, root.name)


def _lock_held(state: Path) -> bool:
    """True while a runner holds the run's lock, i.e. the runner process is alive."""
    try:
        handle = open(state / "lock", "a")  # noqa: SIM115
    except OSError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def _failure(code: int, rundir: RunDir) -> str:
    reason = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
    return f"the script {reason}" + _tail(rundir)


def _tail(rundir: RunDir) -> str:
    try:
        with open(rundir.log, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 8192))
            lines = handle.read().decode("utf-8", errors="replace").splitlines()[-LOG_TAIL_LINES:]
    except FileNotFoundError:
        return ""
    return "; last log lines:\n" + "\n".join(lines) if lines else ""


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        with open(path) as handle:
            data = json.load(handle)
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
