"""One stubbed Azure ML workspace shared by several processes (runyard replicas).

`SharedFakeAzure` is a `FakeAzure` whose workspace state (runs, submissions, experiments, compute,
environments, datasets, models) lives in one file. Every SDK call runs under an exclusive lock on
that file: the call loads the state, acts on it, and saves it, so each replica process sees what
the others did, as clients of one Azure workspace do. Its clock is the wall clock, scaled, from one
origin all processes are given, so runs move through their statuses at the same time for all.

A run's `ScriptRunConfig` stays in the process that submitted it (the stored record carries none):
runs are created from it once, at submit; nothing later reads it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import io
import pickle
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.fakes.azureml import FakeAzure, FakeClock, RunRecord, Submission

SHARED = ("runs", "submissions", "experiments", "computes", "environments", "datasets", "models")
_loading = threading.local()  # the SharedFakeAzure whose state is being loaded (see _rebind)


class WallClock(FakeClock):
    """Fake seconds since `origin` (a time.time()), `speed` times faster than real ones: one for all processes."""

    def __init__(self, origin: float, speed: float) -> None:
        super().__init__()
        self._origin, self._speed = origin, speed

    def __call__(self) -> float:
        return (time.time() - self._origin) * self._speed


def _rebind(name: str, state: dict[str, Any]) -> Any:
    """An instance of the loading workspace's own bound fake class `name` (Environment, FileDataset...)."""
    cls = getattr(_loading.azure, name)
    obj = cls.__new__(cls)
    obj.__dict__.update(state)
    return obj


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        # Fake SDK objects are instances of classes bound to one FakeAzure (not importable by name):
        # stored as their state, rebuilt on the loading side with that process's bound class.
        if not isinstance(obj, type) and hasattr(type(obj), "_azure"):
            return _rebind, (type(obj).__name__, dict(obj.__dict__))
        return NotImplemented


class SharedFakeAzure(FakeAzure):
    """A FakeAzure whose workspace state is shared through `path` by every process that opens it."""

    def __init__(self, path: Path, clock: FakeClock) -> None:
        super().__init__(clock)
        self.path = path
        self._turn = threading.RLock()  # this process's threads take turns; the file lock orders processes
        self._depth = 0

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        """Hold the workspace: load its state, act, save it (nested calls share the outer turn)."""
        with self._turn:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            with open(self.path.with_suffix(".lock"), "a+b") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    self._load()
                    self._depth = 1
                    try:
                        yield
                    finally:
                        self._depth = 0
                        self._save()
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)

    def _load(self) -> None:
        if not self.path.exists():
            return
        _loading.azure = self
        try:
            state = pickle.loads(self.path.read_bytes())
        finally:
            _loading.azure = None
        runs: dict[str, RunRecord] = state.pop("runs")
        for run_id, stored in runs.items():
            mine = self.runs.get(run_id)
            if mine is None:
                self.runs[run_id] = stored
                continue
            # Updated in place: Run handles of this process keep pointing at the live record.
            for f in dataclasses.fields(RunRecord):
                if f.name != "config":
                    setattr(mine, f.name, getattr(stored, f.name))
        for name, value in state.items():
            setattr(self, name, value)

    def _save(self) -> None:
        state = {name: getattr(self, name) for name in SHARED}
        state["runs"] = {k: dataclasses.replace(r, config=None) for k, r in self.runs.items()}
        state["submissions"] = [dataclasses.replace(s, config=None) for s in self.submissions]
        buffer = io.BytesIO()
        _Pickler(buffer).dump(state)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_bytes(buffer.getvalue())
        temporary.replace(self.path)

    def submissions_for(self, tag: str, value: str) -> list[Submission]:
        """The submits whose tags carry `tag=value` (read from the shared state)."""
        with self.shared():
            return [s for s in self.submissions if (s.tags or {}).get(tag) == value]
