"""Benchmark 1: runyard's HTTP API beside MLflow's tracking server and a bare FastAPI + SQLModel app.

`python -m bench.http_api [--quick] [--only OP ...]`. wrk loads each server in turn, interleaved, at
concurrency 1, 8 and 32; every ratio is computed per repeat from runs made side by side. `--only`
loads just those operations (e.g. `--only create`) and skips the cold starts and the list scaling:
a quick before/after of one path, whose results go to bench/results/http_api-<ops>.json.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import sys
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from bench import mlflow_peer, runyard_peer
from bench.common import WORK_DIR, Stats, Target, machine_info, print_table, print_targets, ratio, say, write_results
from bench.procs import LOOPBACK, Server, free_port, http
from bench.seed import seed_jobs
from bench.wrk import Request, WrkResult, ensure_wrk, run_wrk

CONCURRENCY = (1, 8, 32)
READS = ("read", "history", "list")
OPS = (*READS, "create")
PEERS = ("runyard", "mlflow", "bare")


@dataclass(frozen=True)
class Config:
    repeats: int = 5
    seconds: int = 2
    jobs: int = 10_000
    big_jobs: int = 1_000_000
    cold_starts: int = 5
    mlflow_job_runner: bool = False  # one more MLflow start with its job runner on (~1 GB more)
    quick: bool = False
    ops: tuple[str, ...] = OPS

    @classmethod
    def make(cls, quick: bool, mlflow_job_runner: bool = False, ops: tuple[str, ...] = OPS) -> Config:
        if quick:
            return cls(repeats=3, seconds=1, big_jobs=100_000, cold_starts=3, mlflow_job_runner=mlflow_job_runner,
                       quick=True, ops=ops)
        return cls(mlflow_job_runner=mlflow_job_runner, ops=ops)

    @property
    def partial(self) -> bool:
        return set(self.ops) != set(OPS)


@dataclass
class Subject:
    name: str
    server: Server
    base: str
    requests: dict[str, Request]


Key = tuple[str, str, int]  # (peer, op, concurrency)


def run(cfg: Config) -> dict[str, Any]:
    """Everything in the issue's benchmark 1; returns the results that were written."""
    wrk = ensure_wrk()
    if wrk is None:
        print("http_api: SKIPPED (wrk is not installed and could not be installed)")
        return {}
    work = WORK_DIR / "http_api"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    machine = machine_info()
    say(f"seeding runyard with {cfg.jobs:,} jobs")
    data_10k = work / "runyard-10k"
    seeded = seed_jobs(f"sqlite:///{data_10k / 'runyard.db'}", jobs=cfg.jobs)
    mlflow_exe = mlflow_peer.ensure_mlflow()

    startup = {} if cfg.partial else cold_starts(cfg, data_10k, mlflow_exe, work)
    subjects: dict[str, Subject] = {}
    runyard: runyard_peer.Runyard | None = None
    mlflow_seed: mlflow_peer.MlflowSeeded | None = None
    try:
        server, base = runyard_peer.start(data_10k)
        runyard = runyard_peer.Runyard(server, base, data_10k, seeded)
        runyard.hold_slots()
        subjects["runyard"] = Subject("runyard", server, base, runyard.requests())
        subjects["bare"] = start_bare(work / "bare", rows=cfg.jobs)
        if mlflow_exe is not None:
            server, base = mlflow_peer.start(mlflow_exe, work / "mlflow")
            mlflow_seed = mlflow_peer.seed(base, work / "mlflow" / "mlflow.db", runs=cfg.jobs)
            subjects["mlflow"] = Subject("mlflow", server, base, mlflow_peer.requests(mlflow_seed))
        check_requests(subjects)
        load = load_all(cfg, wrk, subjects, work / "lua")
    finally:
        for name, subject in subjects.items():
            if name != "runyard":
                subject.server.stop()
        if runyard is not None:
            runyard.stop()
    if cfg.partial:
        return report_partial(cfg, machine, load)
    scaling = list_scaling(cfg, wrk, work, seeded.experiments[3])
    return report(cfg, machine, load, startup, scaling, seeded_seconds=seeded.seconds,
                  mlflow_seeded=mlflow_seed is not None)


def start_bare(folder: Path, *, rows: int) -> Subject:
    """The bare app with `rows` items stored, so its read-by-key is over a table of the same size."""
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "bare.db"
    port = free_port()
    server = Server("bare", [sys.executable, "-m", "bench.bare_app", "--db", str(db), "--port", str(port)],
                    log=folder / "bare.log")
    base = f"http://{LOOPBACK}:{port}"
    server.wait_ready(base + "/healthz")
    with sqlite3.connect(db) as conn:
        conn.executemany("INSERT INTO item (id, name, status) VALUES (?, ?, ?)",
                         [(f"{i:026d}", f"item-{i}", "completed") for i in range(rows)])
    sample = f"{rows - 1:026d}"
    return Subject("bare", server, base, {"read": Request("GET", f"/items/{sample}"),
                                          "create": Request("POST", "/items", {"name": "bench"})})


def check_requests(subjects: dict[str, Subject]) -> None:
    """Each request once before the load: a 4xx here would make every number meaningless."""
    for subject in subjects.values():
        for op, request in subject.requests.items():
            status, body = http(request.method, subject.base + request.path, request.body)
            if status not in (200, 201):
                raise RuntimeError(f"{subject.name} {op}: {status} {str(body)[:300]}")
            if op == "list":
                found = len(body.get("items", body.get("runs", [])))
                say(f"{subject.name} list returns {found} items per page")


def load_all(cfg: Config, wrk: str, subjects: dict[str, Subject], lua: Path) -> dict[Key, list[WrkResult]]:
    """Reads first (repeats x ops x concurrency x peers, interleaved), creates last.

    Creates go last because MLflow with one worker can hang on 32 concurrent creates.
    """
    results: dict[Key, list[WrkResult]] = defaultdict(list)
    order = [p for p in PEERS if p in subjects]
    for rep in range(cfg.repeats):
        rotated = order[rep % len(order):] + order[:rep % len(order)]  # no peer always goes first
        for op in (op for op in READS if op in cfg.ops):
            for c in CONCURRENCY:
                for name in rotated:
                    _one(results, wrk, subjects[name], op, c, cfg, lua)
        say(f"reads: repeat {rep + 1}/{cfg.repeats} done")
    for rep in range(cfg.repeats if "create" in cfg.ops else 0):
        for c in CONCURRENCY:
            for name in order:
                _one(results, wrk, subjects[name], "create", c, cfg, lua)
                if name == "mlflow" and c == CONCURRENCY[-1]:
                    wait_recovered(subjects[name])
        say(f"creates: repeat {rep + 1}/{cfg.repeats} done")
    return results


def _one(results: dict[Key, list[WrkResult]], wrk: str, subject: Subject, op: str, c: int, cfg: Config,
         lua: Path) -> None:
    request = subject.requests.get(op)
    if request is None:
        return
    results[(subject.name, op, c)].append(measure(wrk, subject.server, subject.base, request, c, cfg.seconds, lua))


def measure(wrk: str, server: Server, base: str, request: Request, c: int, seconds: int, lua: Path) -> WrkResult:
    """One wrk run, with the CPU time the server spent meanwhile."""
    before = server.cpu_seconds()
    result = run_wrk(wrk, base, request, connections=c, seconds=seconds, script_dir=lua)
    return replace(result, server_cpu_s=server.cpu_seconds() - before)


def wait_recovered(subject: Subject, timeout: float = 60.0) -> float:
    """Seconds until a read answers again (MLflow's pool may be stuck after a c=32 create run)."""
    started = time.monotonic()
    read = subject.requests["read"]
    while time.monotonic() - started < timeout:
        try:
            status, _ = http(read.method, subject.base + read.path, timeout=5)
            if status == 200:
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.5)
    return timeout


def cold_starts(cfg: Config, data_10k: Path, mlflow_exe: Path | None, work: Path) -> dict[str, Any]:
    """Spawn -> ready (runyard /readyz, MLflow /health) and the idle RSS a few seconds later."""
    out: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))

    def sample(label: str, server: Server) -> None:
        out[label]["ready_s"].append(server.ready_seconds or float("nan"))
        time.sleep(2.0)
        out[label]["rss_mb"].append(server.rss_mb())
        server.stop()

    say("cold starts: runyard")
    for i in range(cfg.cold_starts):
        server, _ = runyard_peer.start(data_10k)
        sample("runyard (10k jobs stored)", server)
        server, _ = runyard_peer.start(work / f"runyard-fresh-{i}", name=f"runyard-fresh-{i}")
        sample("runyard (new data dir: migrate + seed)", server)
    if mlflow_exe is not None:
        say("cold starts: MLflow (about 10-30 s each)")
        server, _ = mlflow_peer.start(mlflow_exe, work / "mlflow-cold")
        sample("mlflow (new store: migrate)", server)
        for _ in range(cfg.cold_starts):
            server, _ = mlflow_peer.start(mlflow_exe, work / "mlflow-cold")
            sample("mlflow (existing store)", server)
        if cfg.mlflow_job_runner:
            server, _ = mlflow_peer.start(mlflow_exe, work / "mlflow-cold", job_execution=True)
            sample("mlflow (existing store, job runner on)", server)
    return {label: {k: Stats.of(v) for k, v in d.items()} for label, d in out.items()}


def list_scaling(cfg: Config, wrk: str, work: Path, experiment: str) -> dict[str, Any]:
    """The same filtered list over 10k and over `big_jobs` stored jobs, side by side.

    Both databases are seeded afresh: the one the load used now holds queued jobs that a
    restarted service would start running.
    """
    data_10k, data_big = work / "runyard-10k-list", work / "runyard-big"
    seed_jobs(f"sqlite:///{data_10k / 'runyard.db'}", jobs=cfg.jobs)
    say(f"seeding runyard with {cfg.big_jobs:,} jobs")
    big = seed_jobs(f"sqlite:///{data_big / 'runyard.db'}", jobs=cfg.big_jobs)
    say(f"seeded in {big.seconds:.1f}s")
    request = Request("GET", f"/v1/jobs?experiment={experiment}&status=completed&limit=50")
    deep = Request("GET", "/v1/jobs?status=failed&limit=50")
    servers: dict[str, tuple[Server, str]] = {}
    results: dict[str, list[WrkResult]] = defaultdict(list)
    try:
        servers["10k"] = runyard_peer.start(data_10k, name="runyard-10k-list")
        servers["big"] = runyard_peer.start(data_big, name="runyard-big")
        for _ in range(cfg.repeats):
            for name, (server, base) in servers.items():
                for label, req in (("filtered", request), ("status only", deep)):
                    for c in (1, 8):
                        results[f"{name}|{label}|{c}"].append(
                            measure(wrk, server, base, req, c, cfg.seconds, work / "lua"))
    finally:
        for server, _ in servers.values():
            server.stop()
    shutil.rmtree(data_big, ignore_errors=True)
    return {"big_jobs": cfg.big_jobs, "seed_seconds": big.seconds, "results": results}


def _stats(runs: list[WrkResult]) -> dict[str, Any]:
    return {
        "rps": Stats.of(r.rps for r in runs), "p50_ms": Stats.of(r.p50_ms for r in runs),
        "p99_ms": Stats.of(r.p99_ms for r in runs), "cpu_ms": Stats.of(r.cpu_ms_per_request for r in runs),
        "requests": sum(r.requests for r in runs),
        "errors": sum(r.error_count for r in runs),
        "error_kinds": {k: sum(r.errors.get(k, 0) for r in runs) for k in ("connect", "read", "write", "status",
                                                                          "timeout")},
    }


def _paired(a: list[WrkResult], b: list[WrkResult], attr: str) -> Stats:
    return Stats.of(ratio(getattr(x, attr), getattr(y, attr)) for x, y in zip(a, b, strict=False))


def load_tables(cfg: Config, load: dict[Key, list[WrkResult]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Prints the load table and the paired ratios; returns both, keyed `peer|op|c` and `op|c`."""
    table = []
    summary: dict[str, Any] = {}
    for op in cfg.ops:
        for c in CONCURRENCY:
            for peer in PEERS:
                runs = load.get((peer, op, c))
                if not runs:
                    continue
                s = _stats(runs)
                summary[f"{peer}|{op}|{c}"] = s
                table.append([op, c, peer, s["rps"].fmt(0), s["p50_ms"].fmt(1), s["p99_ms"].fmt(1),
                              s["cpu_ms"].fmt(2), f"{s['requests']:,}", s["errors"]])
    print_table(f"HTTP API: requests/s and latency, median (min–max) over {cfg.repeats} runs of {cfg.seconds}s",
                ["op", "c", "server", "req/s", "p50 ms", "p99 ms", "server CPU ms/req", "requests", "errors"], table)

    ratios: dict[str, Any] = {}
    rows = []
    for op in cfg.ops:
        for c in CONCURRENCY:
            mine = load.get(("runyard", op, c), [])
            vs_mlflow = _paired(mine, load.get(("mlflow", op, c), []), "rps")
            bare_op = "create" if op == "create" else "read"
            vs_bare = _paired(mine, load.get(("bare", bare_op, c), []), "rps")
            p99_bare = _paired(mine, load.get(("bare", bare_op, c), []), "p99_ms")
            # CPU per request, peer / runyard: how many times less CPU runyard needs for the same work.
            cpu_mlflow = _paired(load.get(("mlflow", op, c), []), mine, "cpu_ms_per_request")
            cpu_bare = _paired(load.get(("bare", bare_op, c), []), mine, "cpu_ms_per_request")
            ratios[f"{op}|{c}"] = {"rps_vs_mlflow": vs_mlflow, "rps_vs_bare": vs_bare, "p99_vs_bare": p99_bare,
                                   "cpu_efficiency_vs_mlflow": cpu_mlflow, "cpu_efficiency_vs_bare": cpu_bare}
            rows.append([op, c, vs_mlflow.fmt(2), cpu_mlflow.fmt(2), f"{vs_bare.fmt(2)} (vs bare {bare_op})",
                         cpu_bare.fmt(2), p99_bare.fmt(2)])
    print_table("runyard / peer, paired per repeat: median (min–max); CPU columns: peer CPU/req ÷ runyard CPU/req",
                ["op", "c", "req/s vs MLflow", "CPU vs MLflow", "req/s vs bare", "CPU vs bare", "p99 vs bare"], rows)
    return summary, ratios


def report_partial(cfg: Config, machine: dict[str, Any], load: dict[Key, list[WrkResult]]) -> dict[str, Any]:
    """The load and ratio tables of the operations `--only` picked; no targets (they need every row)."""
    summary, ratios = load_tables(cfg, load)
    results = {"load": summary, "ratios": ratios}
    write_results(f"http_api-{'-'.join(cfg.ops)}", config=asdict(cfg), results=results, targets=[], machine=machine)
    return results


def report(cfg: Config, machine: dict[str, Any], load: dict[Key, list[WrkResult]], startup: dict[str, Any],
           scaling: dict[str, Any], *, seeded_seconds: float, mlflow_seeded: bool) -> dict[str, Any]:
    summary, ratios = load_tables(cfg, load)
    start_rows = [[label, d["ready_s"].fmt(2), d["rss_mb"].fmt(0), d["ready_s"].n] for label, d in startup.items()]
    print_table("Cold start (spawn -> ready) and idle RSS (process tree)", ["server", "ready s", "idle RSS MB", "n"],
                start_rows)

    scale_rows = []
    scale_summary: dict[str, Any] = {}
    for key, runs in scaling["results"].items():
        name, label, c = key.split("|")
        s = _stats(runs)
        scale_summary[key] = s
        stored = f"{cfg.jobs:,}" if name == "10k" else f"{scaling['big_jobs']:,}"
        scale_rows.append([label, c, stored, s["rps"].fmt(0), s["p50_ms"].fmt(2), s["p99_ms"].fmt(2),
                           s["cpu_ms"].fmt(2), s["errors"]])
    print_table("List scaling: the same page over more stored jobs",
                ["query", "c", "jobs stored", "req/s", "p50 ms", "p99 ms", "CPU ms/req", "errors"], scale_rows)
    scale_ratio = {k: _paired(scaling["results"][f"big|{k}"], scaling["results"][f"10k|{k}"], "p50_ms")
                   for k in ("filtered|1", "filtered|8", "status only|1", "status only|8")}

    targets = judge(load, ratios, startup, scale_ratio, mlflow_seeded, scaling["big_jobs"])
    print_targets("HTTP API targets", targets)
    results = {"load": summary, "ratios": ratios, "startup": startup,
               "list_scaling": {"big_jobs": scaling["big_jobs"], "seed_seconds": scaling["seed_seconds"],
                                "results": scale_summary, "p50_ratio_big_vs_10k": scale_ratio},
               "seed_seconds_10k": seeded_seconds}
    write_results("http_api", config=asdict(cfg), results=results, targets=targets, machine=machine)
    return results


def judge(load: dict[Key, list[WrkResult]], ratios: dict[str, Any], startup: dict[str, Any],
          scale_ratio: dict[str, Stats], mlflow_seeded: bool, big_jobs: int) -> list[Target]:
    targets = []
    if mlflow_seeded:
        reads = [(ratios[f"{op}|{c}"]["rps_vs_mlflow"].median, op, c) for op in READS for c in CONCURRENCY]
        worst_read = min((r for r in reads if r[0] == r[0]), default=(float("nan"), "-", 0))
        targets.append(Target("reads vs MLflow", ">= 4x req/s, every read, every c",
                              f"lowest {worst_read[0]:.1f}x ({worst_read[1]}, c={worst_read[2]})",
                              worst_read[0] >= 4 if worst_read[0] == worst_read[0] else None))
        creates = [(ratios[f"create|{c}"]["rps_vs_mlflow"].median, c) for c in CONCURRENCY]
        finite = [x for x in creates if x[0] == x[0]]
        worst = min(finite) if finite else (float("nan"), 0)
        zero = [c for c in CONCURRENCY if sum(r.requests for r in load.get(("mlflow", "create", c), [])) == 0]
        note = f"; MLflow completed 0 creates at c={zero}" if zero else ""
        targets.append(Target("create vs MLflow", ">= 2x req/s", f"lowest {worst[0]:.1f}x (c={worst[1]}){note}",
                              bool(finite) and worst[0] >= 2))
    else:
        targets.append(Target("vs MLflow", ">= 4x reads, >= 2x create", "MLflow not installed", None))
    reads_bare = [(ratios[f"read|{c}"]["rps_vs_bare"].median, c) for c in CONCURRENCY]
    worst_bare = min(reads_bare)
    targets.append(Target("read vs bare app", ">= 0.6x req/s", f"lowest {worst_bare[0]:.2f}x (c={worst_bare[1]})",
                          worst_bare[0] >= 0.6))
    p99 = max((ratios[f"{op}|32"]["p99_vs_bare"].median, op) for op in ("read", "create"))
    targets.append(Target("p99 at c=32 vs bare app", "<= 1.5x", f"highest {p99[0]:.2f}x ({p99[1]})", p99[0] <= 1.5))
    errors = sum(r.error_count for (peer, _op, c), runs in load.items() if peer == "runyard" and c == 32
                 for r in runs)
    targets.append(Target("c=32: every request completes", "0 errors", f"{errors} errors", errors == 0))
    lst = scale_ratio["filtered|1"]
    targets.append(Target(f"list over {big_jobs:,} vs 10,000", "<= 2x latency",
                          f"{lst.median:.2f}x p50 at c=1 (c=8: {scale_ratio['filtered|8'].median:.2f}x)",
                          lst.median <= 2))
    ready = startup["runyard (10k jobs stored)"]["ready_s"]
    fresh = startup["runyard (new data dir: migrate + seed)"]["ready_s"]
    targets.append(Target("cold start to /readyz", "<= 1.5 s",
                          f"{ready.median:.2f} s (new data dir {fresh.median:.2f} s)", ready.median <= 1.5))
    rss = startup["runyard (10k jobs stored)"]["rss_mb"]
    targets.append(Target("idle RSS", "<= 150 MB", f"{rss.median:.0f} MB", rss.median <= 150))
    return targets


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.http_api", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter runs, fewer repeats, 100k not 1M jobs")
    parser.add_argument("--mlflow-job-runner", action="store_true",
                        help="also start MLflow once with its job runner on, for its idle RSS")
    parser.add_argument("--only", nargs="+", choices=OPS, metavar="OP",
                        help=f"load only these operations ({', '.join(OPS)}); no cold starts, no list scaling")
    args = parser.parse_args(argv)
    ops = tuple(op for op in OPS if op in args.only) if args.only else OPS
    run(Config.make(args.quick, args.mlflow_job_runner, ops))


if __name__ == "__main__":
    main()
