"""Test script: logs a metric per step, sleeps, exits with a chosen code."""

import argparse
import json
import os
import signal
import sys
import time
from datetime import UTC, datetime

parser = argparse.ArgumentParser()
parser.add_argument("--seconds", type=float, default=0.0)
parser.add_argument("--exit-code", type=int, default=0)
parser.add_argument("--steps", type=int, default=0)
parser.add_argument("--step-seconds", type=float, default=0.0)
parser.add_argument("--ignore-term", action="store_true")
args = parser.parse_args()

if args.ignore_term:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def log_metric(name: str, value: float, step: int) -> None:
    with open(os.environ["RUNYARD_METRICS_FILE"], "a") as handle:
        handle.write(json.dumps({"name": name, "value": value, "step": step,
                                 "timestamp": datetime.now(UTC).isoformat()}) + "\n")


print("sleeper starting", flush=True)
for step in range(args.steps):
    log_metric("loss", 1.0 / (step + 1), step)
    print(f"step {step}", flush=True)
    time.sleep(args.step_seconds)
deadline = time.monotonic() + args.seconds
while time.monotonic() < deadline:
    time.sleep(0.05)
print("sleeper done", flush=True)
sys.exit(args.exit_code)
