"""What loading the SDK v2 costs a service process: import time and peak RSS, in fresh processes.

Run: `PYTHONPATH=. .venv-v2/bin/python -m bench.azure_v2_import` (needs the azure-v2 extra). Each of
3 repeats starts a new interpreter that imports the service (`service.app`), then, in the second
kind, `load_v2_sdk()` (azure-ai-ml, azure-identity and the MLflow client), as the first v2 call does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from statistics import median

PROGRAM = """
import json, resource, sys, time
import service.app
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
if sys.argv[1] == "v2":
    from service.backends.azureml_v2_sdk import load_v2_sdk
    load_v2_sdk()
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "rss_mb_before": before / 1024, "peak_rss_mb": peak / 1024}))
"""


def measure(kind: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", PROGRAM, kind], capture_output=True, text=True, check=True).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    for kind in ("service only", "v2"):
        runs = [measure("v2" if kind == "v2" else "none") for _ in range(3)]
        seconds = [r["seconds"] for r in runs]
        peaks = [r["peak_rss_mb"] for r in runs]
        print(f"{kind}: load {median(seconds):.2f} s (min {min(seconds):.2f}, max {max(seconds):.2f}), "
              f"peak RSS {median(peaks):.0f} MB (service imported: {median(r['rss_mb_before'] for r in runs):.0f} MB)",
              flush=True)


if __name__ == "__main__":
    main()
