"""Test script for sweeps: logs `score` = quality at every step; low quality runs slowly."""

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--quality", type=float, required=True)
parser.add_argument("--steps", type=int, default=5)
parser.add_argument("--step-seconds", type=float, default=0.02)
# Runs below this quality take `slow-step-seconds` per step: the laggard a policy should stop.
parser.add_argument("--slow-below", type=float, default=0.0)
parser.add_argument("--slow-step-seconds", type=float, default=1.0)
parser.add_argument("--fail-below", type=float, default=0.0)
args = parser.parse_args()

if args.quality < args.fail_below:
    print("quality too low, failing on purpose", flush=True)
    sys.exit(3)
pause = args.slow_step_seconds if args.quality < args.slow_below else args.step_seconds
for step in range(args.steps):
    with open(os.environ["RUNYARD_METRICS_FILE"], "a") as handle:
        handle.write(json.dumps({"name": "score", "value": args.quality, "step": step,
                                 "timestamp": datetime.now(UTC).isoformat()}) + "\n")
    print(f"step {step} score {args.quality}", flush=True)
    time.sleep(pause)
Path("outputs").mkdir(exist_ok=True)
Path("outputs/model.txt").write_text(f"quality={args.quality}\n")
print("scorer done", flush=True)
