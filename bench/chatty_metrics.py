"""`python -m bench.chatty_metrics [--repo DIR] [--points N]`: the service under a chatty metrics script.

Starts `python -m service` from `--repo` (default: this checkout; point it at an older export to
compare), runs tests/scripts/chatty.py writing N metric points as fast as it can, and meanwhile
samples the server's RSS and the latency of `POST /v1/jobs` and `GET /healthz`. Prints peak RSS,
median and max latencies, 5xx answers, and how long the chatty job took to reach a terminal state.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parents[1]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.chatty_metrics", description=__doc__)
    parser.add_argument("--repo", type=Path, default=HERE)
    parser.add_argument("--points", type=int, default=200_000)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    data = Path(tempfile.mkdtemp(prefix="chatty-"))
    port = 18000 + os.getpid() % 1000
    env = {**os.environ, "RUNYARD_DATA_DIR": str(data), "RUNYARD_PORT": str(port), "RUNYARD_LOG_LEVEL": "WARNING",
           "RUNYARD_POLL_INTERVAL_SECONDS": "1", "RUNYARD_SQLITE_BUSY_TIMEOUT_MS": "30000",
           "RUNYARD_SOURCES": json.dumps({"bench": str(HERE / "tests" / "scripts")})}
    server = subprocess.Popen([sys.executable, "-m", "service"], cwd=args.repo, env=env,  # noqa: S603
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if http.get("/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("the service did not start")
                time.sleep(0.2)
            base_rss = _rss_mb(server.pid)
            chatty = {"experiment": "bench", "source": "bench", "script": "chatty.py",
                      "arguments": ["--points", args.points]}
            job_id = http.post("/v1/jobs", json=chatty).json()["id"]
            started = time.monotonic()
            rss: list[float] = []
            submit_ms: list[float] = []
            health_ms: list[float] = []
            errors = 0
            stop = threading.Event()

            def sample() -> None:
                while not stop.is_set():
                    rss.append(_rss_mb(server.pid))
                    time.sleep(0.2)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            status = "queued"
            while time.monotonic() - started < args.timeout:
                t = time.perf_counter()
                answer = http.post("/v1/jobs", json={"experiment": "bench", "source": "bench",
                                                     "script": "sleeper.py", "arguments": []})
                submit_ms.append((time.perf_counter() - t) * 1000)
                errors += answer.status_code >= 500
                t = time.perf_counter()
                http.get("/healthz")
                health_ms.append((time.perf_counter() - t) * 1000)
                status = http.get(f"/v1/jobs/{job_id}").json()["status"]
                if status in ("completed", "failed", "canceled"):
                    break
                time.sleep(0.5)
            elapsed = time.monotonic() - started
            stop.set()
            sampler.join()
    finally:
        server.terminate()
        server.wait(30)
    print(f"repo {args.repo}  points {args.points}")
    print(f"chatty job {status} after {elapsed:.1f} s")
    print(f"server RSS: {base_rss:.0f} MB idle, peak {max(rss):.0f} MB")
    print(f"POST /v1/jobs: median {statistics.median(submit_ms):.0f} ms, max {max(submit_ms):.0f} ms, "
          f"{errors} answers 5xx of {len(submit_ms)}")
    print(f"GET /healthz: median {statistics.median(health_ms):.0f} ms, max {max(health_ms):.0f} ms")


if __name__ == "__main__":
    main()
