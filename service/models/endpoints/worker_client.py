"""The service's side of one model worker process: start it, call it, measure it, stop it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.models.endpoints import protocol

_PAGE = os.sysconf("SC_PAGE_SIZE")
_STOP_GRACE_SECONDS = 5.0


class WorkerFailed(Exception):
    """The worker could not load its model, or died; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ModelInfo:
    """What a worker reported about the model it loaded."""

    kind: str
    n_features: int | None
    classes: list[Any] | None
    probabilities: bool


@dataclass(frozen=True)
class WorkerSpec:
    model_path: Path
    memory_limit_mb: int
    load_timeout_seconds: float
    log_path: Path
    python: str = sys.executable


class Worker:
    """One process holding one loaded model; one call at a time (the pool sees to it)."""

    def __init__(
        self, process: asyncio.subprocess.Process, info: ModelInfo, log_path: Path,
        exported: tuple[dict[str, Any], bytes] | None = None,
    ) -> None:  # fmt: skip
        self.process = process
        self.info = info
        self.log_path = log_path
        # A linear model's parameters and probe answers (linear.py), as the worker reported them at load.
        self.exported = exported

    @property
    def pid(self) -> int:
        return self.process.pid

    @classmethod
    async def start(cls, spec: WorkerSpec) -> Worker:
        """Spawn a worker and wait until its model is loaded (raises `WorkerFailed`)."""
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        # One BLAS thread: workers are many and short calls gain nothing from threads (2 cores).
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        with open(spec.log_path, "ab") as log:
            process = await asyncio.create_subprocess_exec(
                spec.python, "-m", "service.models.endpoints.worker",
                "--model", str(spec.model_path), "--memory-limit-mb", str(spec.memory_limit_mb),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log,
                env=env, start_new_session=True,
            )  # fmt: skip
        try:
            frame = await asyncio.wait_for(_read(process), spec.load_timeout_seconds)
        except TimeoutError:
            await _kill(process)
            raise WorkerFailed(f"the model did not load within {spec.load_timeout_seconds:g}s") from None
        except BaseException:
            await _kill(process)
            raise
        if frame is None:
            code = await process.wait()
            raise WorkerFailed(f"the model worker exited with code {code} while loading{_tail(spec.log_path)}")
        hello, parameters = frame
        if not hello.get("ok"):
            await _kill(process)
            raise WorkerFailed(f"the model could not be loaded: {hello.get('error')}")
        info = ModelInfo(
            kind=str(hello.get("kind")),
            n_features=hello.get("n_features"),
            classes=hello.get("classes"),
            probabilities=bool(hello.get("probabilities")),
        )
        linear = hello.get("linear")
        return cls(process, info, spec.log_path, (linear, parameters) if isinstance(linear, dict) else None)

    async def call(self, header: dict[str, Any], payload: bytes, timeout: float) -> dict[str, Any]:
        """Send one frame and read the reply; a dead or hung worker raises `WorkerFailed`."""
        stdin = self.process.stdin
        assert stdin is not None
        try:
            # asyncio.timeout, not wait_for: wait_for wraps the read in a task of its own, one more
            # task and loop pass on every score.
            stdin.write(protocol.encode(header, payload))
            await stdin.drain()
            async with asyncio.timeout(timeout):
                frame = await _read(self.process)
        except TimeoutError:
            await _kill(self.process)
            raise WorkerFailed(f"the model did not answer within {timeout:g}s; its worker was stopped") from None
        except (ConnectionError, BrokenPipeError):
            frame = None
        if frame is None:
            await _kill(self.process)
            code = self.process.returncode
            raise WorkerFailed(f"the model worker exited (code {code}){_tail(self.log_path)}")
        return frame[0]

    def rss_bytes(self) -> int | None:
        """Resident memory of the worker now; None once it is gone."""
        try:
            with open(f"/proc/{self.pid}/statm") as handle:
                return int(handle.read().split()[1]) * _PAGE
        except (OSError, ValueError, IndexError):
            return None

    async def stop(self) -> None:
        """Close its stdin (it exits at end of input); kill it if it lingers."""
        if self.process.returncode is not None:
            return
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), _STOP_GRACE_SECONDS)
        except TimeoutError:
            await _kill(self.process)


async def _read(process: asyncio.subprocess.Process) -> tuple[dict[str, Any], bytes] | None:
    stdout = process.stdout
    assert stdout is not None
    try:
        prefix = await stdout.readexactly(4)
        header: dict[str, Any] = protocol.json_loads(await stdout.readexactly(protocol.header_length(prefix)))
        length = protocol.payload_length(header)
        payload = await stdout.readexactly(length) if length else b""
    except (asyncio.IncompleteReadError, ValueError):
        return None
    return header, payload


async def _kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 9)
    with contextlib.suppress(ProcessLookupError):
        await process.wait()


def _tail(log_path: Path, lines: int = 5) -> str:
    try:
        text = log_path.read_bytes()[-4096:].decode("utf-8", errors="replace")
    except OSError:
        return ""
    last = [line for line in text.splitlines() if line.strip()][-lines:]
    return ("; last worker output:\n" + "\n".join(last)) if last else ""
