"""Supervises one local run: holds its lock, records its exit code. Standard library only.

Started by the local backend in a session of its own, so it outlives the service: the
service re-attaches after a restart by reading the files this writes.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Protocol


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


class Child(Protocol):
    """The script's process: a `subprocess.Popen`, or a `ForkedScript`."""

    pid: int

    def wait(self) -> int: ...

    def kill(self) -> None: ...


def popen_script(command: list[str], log: BinaryIO) -> Child:
    """`python script.py ...` as a new interpreter (the plain start)."""
    return subprocess.Popen(  # noqa: S603 - argv list, no shell
        command,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=_default_signals,
    )


class ForkedScript:
    """The script run in a fork of this (prestarted) interpreter: see local_prestart."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._code: int | None = None

    def wait(self) -> int:
        if self._code is None:
            _pid, status = os.waitpid(self.pid, 0)
            self._code = os.waitstatus_to_exitcode(status)
        return self._code

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)


def fork_script(command: list[str], log: BinaryIO) -> Child:
    """Fork; the child runs the script in this interpreter, output to `log`, and never returns."""
    pid = os.fork()
    if pid:
        return ForkedScript(pid)
    code = 1
    try:
        _default_signals()
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as a new interpreter installs it
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        from service.backends.local_prestart import close_inherited, run_script

        # The run's lock above all: held by the script too, a killed runner would still look alive.
        close_inherited()

        code = run_script(command)
    finally:
        os._exit(code)


def main(argv: list[str] | None = None, launch: Callable[[list[str], BinaryIO], Child] = popen_script) -> int:
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
        child = launch(command, log)
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


def _stop(child: Child) -> None:
    """Kill the script and whatever it started in our process group (the runner ignores TERM)."""
    os.killpg(os.getpgid(0), signal.SIGTERM)
    child.kill()
    child.wait()


def _default_signals() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


if __name__ == "__main__":
    sys.exit(main())
