"""Test script: fails until it has been run `--succeed-on` times (counted in a marker file)."""

import argparse
import sys
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--marker", type=Path, required=True)
parser.add_argument("--succeed-on", type=int, default=2)
args = parser.parse_args()

runs = int(args.marker.read_text()) + 1 if args.marker.exists() else 1
args.marker.write_text(str(runs))
print(f"flaky run {runs}", flush=True)
if runs < args.succeed_on:
    print("failing on purpose", file=sys.stderr, flush=True)
    sys.exit(1)
