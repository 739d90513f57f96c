"""`python -m bench [--quick] [--only NAME ...]` (`make bench`): the five benchmarks, one after another.

Each is also runnable alone: `python -m bench.http_api`, `bench.poller`, `bench.trainer`,
`bench.local_throughput`, `bench.dashboard`. Results go to bench/results/<name>.json; a full run
takes ~25 minutes on 2 cores, `--quick` about 12 (quick figures are for checking the harness, not for quoting).
"""

from __future__ import annotations

import argparse
import json
import time
import traceback
from collections.abc import Callable

from bench import dashboard, http_api, local_throughput, poller, trainer
from bench.common import RESULTS_DIR, print_table, say

BENCHMARKS: dict[str, Callable[[list[str]], None]] = {
    "http_api": http_api.main,
    "poller": poller.main,
    "trainer": trainer.main,
    "local_throughput": local_throughput.main,
    "dashboard": dashboard.main,
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short runs: checks the harness, not for quoting")
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run only these")
    args = parser.parse_args()
    failed = []
    for name in args.only or list(BENCHMARKS):
        say(f"=== {name} ===")
        started = time.monotonic()
        try:
            BENCHMARKS[name](["--quick"] if args.quick else [])
        except Exception:
            traceback.print_exc()
            failed.append(name)
        say(f"{name} took {time.monotonic() - started:.0f}s")
    summary()
    if failed:
        raise SystemExit(f"benchmarks that failed: {', '.join(failed)}")


def summary() -> None:
    """Every target of every benchmark with results on disk."""
    rows = []
    for name in BENCHMARKS:
        path = RESULTS_DIR / f"{name}.json"
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        rows += [[name, t["name"], t["goal"], t["measured"], t["verdict"]] for t in data["targets"]]
    print_table("All targets (from bench/results/*.json)", ["benchmark", "target", "goal", "measured", "verdict"],
                rows)


if __name__ == "__main__":
    main()
