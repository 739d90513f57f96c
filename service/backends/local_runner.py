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


EXIT_RECORD_BYTES = 256


def reserve(path: Path) -> None:
    """Take the disk space of a small record now, while there is some."""
    with open(path, "wb") as handle:
        handle.write(b" " * EXIT_RECORD_BYTES)
        handle.flush()
        os.fsync(handle.fileno())


def write_reserved(reserved: Path, path: Path, data: dict[str, object]) -> None:
    """Write `data` into the space `reserve` took, then rename it to `path`: no new blocks needed."""
    text = json.dumps(data).encode()
    with open(reserved, "r+b") as handle:  # not "wb": truncating would give the blocks back
        handle.write(text.ljust(EXIT_RECORD_BYTES))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(reserved, path)


def record_exit(state_dir: Path, data: dict[str, object]) -> None:
    """exit.json, into the reserved space if an ordinary write fails (a full disk)."""
    try:
        write_json(state_dir / "exit.json", data)
    except OSError:
        write_reserved(state_dir / "exit.reserved", state_dir / "exit.json", data)


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
    # The exit code must outlive a script that fills the disk: its record's space is taken first.
    reserve(args.state_dir / "exit.reserved")
    with open(args.log, "ab") as log:
        child = subprocess.Popen(  # noqa: S603 - argv list, no shell
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_default_signals,
        )
        try:
            write_json(
                args.state_dir / "runner.json",
                {
                    "pid": os.getpid(),
                    "pgid": os.getpgid(0),
                    "child_pid": child.pid,
                    "started_at": datetime.now(UTC).isoformat(),
                },
            )
        except OSError as exc:
            # Unrecorded, the script could not be found, cancelled or supervised: it must not run.
            _stop(child)
            record_exit(args.state_dir, {"exit_code": None, "ended_at": datetime.now(UTC).isoformat(),
                                         "error": f"the runner could not record the run ({exc}); script stopped"})
            return 4
        code = child.wait()
    record_exit(args.state_dir, {"exit_code": code, "ended_at": datetime.now(UTC).isoformat()})
    return 0


def _stop(child: subprocess.Popen[bytes]) -> None:
    """Kill the script and whatever it started in our process group (the runner ignores TERM)."""
    os.killpg(os.getpgid(0), signal.SIGTERM)
    child.kill()
    child.wait()


def _default_signals() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


if __name__ == "__main__":
    sys.exit(main())
