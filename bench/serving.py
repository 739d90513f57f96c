"""Benchmark: scoring on a runyard endpoint beside MLflow's `mlflow models serve`, same pickled model.

`python -m bench.serving [--quick] [--rows 1] [--connections 1 8] [--repeats N] [--seconds S]`
(the options narrow the matrix; its results file then holds those cells only). The tutorial job
trains on digits in a runyard service, the model is registered and deployed (local compute, one
worker process); MLflow serves the very file the job wrote (`mlflow.sklearn.save_model` of it,
MLflow 3.17.2 in bench/.work/mlflow-venv, one uvicorn worker, `--env-manager local`). wrk loads
each with 1-row and 100-row bodies of the test split at 1, 8 and 32 connections, the two servers
interleaved, `repeats` times.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from bench import mlflow_peer, runyard_peer
from bench.common import WORK_DIR, Stats, Target, machine_info, print_table, print_targets, say, write_results
from bench.procs import LOOPBACK, Server, _cpu_seconds, _rss_kb, free_port, http
from bench.wrk import Request, WrkResult, ensure_wrk, run_wrk
from trainer.utils import load_mnist

CONCURRENCY = (1, 8, 32)
ROWS = (1, 100)
PEERS = ("runyard", "mlflow")
MODEL_FILE = "outputs/sklearn_mnist_model.pkl"

_SAVE = """
import sys, joblib, mlflow.sklearn
mlflow.sklearn.save_model(joblib.load(sys.argv[1]), sys.argv[2], serialization_format="pickle")
"""


@dataclass(frozen=True)
class Config:
    repeats: int = 3
    seconds: int = 4
    quick: bool = False
    rows: tuple[int, ...] = ROWS
    connections: tuple[int, ...] = CONCURRENCY


def _train_deploy(base: str) -> dict[str, Any]:
    """The tutorial job on digits, registered and deployed; returns the ready endpoint."""
    status, job = http("POST", f"{base}/v1/jobs", runyard_peer.TUTORIAL_BODY)
    if status != 201:
        raise RuntimeError(f"submit: {status} {job}")
    deadline = time.monotonic() + 300
    while job["status"] not in ("completed", "failed", "canceled"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the tutorial job is still {job['status']}")
        time.sleep(0.5)
        job = http("GET", f"{base}/v1/jobs/{job['id']}")[1]
    if job["status"] != "completed":
        raise RuntimeError(f"the tutorial job {job['status']}: {job.get('error')}")
    http("POST", f"{base}/v1/jobs/{job['id']}/models", {"model_name": "sklearn_mnist", "model_path": MODEL_FILE})
    http("POST", f"{base}/v1/endpoints", {"name": "mnist", "model": "sklearn_mnist"})
    deadline = time.monotonic() + 120
    while (endpoint := http("GET", f"{base}/v1/endpoints/mnist")[1])["status"] == "creating":
        if time.monotonic() > deadline:
            raise RuntimeError("the endpoint is still creating")
        time.sleep(0.2)
    if endpoint["status"] != "ready":
        raise RuntimeError(f"endpoint failed: {endpoint['error']}")
    return dict(endpoint)


def _start_mlflow(exe: Path, model_pkl: Path, folder: Path) -> tuple[Server, str]:
    model_dir = folder / "mlflow-model"
    shutil.rmtree(model_dir, ignore_errors=True)
    python = exe.parent / "python"
    subprocess.run([str(python), "-c", _SAVE, str(model_pkl), str(model_dir)], check=True, capture_output=True)
    port = free_port()
    argv = [str(exe), "models", "serve", "-m", str(model_dir), "--env-manager", "local", "-h", LOOPBACK,
            "-p", str(port), "-w", "1"]
    # MLflow starts `uvicorn` through a shell: the venv's bin must come first on PATH.
    path = f"{exe.parent}:{os.environ.get('PATH', '')}"
    server = Server("mlflow-serve", argv, env={"PATH": path}, cwd=folder, log=folder / "mlflow-serve.log")
    base = f"http://{LOOPBACK}:{port}"
    server.wait_ready(base + "/ping", timeout=180)
    return server, base


def run(cfg: Config) -> dict[str, Any]:
    wrk = ensure_wrk()
    exe = mlflow_peer.ensure_mlflow()
    if wrk is None or exe is None:
        raise SystemExit("wrk and MLflow are both needed")
    work = WORK_DIR / "serving"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    runyard, base = runyard_peer.start(work / "runyard-data")
    try:
        endpoint = _train_deploy(base)
        model_pkl = work / "runyard-data" / "models" / "sklearn_mnist" / "1" / Path(MODEL_FILE).name
        mlflow, mlflow_base = _start_mlflow(exe, model_pkl, work)
        try:
            return _measure(cfg, wrk, work, runyard, base, endpoint, mlflow, mlflow_base)
        finally:
            mlflow.stop()
    finally:
        runyard.stop()


def _measure(cfg: Config, wrk: str, work: Path, runyard: Server, base: str, endpoint: dict[str, Any],
             mlflow: Server, mlflow_base: str) -> dict[str, Any]:  # fmt: skip
    datasets = http("GET", f"{base}/v1/datasets")[1]["items"]
    images = load_mnist(next(d for d in datasets if d["name"] == "digits")["path"])["test_images"] / 255.0
    subjects = {"runyard": (base, runyard), "mlflow": (mlflow_base, mlflow)}
    bodies: dict[tuple[str, int], Request] = {}
    for rows in cfg.rows:
        data = np.round(images[:rows], 6).tolist()
        bodies["runyard", rows] = Request("POST", "/v1/endpoints/mnist/score", {"data": data})
        bodies["mlflow", rows] = Request("POST", "/invocations", {"inputs": data})
        # Same answers from both, before any load.
        ours = http("POST", base + bodies["runyard", rows].path, bodies["runyard", rows].body)
        theirs = http("POST", mlflow_base + "/invocations", bodies["mlflow", rows].body)
        if ours[0] != 200 or theirs[0] != 200 or ours[1]["predictions"] != theirs[1]["predictions"]:
            raise RuntimeError(f"the two servers disagree: {ours} vs {theirs}")
    worker_pids = [w["pid"] for w in endpoint["workers"]]
    results: dict[tuple[str, int, int], list[WrkResult]] = {}
    for _ in range(cfg.repeats):
        for rows in cfg.rows:
            for connections in cfg.connections:
                for peer in PEERS:
                    url, server = subjects[peer]
                    before = server.cpu_seconds() + (_cpu(worker_pids) if peer == "runyard" else 0.0)
                    result = run_wrk(wrk, url, bodies[peer, rows], connections=connections, seconds=cfg.seconds,
                                     script_dir=work / "wrk")  # fmt: skip
                    after = server.cpu_seconds() + (_cpu(worker_pids) if peer == "runyard" else 0.0)
                    results.setdefault((peer, rows, connections), []).append(
                        WrkResult(**{**result.__dict__, "server_cpu_s": after - before})
                    )
    return {"results": results, "rss_mb": {"runyard": runyard.rss_mb() + _rss(worker_pids), "mlflow": mlflow.rss_mb()}}


def _cpu(pids: list[int]) -> float:
    return sum(_cpu_seconds(pid) for pid in pids)


def _rss(pids: list[int]) -> float:
    return sum(_rss_kb(pid) for pid in pids) / 1024


def report(cfg: Config, measured: dict[str, Any]) -> None:
    results: dict[tuple[str, int, int], list[WrkResult]] = measured["results"]
    rows_out, summary, targets = [], {}, []
    for rows in cfg.rows:
        for connections in cfg.connections:
            ours, theirs = results["runyard", rows, connections], results["mlflow", rows, connections]
            rps = Stats.of(a.rps / b.rps for a, b in zip(ours, theirs, strict=True) if b.rps)
            p99_ours = Stats.of(r.p99_ms for r in ours)
            p99_theirs = Stats.of(r.p99_ms for r in theirs)
            errors = sum(r.error_count for r in ours), sum(r.error_count for r in theirs)
            rows_out.append([
                f"{rows} row{'s' if rows > 1 else ''}", connections,
                Stats.of(r.rps for r in ours).fmt(0), Stats.of(r.rps for r in theirs).fmt(0), rps.fmt(2),
                p99_ours.fmt(1), p99_theirs.fmt(1),
                f"{Stats.of(r.cpu_ms_per_request for r in ours).median:.2f}",
                f"{Stats.of(r.cpu_ms_per_request for r in theirs).median:.2f}", f"{errors[0]}/{errors[1]}",
            ])  # fmt: skip
            key = f"{rows}x{connections}"
            summary[key] = {"rps_ratio": rps, "p99_ms_runyard": p99_ours, "p99_ms_mlflow": p99_theirs,
                            "errors": errors}  # fmt: skip
            targets.append(Target(f"throughput {key}", ">= 2x MLflow", f"{rps.median:.2f}x", rps.median >= 2))
            targets.append(Target(f"p99 {key}", "<= MLflow's", f"{p99_ours.median:.1f} vs {p99_theirs.median:.1f} ms",
                                  p99_ours.median <= p99_theirs.median))  # fmt: skip
    print_table("scoring: requests/s and p99 (median (min-max) of repeats)",
                ["body", "conns", "runyard rps", "mlflow rps", "ratio", "runyard p99 ms", "mlflow p99 ms",
                 "runyard cpu ms/req", "mlflow cpu ms/req", "errors"], rows_out)  # fmt: skip
    print_table("resident memory", ["server", "MB"], [[k, f"{v:.0f}"] for k, v in measured["rss_mb"].items()])
    print_targets("targets", targets)
    write_results("serving", config=cfg.__dict__, results={"summary": summary, "rss_mb": measured["rss_mb"]},
                  targets=targets, machine=machine_info())  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.serving", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one short repeat: checks the harness")
    parser.add_argument("--rows", type=int, nargs="+", choices=ROWS, help="body sizes to load (default: all)")
    parser.add_argument("--connections", type=int, nargs="+", help=f"wrk connections (default: {CONCURRENCY})")
    parser.add_argument("--repeats", type=int, help="rounds of the matrix, the two servers interleaved")
    parser.add_argument("--seconds", type=int, help="wrk duration of each cell")
    args = parser.parse_args(argv)
    cfg = Config(repeats=1, seconds=2, quick=True) if args.quick else Config()
    cfg = replace(cfg, **{k: v for k, v in (("repeats", args.repeats), ("seconds", args.seconds)) if v is not None})
    if args.rows:
        cfg = replace(cfg, rows=tuple(args.rows))
    if args.connections:
        cfg = replace(cfg, connections=tuple(args.connections))
    say(f"serving benchmark: {cfg}")
    report(cfg, run(cfg))


if __name__ == "__main__":
    main()
