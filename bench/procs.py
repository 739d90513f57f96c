"""Servers the benchmarks start: loopback ports, readiness, memory, and a clean stop."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port on loopback nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def http(method: str, url: str, body: Any = None, *, timeout: float = 30.0,
         headers: Mapping[str, str] | None = None) -> tuple[int, Any]:
    """One JSON request; returns (status, decoded body or text)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


class Server:
    """A server process in its own session; `stop()` ends that session and nothing else."""

    def __init__(self, name: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
                 cwd: Path | None = None, log: Path) -> None:
        self.name = name
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log_handle = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(  # noqa: S603 - argv list
            list(argv), env={**os.environ, **(env or {})}, cwd=cwd, stdin=subprocess.DEVNULL,
            stdout=self._log_handle, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.ready_seconds: float | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, url: str, *, timeout: float = 120.0, interval: float = 0.01) -> float:
        """Seconds from spawn until `url` answers 200; raises if the process dies or times out."""
        deadline = self.started + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        self.ready_seconds = time.perf_counter() - self.started
                        return self.ready_seconds
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(interval)
        raise TimeoutError(f"{self.name} not ready at {url} after {timeout}s; see {self.log}")

    def _tree(self) -> list[int]:
        """The process and its descendants in its session: a server's workers, not the runs it
        starts in sessions of their own (those are the workload, not the server)."""
        return [self.pid, *(p for p in _descendants(self.pid) if _session(p) == self.pid)]

    def rss_mb(self) -> float:
        """Resident memory of the server's processes, in MB."""
        return sum(_rss_kb(pid) for pid in self._tree()) / 1024

    def cpu_seconds(self) -> float:
        """CPU time (user + system, all threads) the server's processes have used so far."""
        return sum(_cpu_seconds(pid) for pid in self._tree())

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM the session (graceful), SIGKILL what is left after `timeout`."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait(5)
        # Workers a server forked into the same session may outlive their parent.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self._log_handle.close()
        return self.proc.returncode

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    stack = [pid]
    while stack:
        current = stack.pop()
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                children = Path(f"/proc/{current}/task/{tid}/children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                found.append(child)
                stack.append(child)
    return found


def _stat(pid: int) -> list[str]:
    """/proc/<pid>/stat from field 3 on (after the ")" that ends the command name)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _session(pid: int) -> int:
    fields = _stat(pid)
    return int(fields[3]) if fields else -1


def _cpu_seconds(pid: int) -> float:
    fields = _stat(pid)
    # Fields 14 and 15 of stat: utime, stime.
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS if fields else 0.0


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
