"""Supervises one local run: holds its lock, records its exit code. Standard library only.

Started by the local backend in a session of its own, so it outlives the service: the
service re-attaches after a restart by reading the files this writes.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path


def write_json(path: Path, data: dict[str, object]) -> None:
    """Write `data` so readers see the old file or the whole new one, never half."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as handle:
        json.dump(data, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="runyard-local-runner")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command

    lock = open(args.state_dir / "lock", "w")  # noqa: SIM115 - held for the process's life
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 3  # another runner owns this run already
    # Cancel signals the whole process group; the script decides, we only report.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    args.log.parent.mkdir(parents=True, exist_ok=True)
    with open(args.log, "ab") as log:
        child = subprocess.Popen(  # noqa: S603 - argv list, no shell
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_default_signals,
        )
        write_json(
            args.state_dir / "runner.json",
            {
                "pid": os.getpid(),
                "pgid": os.getpgid(0),
                "child_pid": child.pid,
                "started_at": datetime.now(UTC).isoformat(),
            },
        )
        code = child.wait()
    write_json(
        args.state_dir / "exit.json",
        {"exit_code": code, "ended_at": datetime.now(UTC).isoformat()},
    )
    return 0


def _default_signals() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


if __name__ == "__main__":
    sys.exit(main())
