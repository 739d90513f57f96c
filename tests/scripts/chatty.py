"""Test script: floods its metrics file (issue 19's chatty script), optionally with one endless line."""

import argparse
import json
import os

parser = argparse.ArgumentParser()
parser.add_argument("--points", type=int, default=100_000)
parser.add_argument("--long-line-bytes", type=int, default=0, help="then write a line this long")
args = parser.parse_args()

with open(os.environ["RUNYARD_METRICS_FILE"], "a") as handle:
    for step in range(args.points):
        handle.write(json.dumps({"name": "loss", "value": 1.0 / (step + 1), "step": step}) + "\n")
    if args.long_line_bytes:
        handle.write('{"name": "huge", "value": 1, "pad": "' + "x" * args.long_line_bytes + '"}\n')
print(f"wrote {args.points} points", flush=True)
