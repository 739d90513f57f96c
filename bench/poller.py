"""Benchmark 2: the poller at scale on the stubbed Azure ML workspace.

`python -m bench.poller [--quick]`: runyard with N runs active across 10 experiments on
`cpu-cluster` (tests/fakes/azureml.py, which counts every SDK call), for N = 1,000 and 10,000
side by side. A quiet phase measures SDK calls and CPU per poll cycle with nothing changing;
then probe runs change status (Running -> Finalizing or Completed) every quarter second and the
API is watched for each change. The stub runs inside the service process, so its CPU and
memory are counted with the service's: the figures are upper bounds.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import azure_sdk_cost
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
from bench.procs import LOOPBACK, Server, free_port, http

EXPERIMENTS = 10
POLL_INTERVAL = 2.0
WATCH_INTERVAL = 0.1


@dataclass(frozen=True)
class Config:
    runs: tuple[int, ...] = (1_000, 10_000)
    probes: int = 40
    gap: float = 0.25
    quiet_cycles: int = 3
    quiet_timeout: float = 240.0
    quick: bool = False


def run_one(cfg: Config, runs: int, work: Path) -> dict[str, Any]:
    """Start the stubbed service with `runs` active runs; measure quiet cycles, then probe latency."""
    folder = work / f"runs-{runs}"
    data_dir = folder / "data"
    data_dir.mkdir(parents=True)
    port = free_port()
    argv = [sys.executable, "-m", "bench.serve_azure_stub", "--data-dir", str(data_dir), "--port", str(port),
            "--runs", str(runs), "--experiments", str(EXPERIMENTS), "--poll-interval", str(POLL_INTERVAL)]
    # azureml-core writes ~/.azureml: keep it out of the real home.
    server = Server(f"azure-stub-{runs}", argv, env={"HOME": str(folder / "home")}, log=folder / "server.log")
    base = f"http://{LOOPBACK}:{port}"
    rss: list[float] = []
    try:
        server.wait_ready(base + "/readyz", timeout=300)
        # Quiet: nothing changes. The first cycle (every run seen for the first time) is left out.
        deadline = time.time() + cfg.quiet_timeout
        while time.time() < deadline:
            rss.append(server.rss_mb())
            if len(http("GET", base + "/bench/cycles")[1]["cycles"]) > cfg.quiet_cycles:
                break
            time.sleep(1.0)
        quiet_end = time.time()
        status, plan = http("POST", f"{base}/bench/probes?probes={cfg.probes}&delay=1&gap={cfg.gap}")
        if status != 200:
            raise RuntimeError(f"could not start the probes: {status} {plan}")
        cycles = http("GET", base + "/bench/cycles")[1]["cycles"]
        slowest = max((c["wall_s"] for c in cycles), default=POLL_INTERVAL)
        last_change = max(p["change_at_epoch"] for p in plan)
        seen = watch_probes(base, plan, deadline=last_change + max(30.0, 4 * slowest), rss=rss, server=server)
        answer = http("GET", base + "/bench/cycles")[1]
    finally:
        server.stop()
    return summarize(runs, plan, seen, answer["cycles"], rss, quiet_end, cfg.quiet_cycles,
                     server.ready_seconds or float("nan"), answer.get("seed_seconds"))


def watch_probes(base: str, plan: list[dict[str, Any]], *, deadline: float, rss: list[float],
                 server: Server) -> dict[str, float]:
    """When each probe's new status is first visible through the API (two list calls per look)."""
    seen: dict[str, float] = {}
    wanted = {p["job_id"]: p["status"] for p in plan}
    last_rss = 0.0
    while len(seen) < len(wanted) and time.time() < deadline:
        for status in ("finalizing", "completed"):
            code, body = http("GET", f"{base}/v1/jobs?status={status}&limit=500")
            now = time.time()
            if code != 200:
                continue
            for item in body["items"]:
                if wanted.get(item["id"]) == status and item["id"] not in seen:
                    seen[item["id"]] = now
        if time.time() - last_rss > 1.0:
            rss.append(server.rss_mb())
            last_rss = time.time()
        time.sleep(WATCH_INTERVAL)
    return seen


def summarize(runs: int, plan: list[dict[str, Any]], seen: dict[str, float], cycles: list[dict[str, Any]],
              rss: list[float], quiet_end: float, quiet_cycles: int, ready_s: float,
              seed_s: float | None) -> dict[str, Any]:
    quiet = [c for c in cycles[1:quiet_cycles + 1] if c["started"] + c["wall_s"] <= quiet_end]
    changing = [c for c in cycles if c["started"] >= quiet_end]
    latencies = [seen[p["job_id"]] - p["change_at_epoch"] for p in plan if p["job_id"] in seen]
    by_name: dict[str, float] = {}
    for c in quiet:
        for name, n in c["sdk_calls"].items():
            by_name[name] = by_name.get(name, 0) + n / max(1, len(quiet))
    return {
        "runs": runs, "experiments": EXPERIMENTS, "cycles_total": len(cycles), "quiet_cycles": len(quiet),
        "quiet_calls_per_cycle": Stats.of(sum(c["sdk_calls"].values()) for c in quiet),
        "quiet_calls_by_name": dict(sorted(by_name.items(), key=lambda kv: -kv[1])),
        "quiet_cpu_s_per_cycle": Stats.of(c["cpu_s"] for c in quiet),
        "quiet_wall_s_per_cycle": Stats.of(c["wall_s"] for c in quiet),
        "changing_calls_per_cycle": Stats.of(sum(c["sdk_calls"].values()) for c in changing),
        "changing_cpu_s_per_cycle": Stats.of(c["cpu_s"] for c in changing),
        "first_cycle": cycles[0] if cycles else None,
        "probes": len(plan), "probes_seen": len(latencies),
        "latency_s": {"p50": percentile(latencies, 50), "p99": percentile(latencies, 99),
                      "max": max(latencies, default=float("nan"))},
        "rss_mb": Stats.of(rss), "ready_s": ready_s, "seed_s": seed_s,
    }


def run(cfg: Config) -> dict[str, Any]:
    stub = Path(__file__).resolve().parents[1] / "tests" / "fakes" / "azureml.py"
    if not stub.exists():
        print("poller: SKIPPED (tests/fakes/azureml.py, the stubbed workspace, is not there)")
        return {}
    machine = machine_info()
    work = WORK_DIR / "poller"
    shutil.rmtree(work, ignore_errors=True)
    results = {}
    for runs in cfg.runs:
        say(f"poller: {runs:,} active runs across {EXPERIMENTS} experiments")
        results[str(runs)] = run_one(cfg, runs, work)
    say("poller: the real azureml-core's CPU per listed run, offline (bench.azure_sdk_cost)")
    sdk_cost = azure_sdk_cost.measure_offline(500, 3 if cfg.quick else 5)
    return report(cfg, machine, results, sdk_cost)


def report(cfg: Config, machine: dict[str, Any], results: dict[str, dict[str, Any]],
           sdk_cost: dict[str, Any] | None = None) -> dict[str, Any]:
    rows = []
    for r in results.values():
        lat = r["latency_s"]
        rows.append([f"{r['runs']:,}", r["quiet_cycles"], r["quiet_calls_per_cycle"].fmt(0),
                     r["changing_calls_per_cycle"].fmt(0), r["quiet_cpu_s_per_cycle"].fmt(2),
                     r["quiet_wall_s_per_cycle"].fmt(2), f"{lat['p50']:.2f} / {lat['p99']:.2f}",
                     f"{r['probes_seen']}/{r['probes']}", r["rss_mb"].fmt(0)])
    print_table(f"Poller on the stubbed Azure workspace, {EXPERIMENTS} experiments, poll every {POLL_INTERVAL:g}s: "
                "median (min–max) per cycle",
                ["active runs", "quiet cycles", "SDK calls (quiet)", "SDK calls (changing)", "CPU s (quiet)",
                 "wall s (quiet)", "change->API p50/p99 s", "seen", "RSS MB"], rows)
    for r in results.values():
        print_table(f"SDK calls per quiet cycle by name, {r['runs']:,} runs", ["call", "per cycle"],
                    [[k, f"{v:.1f}"] for k, v in r["quiet_calls_by_name"].items()])
    big = results[str(max(cfg.runs))]
    small = results[str(min(cfg.runs))]
    calls = big["quiet_calls_per_cycle"].median
    growth = calls / small["quiet_calls_per_cycle"].median if small["quiet_calls_per_cycle"].median else float("nan")
    budget_calls = EXPERIMENTS + 3 * 10  # listings + the detail refresh budget (10 runs x 3 calls)
    lat = big["latency_s"]
    targets = [
        Target("SDK calls per cycle", f"~ experiments + changed runs (<= {budget_calls} with the detail budget)",
               f"{calls:.0f} at {big['runs']:,} runs ({growth:.1f}x the {small['runs']:,}-run figure)",
               calls <= budget_calls),
        Target("CPU time per quiet cycle (issue 17)", "<= 0.5 s",
               f"{big['quiet_cpu_s_per_cycle'].median:.2f} s median, {big['quiet_cpu_s_per_cycle'].max:.2f} s max",
               big["quiet_cpu_s_per_cycle"].median <= 0.5),
        Target("status change -> API (issue 17)", f"p99 <= {POLL_INTERVAL + 0.5:g} s (interval + 0.5 s)",
               f"p99 {lat['p99']:.2f} s ({big['probes_seen']}/{big['probes']} seen)",
               big["probes_seen"] == big["probes"] and lat["p99"] <= POLL_INTERVAL + 0.5),
        Target("service RSS (issue 17)", "<= 250 MB", f"{big['rss_mb'].max:.0f} MB max (stub included)",
               big["rss_mb"].max <= 250),
        Target("real azureml-core CPU per listed run", "measured (offline, bench.azure_sdk_cost)",
               "not measured" if sdk_cost is None else
               f"{sdk_cost['read_reply_ms_per_run']:.3f} ms read (what the poller pays) + "
               f"{sdk_cost['run_object_ms_per_run']:.3f} ms for a Run (no longer built): "
               f"{sdk_cost['read_reply_ms_per_run'] * 10:.2f} s per cycle at 10,000", None),
    ]
    print_targets("Poller targets", targets)
    if sdk_cost is not None:
        print_table("Real azureml-core, client CPU per listed run (offline; bench.azure_sdk_cost)",
                    ["step", "ms per run", "s per cycle at 10,000"],
                    [["read the reply (json + msrest RunDto): what the poller pays",
                      f"{sdk_cost['read_reply_ms_per_run']:.3f}", f"{sdk_cost['read_reply_ms_per_run'] * 10:.2f}"],
                     ["+ a ScriptRun per listed run (Experiment.get_runs, before issue 17)",
                      f"{sdk_cost['run_object_ms_per_run']:.3f}", f"{sdk_cost['run_object_ms_per_run'] * 10:.2f}"]])
    write_results("poller", config=asdict(cfg), results={"by_runs": results, "poll_interval_s": POLL_INTERVAL,
                                                         "real_sdk_per_listed_run": sdk_cost},
                  targets=targets, machine=machine)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.poller", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="16 probes, 3 quiet cycles")
    args = parser.parse_args(argv)
    cfg = Config(probes=16, quiet_cycles=3, quiet_timeout=120.0, quick=True) if args.quick else Config()
    run(cfg)


if __name__ == "__main__":
    main()
