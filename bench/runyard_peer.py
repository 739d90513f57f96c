"""runyard as a benchmark subject: start it on loopback, seed it, the requests it is loaded with."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import BENCH_DIR
from bench.procs import LOOPBACK, Server, free_port, http
from bench.seed import Seeded
from bench.wrk import Request

SCRIPTS = BENCH_DIR / "scripts"
TUTORIAL_BODY = {
    "experiment": "bench-exp-0", "source": "trainer", "script": "train.py",
    "arguments": ["--data-folder", {"dataset": "digits", "mode": "mount"}, "--regularization", 0.5],
    "compute_target": "local", "environment": "tutorial-env", "tags": {"team": "vision"},
}


def env_for(data_dir: Path, port: int, *, slots: int = 2, **extra: str) -> dict[str, str]:
    """The service's settings for a benchmark run: loopback, its own data dir, `slots` local slots."""
    return {
        "RUNYARD_HOST": LOOPBACK, "RUNYARD_PORT": str(port), "RUNYARD_DATA_DIR": str(data_dir),
        "RUNYARD_LOCAL_MAX_CONCURRENT": str(slots), "RUNYARD_SOURCES": json.dumps({"bench": str(SCRIPTS)}),
        **extra,
    }


def start(data_dir: Path, *, name: str = "runyard", launcher: str = "service", slots: int = 2,
          extra_env: dict[str, str] | None = None) -> tuple[Server, str]:
    """`python -m service` (one uvicorn worker) on a free loopback port; returns it ready."""
    port = free_port()
    env = env_for(data_dir, port, slots=slots, **(extra_env or {}))
    server = Server(name, [sys.executable, "-m", launcher], env=env, log=data_dir.parent / f"{name}.log")
    base = f"http://{LOOPBACK}:{port}"
    server.wait_ready(base + "/readyz")
    return server, base


@dataclass
class Runyard:
    """A started runyard whose two local slots are held by idle runs, so created jobs stay queued."""

    server: Server
    base: str
    data_dir: Path
    seeded: Seeded
    holders: list[str] = field(default_factory=list)

    def requests(self) -> dict[str, Request]:
        sample, experiment = self.seeded.sample_job_id, self.seeded.experiments[3]
        return {
            "read": Request("GET", f"/v1/jobs/{sample}"),
            "history": Request("GET", f"/v1/jobs/{sample}/metrics/{self.seeded.metric}/history"),
            "list": Request("GET", f"/v1/jobs?experiment={experiment}&status=completed&limit=50"),
            "create": Request("POST", "/v1/jobs", TUTORIAL_BODY),
        }

    def hold_slots(self, slots: int = 2, timeout: float = 60.0) -> None:
        """Fill the local slots with sleeping runs: the benchmark measures the API, not training."""
        for _ in range(slots):
            status, body = http("POST", self.base + "/v1/jobs",
                                {"experiment": "bench-holders", "source": "bench", "script": "idle.py"})
            if status != 201:
                raise RuntimeError(f"could not submit a slot holder: {status} {body}")
            self.holders.append(body["id"])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = [http("GET", f"{self.base}/v1/jobs/{j}")[1]["status"] for j in self.holders]
            if all(s == "running" for s in states):
                return
            time.sleep(0.2)
        raise TimeoutError(f"slot holders not running after {timeout}s: {states}")

    def stop(self) -> None:
        """Cancel the holders, stop the service, and make sure no run it started is left."""
        for job_id in self.holders:
            with contextlib.suppress(OSError):
                http("POST", f"{self.base}/v1/jobs/{job_id}/cancel", timeout=5)
        self.server.stop()
        kill_leftover_runs(self.data_dir)


def kill_leftover_runs(data_dir: Path) -> int:
    """Local runs live in their own sessions and outlive the service: end the ones still alive."""
    killed = 0
    for runner in (data_dir / "runs").glob("*/.runyard/runner.json"):
        if (runner.parent / "exit.json").exists():
            continue
        with contextlib.suppress(ValueError, OSError, KeyError):
            pgid = int(json.loads(runner.read_text())["pgid"])
            if _is_runner(pgid, runner.parent):
                os.killpg(pgid, signal.SIGKILL)
                killed += 1
    return killed


def _is_runner(pid: int, state_dir: Path) -> bool:
    """Only a process whose command line names this run's state dir is ours to end."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return str(state_dir).encode() in cmdline
