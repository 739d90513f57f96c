"""`python -m bench.replicas`: runyard on PostgreSQL, several replicas (issue 13's closing figures).

1. Claim throughput: N queued jobs on one PostgreSQL database, dispatched by 1 or by 3 replica
   processes (each its own `Dispatcher`, engine and pool, every replica ticking as fast as it can)
   to a backend that accepts instantly; jobs dispatched per second = N / (last `submitted_at` -
   start). Paired runs (1 then 3) on fresh databases.
2. Takeover: replica A runs 3 local jobs, replica B starts, A is SIGKILLed; seconds until B holds
   each job (lease 3 s with a 0.5 s poll, and 10 s with the default 2 s poll).
3. Create / read through HTTP: `python -m service` on SQLite, then on PostgreSQL (same seeded
   jobs, the two local slots held so that created jobs stay queued), wrk at c=1/8/32; the ratio
   PostgreSQL / SQLite of requests per second, paired per repeat.

Needs the PostgreSQL server of the tests (`RUNYARD_TEST_POSTGRES_URL`, default 127.0.0.1:5432).
The machine is shared: give min and median of the repeats, and compare ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import shutil
import signal
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import create_engine, func, make_url, pool, text
from sqlmodel import Session, col, select

from bench import runyard_peer
from bench.common import WORK_DIR, machine_info, print_table, say, write_results
from bench.procs import http
from bench.seed import seed_jobs
from bench.wrk import ensure_wrk, run_wrk
from service.backends.base import ComputeInfo, RegisteredModel, RunRef, RunUpdate, SubmitRequest
from service.backends.targets import Backends
from service.catalog import service as catalog
from service.core.settings import Settings
from service.core.states import JobStatus
from service.db import migrate
from service.db.engine import Database
from service.db.tables import Job
from service.db.uow import uow
from service.jobs import service as jobs
from service.jobs.dispatcher import Dispatcher
from service.jobs.schemas import JobCreate
from service.runtime import Runtime

ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
TARGET = "instant"


class InstantBackend:
    """Accepts every run at once and never reports on it: the dispatcher's cost alone."""

    kind: Literal["local", "amlcompute"] = "amlcompute"

    def targets(self) -> Sequence[str]:
        return [TARGET]

    def capacity(self, target: str) -> int | None:  # noqa: ARG002
        return None

    def submit(self, request: SubmitRequest) -> str:
        return f"run-{request.job_id}"

    def find_run(self, job_id: str, experiment: str, run_dir: Path) -> str | None:  # noqa: ARG002
        return None

    def poll(self, runs: Sequence[RunRef]) -> list[RunUpdate]:  # noqa: ARG002
        return []

    def cancel(self, run: RunRef, *, force: bool) -> None:
        pass

    def fetch_file(self, run: RunRef, path: str) -> Path:
        return run.run_dir / path

    def register_model(self, run: RunRef, *, model_name: str, model_path: str, version: int,  # noqa: ARG002
                       tags: Mapping[str, str]) -> RegisteredModel:  # noqa: ARG002
        raise NotImplementedError

    def describe(self) -> list[ComputeInfo]:
        return [ComputeInfo(name=TARGET, kind="amlcompute", state="ready")]

    def check(self) -> None:
        pass

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def set_exit_listener(self, on_exit: Any) -> None:
        pass


@contextmanager
def scratch_database(admin_url: str) -> Iterator[str]:
    admin = create_engine(admin_url, poolclass=pool.NullPool, isolation_level="AUTOCOMMIT")
    name = f"runyard_bench_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _runtime(url: str, replica: str, data_dir: Path) -> Runtime:
    settings = Settings(database_url=url, replica_id=replica, host_id="bench", data_dir=data_dir,
                        poll_interval_seconds=0.05, log_level="WARNING")
    return Runtime(settings=settings, db=Database(url), backends=Backends([InstantBackend()]))


def queue_jobs(url: str, count: int, data_dir: Path) -> None:
    """`count` queued jobs on the instant target, made by the submit use case (one transaction per 200)."""
    migrate.upgrade(url)
    runtime = _runtime(url, "seeder", data_dir)
    spec = JobCreate.model_validate({"experiment": "bench-claims", "source": "trainer", "script": "train.py",
                                     "compute_target": TARGET, "environment": "tutorial-env"})
    with uow(runtime.db) as tx:
        catalog.create_environment(tx.session, spec=catalog.TUTORIAL_ENV)
    for start in range(0, count, 200):
        with uow(runtime.db) as tx:
            for _ in range(min(200, count - start)):
                jobs.submit_job(tx, spec=spec, idempotency_key=None, settings=runtime.settings,
                                backends=runtime.backends)
    runtime.db.engine.dispose()


def _replica(url: str, name: str, data_dir: str, ready: Any, go: Any, done: Any) -> None:
    """One replica process: tick its dispatcher until no queued or unsubmitted job is left."""
    runtime = _runtime(url, name, Path(data_dir))
    dispatcher = Dispatcher(runtime)
    with runtime.db.session() as session:  # connect (and warm the pool) before the start
        session.exec(select(func.count()).select_from(Job)).one()
    ready.set()
    go.wait()

    async def run() -> int:
        ticks = 0
        while True:
            await dispatcher.tick()
            with runtime.db.session() as session:
                left = session.exec(select(func.count()).select_from(Job).where(col(Job.run_id).is_(None))).one()
            if not left:
                return ticks
            ticks += 1

    asyncio.run(run())
    done.put(name)


def claim_once(url: str, jobs_count: int, replicas: int, work: Path) -> dict[str, Any]:
    """Queue `jobs_count` jobs, let `replicas` processes dispatch them; jobs per second."""
    queue_jobs(url, jobs_count, work)
    ctx = mp.get_context("spawn")
    go, done = ctx.Event(), ctx.Queue()
    procs, readies = [], []
    for i in range(replicas):
        ready = ctx.Event()
        proc = ctx.Process(target=_replica, args=(url, f"r{i}", str(work), ready, go, done), daemon=True)
        proc.start()
        procs.append(proc)
        readies.append(ready)
    for ready in readies:
        if not ready.wait(120):
            raise TimeoutError("a replica process did not start")
    started = time.time()
    go.set()
    for _ in procs:
        done.get(timeout=600)
    for proc in procs:
        proc.join(30)
    engine = create_engine(url, poolclass=pool.NullPool)
    with Session(engine) as session:
        last = session.exec(select(func.max(Job.submitted_at))).one()
        owners = session.exec(select(Job.owner, func.count()).group_by(col(Job.owner))).all()
        starting = session.exec(select(func.count()).select_from(Job)
                                .where(col(Job.status) == JobStatus.STARTING, col(Job.run_id).is_not(None))).one()
    engine.dispose()
    if last is None or starting != jobs_count:
        raise RuntimeError(f"{starting} of {jobs_count} jobs dispatched")
    elapsed = last.timestamp() - started
    return {"jobs": jobs_count, "replicas": replicas, "seconds": elapsed, "jobs_per_s": jobs_count / elapsed,
            "by_replica": {str(owner): int(n) for owner, n in owners}}


def claims(admin_url: str, jobs_count: int, repeats: int, work: Path) -> dict[str, Any]:
    runs: dict[int, list[dict[str, Any]]] = {1: [], 3: []}
    for repeat in range(repeats):
        for replicas in (1, 3):
            with scratch_database(admin_url) as url:
                folder = work / f"claims-{repeat}-{replicas}"
                folder.mkdir(parents=True)
                result = claim_once(url, jobs_count, replicas, folder)
            say(f"claims: {replicas} replica(s), {jobs_count} jobs in {result['seconds']:.2f} s = "
                f"{result['jobs_per_s']:.0f} jobs/s {result['by_replica']}")
            runs[replicas].append(result)
    summary = {str(k): _spread([r["jobs_per_s"] for r in v]) for k, v in runs.items()}
    ratios = [three["jobs_per_s"] / one["jobs_per_s"] for one, three in zip(runs[1], runs[3], strict=True)]
    print_table("Claim throughput on PostgreSQL (jobs dispatched per second, instant backend)",
                ["replicas", "min", "median", "max"],
                [[k, f"{v['min']:.0f}", f"{v['median']:.0f}", f"{v['max']:.0f}"] for k, v in summary.items()])
    say(f"3 / 1 replicas, paired: min {min(ratios):.2f}, median {statistics.median(ratios):.2f}")
    return {"runs": runs, "jobs_per_s": summary, "ratio_3_to_1": _spread(ratios)}


@dataclass(frozen=True)
class Subject:
    name: str
    extra_env: dict[str, str]
    seed_url: str


def http_ratios(admin_url: str, *, jobs_count: int, seconds: int, repeats: int, work: Path) -> dict[str, Any]:
    """PostgreSQL vs SQLite through the API: create and read one job, rps at c=1/8/32."""
    wrk = ensure_wrk()
    if wrk is None:
        say("wrk is not installed: skipping the HTTP ratios")
        return {}
    rps: dict[tuple[str, str, int], list[float]] = {}
    with scratch_database(admin_url) as pg_url:
        started = {}
        try:
            for name, url, extra in (("sqlite", None, {}), ("postgresql", pg_url, {"RUNYARD_DATABASE_URL": pg_url})):
                data_dir = work / f"http-{name}"
                data_dir.mkdir(parents=True)
                seeded = seed_jobs(url or f"sqlite:///{data_dir / 'runyard.db'}", jobs=jobs_count)
                server, base = runyard_peer.start(data_dir, name=f"runyard-{name}", extra_env=extra)
                subject = runyard_peer.Runyard(server, base, data_dir, seeded)
                started[name] = subject
                subject.hold_slots()
            for _ in range(repeats):
                for op in ("read", "create"):
                    for c in (1, 8, 32):
                        for name, subject in started.items():
                            result = run_wrk(wrk, subject.base, subject.requests()[op], connections=c,
                                             seconds=seconds, script_dir=work / "lua")
                            rps.setdefault((name, op, c), []).append(result.rps)
        finally:
            for subject in started.values():
                subject.stop()
    rows, ratios = [], {}
    for op in ("read", "create"):
        for c in (1, 8, 32):
            pg, lite = rps[("postgresql", op, c)], rps[("sqlite", op, c)]
            paired = [p / s for p, s in zip(pg, lite, strict=True)]
            ratios[f"{op} c={c}"] = _spread(paired)
            rows.append([op, c, f"{statistics.median(lite):.0f}", f"{statistics.median(pg):.0f}",
                         f"{min(paired):.2f}", f"{statistics.median(paired):.2f}"])
    print_table("PostgreSQL vs SQLite through the API (requests/s, wrk)",
                ["op", "c", "sqlite median", "postgresql median", "pg/sqlite min", "pg/sqlite median"], rows)
    return {"rps": {f"{n} {op} c={c}": v for (n, op, c), v in rps.items()}, "ratio_pg_to_sqlite": ratios}


def takeover_once(admin_url: str, *, lease: float, poll: float, runs: int, work: Path) -> dict[str, float]:
    """Replica A runs `runs` local jobs; B is started; A is SIGKILLed: seconds until B holds each job."""
    with scratch_database(admin_url) as url:
        data_dir = work / f"takeover-{uuid.uuid4().hex[:6]}"
        data_dir.mkdir(parents=True)
        env = {"RUNYARD_DATABASE_URL": url, "RUNYARD_LEASE_SECONDS": f"{lease:g}",
               "RUNYARD_POLL_INTERVAL_SECONDS": f"{poll:g}"}
        a, base_a = runyard_peer.start(data_dir, name="replica-a", slots=runs,
                                       extra_env={**env, "RUNYARD_REPLICA_ID": "a"})
        b: Any = None
        ids: list[str] = []
        try:
            for _ in range(runs):
                status, body = http("POST", base_a + "/v1/jobs", {"experiment": "takeover", "source": "bench",
                                                                   "script": "idle.py"})
                if status != 201:
                    raise RuntimeError(f"submit failed: {status} {body}")
                ids.append(body["id"])
            _until(lambda: all(http("GET", f"{base_a}/v1/jobs/{j}")[1]["status"] == "running" for j in ids))
            b, base_b = runyard_peer.start(data_dir, name="replica-b", slots=runs,
                                           extra_env={**env, "RUNYARD_REPLICA_ID": "b"})
            engine = create_engine(url, poolclass=pool.NullPool)
            killed = time.time()
            os.kill(a.pid, signal.SIGKILL)
            taken: dict[str, float] = {}
            while len(taken) < runs and time.time() - killed < lease * 3 + 30:
                with engine.connect() as conn:
                    for job_id, owner in conn.execute(select(Job.id, Job.owner).where(col(Job.id).in_(ids))):
                        if owner == "b" and str(job_id) not in taken:
                            taken[str(job_id)] = time.time() - killed
                time.sleep(0.02)
            engine.dispose()
            if len(taken) < runs:
                raise RuntimeError(f"only {len(taken)} of {runs} jobs taken over")
            for job_id in ids:
                http("POST", f"{base_b}/v1/jobs/{job_id}/cancel")
            _until(lambda: all(http("GET", f"{base_b}/v1/jobs/{j}")[1]["status"] == "canceled" for j in ids))
        finally:
            for server in (a, b):
                if server is not None:
                    server.stop()
            runyard_peer.kill_leftover_runs(data_dir)
    return {"first_s": min(taken.values()), "last_s": max(taken.values())}


def _until(done: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.2)


def takeovers(admin_url: str, repeats: int, work: Path) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for lease, poll in ((3.0, 0.5), (10.0, 2.0)):
        samples = [takeover_once(admin_url, lease=lease, poll=poll, runs=3, work=work) for _ in range(repeats)]
        for s in samples:
            say(f"takeover: lease {lease:g} s, poll {poll:g} s: first {s['first_s']:.2f} s, last {s['last_s']:.2f} s")
        found[f"lease {lease:g} s, poll {poll:g} s"] = {
            "first": _spread([s["first_s"] for s in samples]), "last": _spread([s["last_s"] for s in samples])}
    print_table("Takeover after SIGKILL (seconds until the other replica holds each of 3 running jobs)",
                ["setting", "first min", "first median", "last median", "last max"],
                [[k, f"{v['first']['min']:.2f}", f"{v['first']['median']:.2f}", f"{v['last']['median']:.2f}",
                  f"{v['last']['max']:.2f}"] for k, v in found.items()])
    return found


def _spread(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "n": len(values)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.replicas", description=__doc__)
    parser.add_argument("--admin-url", default=ADMIN_URL, help="a PostgreSQL database to create scratch ones from")
    parser.add_argument("--jobs", type=int, default=2000, help="queued jobs per claim run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5, help="wrk duration per measurement")
    parser.add_argument("--http-jobs", type=int, default=10_000, help="stored jobs for the HTTP ratios")
    parser.add_argument("--only", choices=("claims", "http", "takeover"))
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="replicas-", dir=WORK_DIR if WORK_DIR.exists() else None))
    results: dict[str, Any] = {}
    try:
        if args.only in (None, "claims"):
            results["claims"] = claims(args.admin_url, args.jobs, args.repeats, work)
        if args.only in (None, "takeover"):
            results["takeover"] = takeovers(args.admin_url, args.repeats, work)
        if args.only in (None, "http"):
            results["http"] = http_ratios(args.admin_url, jobs_count=args.http_jobs, seconds=args.seconds,
                                          repeats=args.repeats, work=work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_results(f"replicas{'-' + args.only if args.only else ''}", config=vars(args), results=results,
                  targets=[], machine=machine_info())


if __name__ == "__main__":
    main()
