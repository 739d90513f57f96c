"""Test script: writes outputs/model.pkl, a copy of a model or one that fails to serve in a chosen way."""

import argparse
import pickle
import shutil
import time
from pathlib import Path


class _Sleeps:
    """Unpickles into None after a pause: loads slowly, then has no predict."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __reduce__(self):  # noqa: ANN204
        return (time.sleep, (self.seconds,))


class _Huge:
    """Unpickling allocates `size` bytes: more than a worker's memory limit."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __reduce__(self):  # noqa: ANN204
        return (bytearray, (self.size,))


parser = argparse.ArgumentParser()
parser.add_argument("--kind", choices=["garbage", "slow", "huge", "copy"], required=True)
parser.add_argument("--source", help="with --kind copy: a model file to output as it is")
parser.add_argument("--seconds", type=float, default=2.0)
args = parser.parse_args()
out = Path("outputs")
out.mkdir(exist_ok=True)
if args.kind == "garbage":
    (out / "model.pkl").write_bytes(b"this is not a pickle\n")
elif args.kind == "slow":
    (out / "model.pkl").write_bytes(pickle.dumps(_Sleeps(args.seconds)))
elif args.kind == "huge":
    (out / "model.pkl").write_bytes(pickle.dumps(_Huge(8 * 1024**3)))
else:
    shutil.copy(args.source, out / "model.pkl")
print("wrote outputs/model.pkl", flush=True)
