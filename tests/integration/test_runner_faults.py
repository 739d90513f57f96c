"""The local runner under faults (issue 19, problem 2): no script outlives its supervisor, and an
exit code survives a full disk (or the job says the outcome is unknown)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from fastapi.testclient import TestClient

from service.core.settings import Settings
from tests.support.jobs import script_job, wait_for

SLEEPER = Path(__file__).resolve().parents[1] / "scripts" / "sleeper.py"
REPO_ROOT = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def _group(pgid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid and _alive(int(entry.name)):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_a_killed_runner_takes_its_script_with_it(client: TestClient, settings: Settings) -> None:
    job = client.post("/v1/jobs", json=script_job("sleeper.py", "--seconds", 60)).json()
    wait_for(client, job["id"], {"running"})
    runner = json.loads((settings.runs_dir / job["id"] / ".runyard" / "runner.json").read_text())
    os.kill(runner["pid"], signal.SIGKILL)
    ended = wait_for(client, job["id"], timeout=30)
    assert ended["status"] == "failed"
    assert "outcome is unknown" in ended["error"]
    deadline = time.monotonic() + 5
    while _alive(runner["child_pid"]):
        assert time.monotonic() < deadline, "the script kept running after its runner died"
        time.sleep(0.05)


def _runner_failing_to_write(name: str, state: Path, *script_args: str) -> tuple[int, int]:
    """The runner, with every ordinary write of `state/name` failing as on a full disk."""
    code = (
        "import errno, sys\n"
        "import service.backends.local_runner as runner\n"
        "real = runner.write_json\n"
        "def full(path, data):\n"
        f"    if path.name == {name!r}:\n"
        "        raise OSError(errno.ENOSPC, 'No space left on device')\n"
        "    real(path, data)\n"
        "runner.write_json = full\n"
        "sys.exit(runner.main(sys.argv[1:]))\n"
    )
    state.mkdir(parents=True)
    argv = [sys.executable, "-c", code, "--state-dir", str(state), "--log", str(state.parent / "log.txt"),
            "--", sys.executable, str(SLEEPER), *script_args]
    process = subprocess.Popen(argv, cwd=REPO_ROOT, start_new_session=True,  # noqa: S603
                               env={**os.environ, "RUNYARD_METRICS_FILE": str(state / "metrics.jsonl")})
    return process.pid, process.wait(60)


def test_a_runner_that_cannot_record_its_run_stops_the_script(tmp_path: Path) -> None:
    state = tmp_path / "run" / ".runyard"
    pgid, code = _runner_failing_to_write("runner.json", state, "--seconds", "30")
    assert code == 4
    assert _group(pgid) == []  # the script (and anything it started) is gone
    record = json.loads((state / "exit.json").read_text())
    assert record["exit_code"] is None
    assert "could not record" in record["error"]


def test_an_exit_code_survives_a_full_disk(tmp_path: Path) -> None:
    state = tmp_path / "run" / ".runyard"
    _pgid, code = _runner_failing_to_write("exit.json", state, "--exit-code", "3")
    assert code == 0
    assert json.loads((state / "exit.json").read_text())["exit_code"] == 3
