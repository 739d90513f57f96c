"""The service's side of the prestarted interpreter (local_prestart.py): start it, ask it for runs.

One template process per local backend, started by its first run and started again if it dies;
when it cannot start a run (still importing, dead, a broken pipe, no answer) the backend uses the
plain start, so a run never waits for it.
"""

from __future__ import annotations

import json
import logging
import subprocess
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)
TEMPLATE = Path(__file__).with_name("local_prestart.py")
ANSWER_SECONDS = 10.0


class TemplateUnavailable(Exception):
    """The prestarted interpreter cannot start this run; use the plain start."""


class Template:
    """A prestarted `python -I local_prestart.py`, fed start requests over a pipe."""

    def __init__(self, python: str, env: Mapping[str, str], cwd: Path, on_exit: Callable[[int], None]) -> None:
        self.python, self.env, self.cwd = python, dict(env), cwd
        self._on_exit = on_exit
        self._proc: subprocess.Popen[bytes] | None = None
        self._answers: list[dict[str, Any]] = []
        self._next_id = 0  # answers carry their request's id: a late answer is never taken for the next one's
        self._ready = threading.Event()
        self._changed = threading.Condition()
        self._lock = threading.Lock()  # one request at a time: answers come back in order

    def start(self) -> None:
        """Start the template in the background (its imports take a second or more)."""
        with self._lock:
            self._spawn()

    def _spawn(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        self._ready.clear()
        self.cwd.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen(  # noqa: S603 - argv list, no shell
            [self.python, "-I", str(TEMPLATE)], cwd=self.cwd, env=self.env, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        self._proc = proc
        threading.Thread(target=self._listen, args=(proc,), name="local-template", daemon=True).start()

    def _listen(self, proc: subprocess.Popen[bytes]) -> None:
        stdout: IO[bytes] | None = proc.stdout
        if stdout is None:
            return
        for line in stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if "ready" in message:
                log.info("prestarted interpreter %s ready (preloaded %s)", proc.pid, ", ".join(message["ready"]))
                self._ready.set()
            elif "exited" in message:
                self._on_exit(int(message["exited"]))
            else:
                with self._changed:
                    self._answers.append(message)
                    self._changed.notify_all()
        with self._changed:  # gone: wake a waiting request
            self._changed.notify_all()

    def run(self, *, state_dir: Path, log_path: Path, cwd: Path, env: Mapping[str, str], command: list[str]) -> int:
        """Start one run's runner in a fork of the template; its pid."""
        with self._lock:
            self._spawn()
            proc = self._proc
            # Still importing (a second or more after a start): this run starts plainly rather than wait.
            if proc is None or not self._ready.is_set() or proc.poll() is not None or proc.stdin is None:
                raise TemplateUnavailable("the prestarted interpreter is not ready yet")
            self._next_id += 1
            request_id = self._next_id
            request = {"id": request_id, "state_dir": str(state_dir), "log": str(log_path), "cwd": str(cwd),
                       "env": dict(env), "command": command}
            try:
                proc.stdin.write(json.dumps(request).encode() + b"\n")
                proc.stdin.flush()
            except OSError as exc:
                raise TemplateUnavailable(f"the prestarted interpreter is gone: {exc}") from exc
            with self._changed:
                def mine() -> bool:
                    # Answers to requests that timed out earlier are dropped (their runs went on plainly).
                    self._answers[:] = [a for a in self._answers if a.get("id", 0) >= request_id]
                    return bool(self._answers) or proc.poll() is not None

                if not self._changed.wait_for(mine, ANSWER_SECONDS) or not self._answers:
                    raise TemplateUnavailable("the prestarted interpreter did not answer")
                answer = self._answers.pop(0)
        if "pid" not in answer:
            raise TemplateUnavailable(str(answer.get("error", "no pid")))
        return int(answer["pid"])

    @property
    def ready(self) -> bool:
        """True once it has imported its modules and waits for runs."""
        return self._ready.is_set() and self.pid is not None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def stop(self) -> None:
        """Close its stdin: it exits; runs it started go on in their own sessions."""
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
