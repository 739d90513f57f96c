"""Test script: writes how it was started to outputs/start.json, then exits with --exit-code."""

import json
import os
import sys
from pathlib import Path

import numpy as np

code = int(sys.argv[sys.argv.index("--exit-code") + 1]) if "--exit-code" in sys.argv else 0
print("to stdout", flush=False)
print("to stderr", file=sys.stderr, flush=False)
Path("outputs").mkdir(exist_ok=True)
Path("outputs/start.json").write_text(json.dumps({
    "argv": sys.argv, "cwd": os.getcwd(), "env": dict(os.environ), "path0": sys.path[0], "name": __name__,
    "draw": float(np.random.random_sample()), "pid": os.getpid(), "sid": os.getsid(0), "pgid": os.getpgid(0),
    "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
}))
if code == 99:
    raise RuntimeError("the script failed")
sys.exit(code)
