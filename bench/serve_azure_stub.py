"""`python -m bench.serve_azure_stub ...`: runyard with `cpu-cluster` on the stubbed Azure ML
workspace (tests/fakes/azureml.py), `N` runs already active, served by uvicorn like `python -m
service`. The stub runs on a real-time clock.

Benchmark-only additions: GET /bench/cycles lists every poller cycle (wall time, process CPU
time, SDK calls by name, counted by the stub); POST /bench/probes makes some runs change status
(Running -> Completed or Finalizing) at times it returns.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn

from bench.seed import Seeded, job_id, run_id, seed_jobs
from service.app import create_app
from service.backends.azureml import JOB_TAG, AzureMLBackend
from service.backends.base import Backend
from service.backends.local import LocalBackend
from service.core.logs import configure_logging
from service.core.settings import Settings
from service.jobs.poller import Poller
from service.server import settle_heap
from tests.fakes.azureml import WORKSPACE_SETTINGS, FakeAzure, FakeClock, RunScript

TARGET = "cpu-cluster"
EXPERIMENTS_SPREAD = 10


class RealClock(FakeClock):
    """The stub's clock, moving in real time (seconds since start)."""

    def __init__(self) -> None:
        super().__init__()
        self.started = time.monotonic()
        self.started_epoch = time.time()

    def __call__(self) -> float:
        return time.monotonic() - self.started


class CycleLog:
    """What each poller cycle cost: wall and process CPU time, SDK calls by name."""

    def __init__(self, fake: FakeAzure) -> None:
        self.fake = fake
        self.cycles: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def wrap(self, tick: Any) -> Any:
        async def measured(poller: Poller) -> None:
            calls_before = Counter(self.fake.calls)
            wall, cpu, epoch = time.perf_counter(), time.process_time(), time.time()
            try:
                await tick(poller)
            finally:
                calls = Counter(self.fake.calls)
                calls.subtract(calls_before)
                with self._lock:
                    self.cycles.append({"started": epoch, "wall_s": time.perf_counter() - wall,
                                        "cpu_s": time.process_time() - cpu,
                                        "sdk_calls": {k: v for k, v in calls.items() if v}})
        return measured


def _scripted(script: RunScript) -> Callable[[Any], RunScript]:
    return lambda _config: script


def add_runs(fake: FakeAzure, *, runs: int, experiments: list[str], seeded: Seeded) -> None:
    """One `Running` run per seeded job, tagged with its job id, under the job's run id."""
    fake.script_for = _scripted(RunScript(statuses=[(0, "Running")]))
    for i in range(runs):
        fake.add_run(experiment=experiments[i % len(experiments)], tags={JOB_TAG: job_id(seeded, i)},
                     run_id=run_id(i))


def start_probes(fake: FakeAzure, clock: RealClock, seeded: Seeded, *, runs: int, probes: int, delay: float,
                 gap: float) -> list[dict[str, Any]]:
    """From `delay` seconds on, every `gap` s one run (spread over runs and experiments) moves on:
    even ones to Completed, odd ones to Finalizing. Returns when each change happens."""
    every = max(1, runs // max(1, probes))
    plan = []
    for k in range(min(probes, runs)):
        i = k * every + k % min(every, EXPERIMENTS_SPREAD)
        record = fake.runs[run_id(i)]
        change = clock() + delay + k * gap
        new_status = "Completed" if k % 2 == 0 else "Finalizing"
        # The stub reads a run's script on every status call; its times count from the submit.
        record.script = RunScript(statuses=[(0, "Running"), (change - record.submitted_at, new_status)])
        plan.append({"job_id": job_id(seeded, i), "run_id": run_id(i), "status": new_status.lower(),
                     "change_at_epoch": clock.started_epoch + change})
    return plan


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--runs", type=int, required=True)
    parser.add_argument("--experiments", type=int, default=10)
    parser.add_argument("--poll-interval", type=float, default=2.0)
    args = parser.parse_args()

    clock = RealClock()
    fake = FakeAzure(clock)
    fake.add_compute(TARGET, nodes=1)
    seeded = seed_jobs(f"sqlite:///{args.data_dir / 'runyard.db'}", jobs=args.runs, experiments=args.experiments,
                       status="running", compute_target=TARGET)
    add_runs(fake, runs=args.runs, experiments=seeded.experiments, seeded=seeded)

    settings = Settings(data_dir=args.data_dir, host="127.0.0.1", port=args.port,
                        poll_interval_seconds=args.poll_interval, log_level="WARNING",
                        **WORKSPACE_SETTINGS)
    cycles = CycleLog(fake)
    Poller.tick = cycles.wrap(Poller.tick)  # type: ignore[method-assign]

    def backends(cfg: Settings) -> list[Backend]:
        return [LocalBackend(max_concurrent=cfg.local_max_concurrent, models_dir=cfg.models_dir),
                AzureMLBackend(cfg, sdk=fake.sdk())]

    app = create_app(settings, backends=backends)

    @app.get("/bench/cycles", include_in_schema=False)
    def bench_cycles() -> dict[str, Any]:
        with cycles._lock:
            return {"cycles": list(cycles.cycles), "total_calls": dict(fake.calls),
                    "seed_seconds": seeded.seconds}

    @app.post("/bench/probes", include_in_schema=False)
    def bench_probes(probes: int = 40, delay: float = 1.0, gap: float = 0.25) -> list[dict[str, Any]]:
        return start_probes(fake, clock, seeded, runs=args.runs, probes=probes, delay=delay, gap=gap)

    configure_logging(settings.log_level, settings.log_format)
    settle_heap()  # as serve() does (the stub's runs, made before, are frozen with the rest)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", log_config=None, access_log=False)


if __name__ == "__main__":
    main()
