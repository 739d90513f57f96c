"""The dashboard's server time and page weights with 10,000 stored jobs.

`python -m bench.dashboard [--quick]`: seeds 10,000 finished jobs (10 metric points each) into a
fresh SQLite database, then requests each page in process (Starlette's TestClient, so no network
and no client in the figure) and reports the median and p95 time per page, and the bytes each page
and asset weighs, raw and gzipped. Target: the jobs page under 200 ms server time.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, insert

from bench.common import WORK_DIR, Target, percentile, print_table, print_targets, say, write_results
from bench.seed import job_id, seed_jobs
from service.app import create_app
from service.core.settings import Settings
from service.db.tables import MetricPoint

JOBS = 10_000
POINTS_PER_JOB = 10
TARGET_MS = 200.0


def _metrics_for_every_job(database_url: str, seeded: Any) -> None:
    engine = create_engine(database_url)
    start = datetime.now(UTC) - timedelta(days=1)
    rows = [{"job_id": job_id(seeded, i), "name": "accuracy", "step": step, "value": 0.8 + step / 100,
             "timestamp": start} for i in range(seeded.jobs - 1) for step in range(POINTS_PER_JOB)]
    with engine.begin() as conn:
        conn.execute(insert(MetricPoint), rows)
    engine.dispose()


def run(repeats: int) -> dict[str, Any]:
    data_dir = WORK_DIR / "dashboard"
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    settings = Settings(data_dir=data_dir, poll_interval_seconds=60)
    seeded = seed_jobs(settings.effective_database_url, jobs=JOBS)
    _metrics_for_every_job(settings.effective_database_url, seeded)
    say(f"seeded {JOBS} jobs in {seeded.seconds:.1f} s")
    with TestClient(create_app(settings)) as client:
        second_page = client.get("/v1/jobs", params={"limit": 50}).json()["next_cursor"]
        pages = {
            "jobs (first 50 of 10,000)": "/ui",
            "jobs, page 2": f"/ui?cursor={second_page}",
            "jobs, status=failed": "/ui?status=failed",
            "jobs, experiment filter": f"/ui?experiment={seeded.experiments[3]}",
            "jobs rows refresh (fragment)": "/ui?fragment=rows",
            "a job (100-point chart)": f"/ui/jobs/{seeded.sample_job_id}",
            "sweeps": "/ui/sweeps",
            "models": "/ui/models",
            "compute": "/ui/compute",
        }
        results: dict[str, Any] = {"pages": {}, "assets": {}}
        for name, path in pages.items():
            body = client.get(path)
            assert body.status_code == 200, (path, body.status_code, body.text[:500])
            times = []
            for _ in range(repeats):
                started = time.perf_counter()
                client.get(path)
                times.append((time.perf_counter() - started) * 1000)
            results["pages"][name] = {
                "path": path[:60], "median_ms": round(statistics.median(times), 2),
                "p95_ms": round(percentile(times, 95), 2), "bytes": len(body.content),
                "gzip_bytes": len(gzip.compress(body.content)),
            }
        for asset in ("/ui/static/ui.css", "/ui/static/ui.js"):
            content = client.get(asset).content
            results["assets"][asset] = {"bytes": len(content), "gzip_bytes": len(gzip.compress(content))}
    shutil.rmtree(data_dir, ignore_errors=True)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.dashboard", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    repeats = 10 if args.quick else 40
    results = run(repeats)
    print_table("Dashboard pages, server time in process (10,000 jobs stored)",
                ["page", "median ms", "p95 ms", "HTML bytes", "gzip bytes"],
                [(n, r["median_ms"], r["p95_ms"], r["bytes"], r["gzip_bytes"]) for n, r in results["pages"].items()])
    print_table("Static assets (one of each per visit, then cached)", ["asset", "bytes", "gzip bytes"],
                [(n, r["bytes"], r["gzip_bytes"]) for n, r in results["assets"].items()])
    jobs_page = results["pages"]["jobs (first 50 of 10,000)"]["median_ms"]
    targets = [Target("jobs page server time at 10,000 jobs (median)", f"< {TARGET_MS:.0f} ms",
                      f"{jobs_page:.1f} ms", jobs_page < TARGET_MS)]
    print_targets("Targets", targets)
    write_results("dashboard", config={"jobs": JOBS, "metric_points_per_job": POINTS_PER_JOB, "repeats": repeats},
                  results=results, targets=targets)


if __name__ == "__main__":
    main()
