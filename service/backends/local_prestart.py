"""A prestarted interpreter that starts local runs by forking. Standard library only.

Most of a small local run is the interpreter importing numpy and scikit-learn (~1.1 s of CPU
for a 0.06 s `digits` fit, measured with `-X importtime`: scipy.stats and pandas, pulled in by
sklearn.utils). The local backend starts this process once, with the runs' environment allow-list
and `-I`; it imports those modules, then waits. For each run it is asked for, it forks a
single-use child, which becomes that run's runner exactly as `local_runner.py` would be: a new
session, the run's own environment (replaced whole), working directory, lock, `runner.json` and
`exit.json`; its script child runs the script in the already-initialised interpreter. Nothing
a run does reaches this process or another run: each child is a copy, used once.

Protocol (JSON lines): the backend writes `{"id", "state_dir", "log", "cwd", "env", "command"}` to
stdin; this answers `{"id", "pid": N}` (or `{"id", "error": ...}`) on stdout, and `{"exited": N}` when a
runner it forked ends. It exits when stdin closes (the service stopped or died): runs already
started go on in their own sessions, as after any service restart.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import selectors
import signal
import sys
from pathlib import Path
from typing import Any

# Forked children import these for free; a module missing from the environment is skipped.
PRELOAD = ("numpy", "scipy", "sklearn", "sklearn.linear_model", "sklearn.multiclass", "joblib")


def preload(modules: tuple[str, ...] = PRELOAD) -> list[str]:
    """Import what the runs will import; the names that could be imported."""
    loaded = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: S112 - absent or broken here: the run imports it itself (and fails there)
            continue
        loaded.append(name)
    return loaded


def run_script(command: list[str]) -> int:
    """Run `python script args...` in this (forked) interpreter as `python` would; the exit code."""
    import runpy
    import threading
    import traceback

    script = command[1]
    sys.argv = [script, *command[2:]]
    # What `python script.py` has: the script's folder first, not the folder added for the template.
    sys.path[:] = [os.path.dirname(os.path.abspath(script)), *(p for p in sys.path if p != ROOT)]
    # PYTHONUNBUFFERED (the run's environment asks for it) is read at interpreter start: apply it.
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8", write_through=True)
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8", errors="backslashreplace",
                                  write_through=True)
    if "numpy" in sys.modules:  # forked children would otherwise share the template's global seed
        sys.modules["numpy"].random.seed()
    code = 0
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except KeyboardInterrupt:
        code = 130
    except BaseException:
        traceback.print_exc()
        code = 1
    threading._shutdown()  # type: ignore[attr-defined]  # wait for non-daemon threads, as at interpreter exit
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    return code


def _exit_code(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    sys.stderr.write(f"{value}\n")  # what the interpreter prints for sys.exit("message")
    return 1


def start_run(request: dict[str, Any]) -> int:
    """Fork the run's runner; the runner's pid (the child never returns)."""
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the runner waits for its script
        os.setsid()  # a session of its own, as the backend's start_new_session
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):  # the template's pipes to the service are not the run's
            os.dup2(devnull, fd)
        os.close(devnull)
        close_inherited()
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        from service.backends import local_runner

        code = local_runner.main(["--state-dir", request["state_dir"], "--log", request["log"], "--",
                                  *request["command"]], launch=local_runner.fork_script)
    finally:
        os._exit(code)


def close_inherited() -> None:
    """Close every descriptor above stderr, as `subprocess` (close_fds) does for the plain start."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(3, 1024))
    for fd in fds:
        if fd > 2:
            try:
                os.close(fd)
            except OSError:
                continue


def serve(stdin: io.BufferedReader, stdout: io.TextIOBase) -> None:
    """Answer start requests until stdin closes; report each runner's exit."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wakeup fd hears it
    selector = selectors.DefaultSelector()
    selector.register(stdin, selectors.EVENT_READ, "request")
    selector.register(wake_r, selectors.EVENT_READ, "child")
    buffered = b""

    def say(message: dict[str, Any]) -> None:
        stdout.write(json.dumps(message) + "\n")
        stdout.flush()

    while True:
        for key, _ in selector.select():
            if key.data == "child":
                os.read(wake_r, 512)
                _reap(say)
                continue
            chunk = os.read(stdin.fileno(), 65536)
            if not chunk:
                return  # the service is gone
            buffered += chunk
            while b"\n" in buffered:
                line, buffered = buffered.split(b"\n", 1)
                request: dict[str, Any] = {}
                try:
                    request = json.loads(line)
                    say({"id": request.get("id"), "pid": start_run(request)})
                except Exception as exc:
                    say({"id": request.get("id"), "error": f"{type(exc).__name__}: {exc}"})


def _reap(say: Any) -> None:
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        say({"exited": pid})


ROOT = str(Path(__file__).resolve().parents[2])


def main() -> int:
    # The service package is importable from here (`python -I` puts no folder on sys.path).
    sys.path.insert(0, ROOT)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C to the service's group is the service's
    loaded = preload()
    out = io.TextIOWrapper(io.FileIO(os.dup(1), "w"), encoding="utf-8")
    out.write(json.dumps({"ready": loaded}) + "\n")
    out.flush()
    serve(sys.stdin.buffer, out)  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    sys.exit(main())
