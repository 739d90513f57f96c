"""Benchmark 4: the local target's throughput and the service's own overhead per job.

`python -m bench.local_throughput [--quick]`: 200 `digits` tutorial jobs submitted at once to a
service with 2 local slots. The run folders say when each process started and exited
(runner.json, exit.json); a light watcher polls the API for each job that has exited, to see
when `completed` becomes visible. Overheads are what the queue does not explain:

- start: process started - max(job created, exit of the process whose slot it took)
- finish: `completed` seen through the API - process exit
"""

from __future__ import annotations

import argparse
import json
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import runyard_peer
from bench.common import (
    WORK_DIR,
    Stats,
    Target,
    machine_info,
    percentile,
    print_table,
    print_targets,
    say,
    write_results,
)
from bench.procs import http

WATCH_INTERVAL = 0.02  # seconds between looks at run folders and at the API
SLOTS = 2
JOB = {"experiment": "bench-throughput", "source": "trainer", "script": "train.py",
       "arguments": ["--data-folder", {"dataset": "digits", "mode": "mount"}, "--regularization", 0.5],
       "compute_target": "local", "environment": "tutorial-env"}


@dataclass(frozen=True)
class Config:
    jobs: int = 200
    quick: bool = False
    # False: RUNYARD_LOCAL_PRESTART=false, every run a new interpreter (the start before issue 17)
    prestart: bool = True


@dataclass
class Track:
    job_id: str
    created: float  # epoch seconds, from the API's created_at
    started: float | None = None  # runner.json started_at
    exited: float | None = None  # exit.json ended_at
    visible: float | None = None  # first time the API answered a terminal status
    status: str | None = None
    updated_at: float | None = None  # the API's updated_at once terminal (the service's own clock)


def _epoch(text: str) -> float:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def watch(base: str, runs: Path, tracks: dict[str, Track], done: threading.Event, deadline: float) -> None:
    """Record start/exit from the run folders; poll the API only for jobs whose process has exited."""
    in_order = [tracks[job_id] for job_id in sorted(tracks)]  # the dispatcher starts jobs in id order
    while not done.is_set() and time.time() < deadline:
        unstarted_checked = 0
        for track in in_order:
            if track.visible is not None:
                continue
            state = runs / track.job_id / ".runyard"
            if track.started is None:
                # Only the next few queued jobs can have started since the last look.
                unstarted_checked += 1
                if unstarted_checked > 3 * SLOTS:
                    break
                runner = _read(state / "runner.json")
                if runner is None:
                    continue
                track.started = _epoch(runner["started_at"])
            if track.exited is None:
                exited = _read(state / "exit.json")
                if exited is None:
                    continue
                track.exited = _epoch(exited["ended_at"])
            status, body = http("GET", f"{base}/v1/jobs/{track.job_id}")
            if status == 200 and body["status"] in ("completed", "failed", "canceled"):
                track.visible, track.status = time.time(), body["status"]
                track.updated_at = _epoch(body["updated_at"])
        if all(t.visible is not None for t in tracks.values()):
            done.set()
        time.sleep(WATCH_INTERVAL)


def run(cfg: Config) -> dict[str, Any]:
    machine = machine_info()
    work = WORK_DIR / "local_throughput"
    shutil.rmtree(work, ignore_errors=True)
    data_dir = work / "data"
    modules_file = work / "modules.json"
    server, base = runyard_peer.start(data_dir, name="runyard-throughput", launcher="bench.serve_runyard",
                                      slots=SLOTS, extra_env={"RUNYARD_BENCH_MODULES_FILE": str(modules_file),
                                                              "RUNYARD_LOCAL_PRESTART": str(cfg.prestart).lower()})
    tracks: dict[str, Track] = {}
    try:
        cpu_before = server.cpu_seconds()
        say(f"submitting {cfg.jobs} digits jobs at once ({SLOTS} slots)")
        submit_started = time.time()
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(lambda _: http("POST", base + "/v1/jobs", JOB), range(cfg.jobs)))
        submit_seconds = time.time() - submit_started
        for status, body in answers:
            if status != 201:
                raise RuntimeError(f"submit failed: {status} {body}")
            tracks[body["id"]] = Track(body["id"], _epoch(body["created_at"]))
        done = threading.Event()
        watcher = threading.Thread(target=watch, args=(base, data_dir / "runs", tracks, done,
                                                       time.time() + 60 + cfg.jobs * 15), daemon=True)
        watcher.start()
        while not done.wait(10):
            finished = sum(t.visible is not None for t in tracks.values())
            say(f"{finished}/{cfg.jobs} jobs finished")
        watcher.join()
        service_cpu = server.cpu_seconds() - cpu_before
    finally:
        server.stop()
        runyard_peer.kill_leftover_runs(data_dir)
    modules = _read(modules_file)
    return report(cfg, machine, list(tracks.values()), submit_seconds, service_cpu, modules)


def report(cfg: Config, machine: dict[str, Any], tracks: list[Track], submit_seconds: float,
           service_cpu: float, modules: dict[str, Any] | None) -> dict[str, Any]:
    complete = [t for t in tracks if None not in (t.started, t.exited, t.visible)]
    failed = [t.job_id for t in tracks if t.status != "completed"]
    by_start = sorted(complete, key=lambda t: t.started or 0)
    exits = sorted(t.exited or 0 for t in complete)
    visibles = sorted(t.visible or 0 for t in complete)
    start_overhead, dispatch, finish, finish_server, runtimes = [], [], [], [], []
    for k, t in enumerate(by_start):
        started, exited, visible = t.started or 0.0, t.exited or 0.0, t.visible or 0.0
        slot_free = exits[k - SLOTS] if k >= SLOTS else 0.0
        start_overhead.append(started - max(t.created, slot_free))
        seen_free = visibles[k - SLOTS] if k >= SLOTS else 0.0
        dispatch.append(started - max(t.created, seen_free))
        finish.append(visible - exited)
        if t.updated_at is not None:
            finish_server.append(t.updated_at - exited)
        runtimes.append(exited - started)
    first = min(t.created for t in tracks)
    last = max(visibles) if visibles else float("nan")
    per_minute = len(complete) / (last - first) * 60 if complete else 0.0
    ideal = SLOTS * 60 / Stats.of(runtimes).median if runtimes else float("nan")

    def row(label: str, values: list[float]) -> list[str]:
        s = Stats.of(values)
        return [label, f"{percentile(values, 50) * 1000:.0f}", f"{percentile(values, 99) * 1000:.0f}",
                f"{s.min * 1000:.0f}", f"{s.max * 1000:.0f}", str(s.n)]

    start_mode = "prestarted interpreter (forks)" if cfg.prestart else "a new interpreter per run"
    print_table(f"Local target: {cfg.jobs} digits jobs, {SLOTS} slots, {start_mode} — overhead per job (ms)",
                ["overhead", "p50", "p99", "min", "max", "n"],
                [row("start: process started - max(created, slot freed by an exit)", start_overhead),
                 row("  of which dispatch: started - max(created, previous completed visible)", dispatch),
                 row("finish: completed visible via API - process exit", finish),
                 row("  server's own updated_at - process exit", finish_server),
                 row("trainer process run time (for scale)", runtimes)])
    azure = modules.get("azure_modules") if modules else None
    print_table("Local target throughput", ["measure", "value"], [
        ["jobs completed / failed", f"{len(complete) - len(failed)} / {len(failed)}"],
        ["submitting all jobs took", f"{submit_seconds:.2f} s"],
        ["jobs per minute (first submit -> last completed)", f"{per_minute:.1f}"],
        ["ideal jobs per minute (2 slots / median run time)", f"{ideal:.1f}"],
        ["slot utilisation", f"{per_minute / ideal:.0%}" if ideal == ideal else "-"],
        ["service CPU per job", f"{service_cpu / max(1, len(tracks)) * 1000:.0f} ms"],
        ["azureml modules loaded by the service", "unknown" if azure is None else str(len(azure))],
    ])
    p = {name: {"p50": percentile(v, 50), "p99": percentile(v, 99)} for name, v in
         (("start", start_overhead), ("finish", finish), ("dispatch", dispatch))}
    targets = [
        Target("jobs per minute (issue 17)", ">= 300", f"{per_minute:.1f} "
               f"({'prestarted' if cfg.prestart else 'new interpreter per run'}; trainer process "
               f"{percentile(runtimes, 50) * 1000:.0f} ms median)", per_minute >= 300),
        Target("start overhead p50 / p99", "<= 100 ms / <= 1 s",
               f"{p['start']['p50'] * 1000:.0f} / {p['start']['p99'] * 1000:.0f} ms",
               p["start"]["p50"] <= 0.1 and p["start"]["p99"] <= 1.0),
        Target("finish overhead p50 / p99", "<= 100 ms / <= 1 s",
               f"{p['finish']['p50'] * 1000:.0f} / {p['finish']['p99'] * 1000:.0f} ms",
               p["finish"]["p50"] <= 0.1 and p["finish"]["p99"] <= 1.0),
        Target("azureml not imported", "0 azureml modules without a workspace",
               "not measured" if azure is None else f"{len(azure)} loaded", None if azure is None else not azure),
        Target("every job completed", f"{cfg.jobs} completed", f"{len(complete) - len(failed)} completed",
               len(complete) - len(failed) == cfg.jobs),
    ]
    print_targets("Local target targets", targets)
    results = {
        "jobs": cfg.jobs, "slots": SLOTS, "prestart": cfg.prestart, "submit_seconds": submit_seconds,
        "jobs_per_minute": per_minute,
        "ideal_jobs_per_minute": ideal, "service_cpu_seconds": service_cpu,
        "overhead_seconds": {
            "start": _summary(start_overhead), "dispatch": _summary(dispatch), "finish": _summary(finish),
            "finish_server_clock": _summary(finish_server)},
        "trainer_run_seconds": _summary(runtimes), "failed_jobs": failed, "loaded_modules": modules,
        "watch_interval_seconds": WATCH_INTERVAL,
    }
    write_results("local_throughput" if cfg.prestart else "local_throughput_plain", config=asdict(cfg),
                  results=results, targets=targets, machine=machine)
    return results


def _summary(values: list[float]) -> dict[str, float]:
    s = Stats.of(values)
    return {"n": s.n, "min": s.min, "p50": percentile(values, 50), "p99": percentile(values, 99), "max": s.max}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.local_throughput", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="40 jobs instead of 200")
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--plain", action="store_true",
                        help="RUNYARD_LOCAL_PRESTART=false: a new interpreter per run (-> local_throughput_plain)")
    args = parser.parse_args(argv)
    jobs = args.jobs or (40 if args.quick else 200)
    run(Config(jobs=jobs, quick=args.quick, prestart=not args.plain))


if __name__ == "__main__":
    main()
