"""Load with `wrk` (Debian's package): one C client for every server, so the client's own
cost is the same for all of them and small next to a Python one on two cores."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import say

_REPORT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,' ..
    '"timeout":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max, latency.mean))
end
"""


@dataclass(frozen=True)
class Request:
    """What every wrk connection sends, again and again."""

    method: str
    path: str
    body: Any = None

    def lua(self) -> str:
        lines = [f"wrk.method = {_lua_str(self.method)}", f"wrk.path = {_lua_str(self.path)}"]
        if self.body is not None:
            lines += [f"wrk.body = {_lua_str(json.dumps(self.body))}",
                      'wrk.headers["Content-Type"] = "application/json"']
        return "\n".join(lines) + "\n" + _REPORT


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    errors: dict[str, int]
    p50_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    server_cpu_s: float = float("nan")  # CPU the server used during the run, when measured

    @property
    def cpu_ms_per_request(self) -> float:
        """Server CPU per completed request: a cost that contention from other processes barely moves."""
        return self.server_cpu_s * 1000 / self.requests if self.requests else float("nan")

    @property
    def rps(self) -> float:
        """Completed requests per second (non-2xx/3xx answers included; see `errors`)."""
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def ensure_wrk() -> str | None:
    """The wrk binary; installs Debian's `wrk` when missing and we may, else None."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        say("wrk is missing and cannot be installed here (needs root and apt-get): `apt-get install wrk`")
        return None
    say("installing Debian's wrk (apt-get install -y wrk)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=False)
    subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], env=env, capture_output=True, check=False)
    found = shutil.which("wrk")
    if not found:
        say("could not install wrk; skipping the HTTP benchmark")
    return found


def run_wrk(wrk: str, base_url: str, request: Request, *, connections: int, seconds: float,
            script_dir: Path, timeout_s: float = 10.0) -> WrkResult:
    """Load `base_url` with `connections` connections for `seconds`, one wrk thread."""
    script_dir.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha1(request.lua().encode()).hexdigest()[:16]
    script = script_dir / f"{key}.lua"
    script.write_text(request.lua())
    argv = [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", f"--timeout={timeout_s:g}s",
            "-s", str(script), base_url + request.path]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + timeout_s + 60, check=False)
    for line in out.stdout.splitlines():
        if line.startswith("WRKJSON "):
            data = json.loads(line.removeprefix("WRKJSON "))
            return WrkResult(
                requests=data["requests"], seconds=data["duration_us"] / 1e6,
                errors={k: data[k] for k in ("connect", "read", "write", "status", "timeout") if data[k]},
                p50_ms=data["p50_us"] / 1000, p99_ms=data["p99_us"] / 1000, max_ms=data["max_us"] / 1000,
                mean_ms=data["mean_us"] / 1000,
            )
    raise RuntimeError(f"wrk printed no summary (exit {out.returncode}): {out.stdout[-500:]} {out.stderr[-500:]}")


def _lua_str(text: str) -> str:
    return "[==[" + text + "]==]"
