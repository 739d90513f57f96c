"""Local runs started as forks of the prestarted interpreter (RUNYARD_LOCAL_PRESTART, on by default)
behave as runs started as new interpreters: same session, environment, folder, output, exit codes,
cancel; and they survive the prestarted interpreter's death or the service's restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service.backends.base import RunRef, RunUpdate, SubmitRequest
from service.backends.local import LocalBackend
from service.core.rundir import RunDir
from service.core.states import JobStatus

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
WAIT_SECONDS = 60.0


def backend(tmp_path: Path, *, prestart: bool) -> LocalBackend:
    found = LocalBackend(max_concurrent=2, models_dir=tmp_path / "models",
                         prestart_dir=tmp_path / "prestart" if prestart else None)
    found.start()
    if prestart:
        assert found.template is not None
        found.template.start()  # as the first run would
        wait_ready(found)
    return found


@pytest.fixture
def prestarted(tmp_path: Path) -> Iterator[LocalBackend]:
    found = backend(tmp_path, prestart=True)
    wait_ready(found)
    yield found
    found.stop()


def start(local: LocalBackend, tmp_path: Path, job_id: str, script: str, *args: str) -> RunRef:
    run_dir = tmp_path / "runs" / job_id
    request = SubmitRequest(job_id=job_id, experiment="tests", source_dir=SCRIPTS, script=script, arguments=args,
                            compute_target="local", environment=None, tags={}, run_dir=run_dir)  # type: ignore[arg-type]
    run_id = local.submit(request)
    return RunRef(job_id=job_id, run_id=run_id, experiment="tests", compute_target="local", run_dir=run_dir)


def wait_end(local: LocalBackend, ref: RunRef) -> RunUpdate:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        [update] = local.poll([ref])
        if update.status.is_terminal():
            return update
        time.sleep(0.05)
    raise AssertionError(f"run {ref.run_id} did not end in {WAIT_SECONDS}s")


def wait_running(ref: RunRef) -> dict[str, Any]:
    runner = RunDir(ref.run_dir).state / "runner.json"
    deadline = time.monotonic() + WAIT_SECONDS
    while not runner.exists():
        assert time.monotonic() < deadline, "the runner never started"
        time.sleep(0.02)
    return dict(json.loads(runner.read_text()))


def wait_ready(local: LocalBackend) -> None:
    assert local.template is not None
    deadline = time.monotonic() + WAIT_SECONDS
    while not local.template.ready:
        assert time.monotonic() < deadline, "the prestarted interpreter never became ready"
        time.sleep(0.05)


def started_as(ref: RunRef) -> dict[str, Any]:
    return dict(json.loads((ref.run_dir / "outputs" / "start.json").read_text()))


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


@pytest.mark.parametrize("code", [0, 3, 99])
def test_a_prestarted_run_starts_and_ends_as_a_new_interpreter_would(tmp_path: Path, code: int) -> None:
    plain, forked = backend(tmp_path / "plain", prestart=False), backend(tmp_path / "forked", prestart=True)
    try:
        refs = [start(b, tmp_path / name, "JOB1", "startinfo.py", "--exit-code", str(code))
                for b, name in ((plain, "plain"), (forked, "forked"))]
        ends = [wait_end(b, ref) for b, ref in zip((plain, forked), refs, strict=True)]
    finally:
        forked.stop()
    assert forked.template is not None
    assert ends[0].exit_code == ends[1].exit_code == (1 if code == 99 else code)
    assert ends[0].status is ends[1].status
    infos = [started_as(ref) for ref in refs]
    for info, ref in zip(infos, refs, strict=True):
        assert info["argv"] == [str(SCRIPTS / "startinfo.py"), "--exit-code", str(code)]
        assert info["cwd"] == str(ref.run_dir)
        assert info["path0"] == str(SCRIPTS)
        assert info["name"] == "__main__"
        assert info["sid"] == info["pgid"] != info["pid"]  # the runner's session; the script in its group
        assert info["fds"][:3] == [0, 1, 2]
    # The same environment, names and values (but the run's own ids and folders).
    own = {"HOME", "RUNYARD_METRICS_FILE", "RUNYARD_RUN_DIR", "RUNYARD_RUN_ID"}
    assert set(infos[0]["env"]) - {"LC_CTYPE"} == set(infos[1]["env"]) - {"LC_CTYPE"}
    assert {k: v for k, v in infos[0]["env"].items() if k not in own} == \
        {k: v for k, v in infos[1]["env"].items() if k not in own}
    # No descriptor of the template or the runner (its lock, the service's pipes) reaches the script.
    assert len(infos[1]["fds"]) <= len(infos[0]["fds"])
    logs = [RunDir(ref.run_dir).log.read_text() for ref in refs]
    for log in logs:
        assert "to stdout" in log
        assert "to stderr" in log
        assert ("RuntimeError: the script failed" in log) is (code == 99)


def test_prestarted_runs_do_not_share_random_state(tmp_path: Path, prestarted: LocalBackend) -> None:
    refs = [start(prestarted, tmp_path, f"JOB{i}", "startinfo.py") for i in range(2)]
    for ref in refs:
        wait_end(prestarted, ref)
    first, second = (started_as(ref)["draw"] for ref in refs)
    assert first != second


def test_a_prestarted_run_is_canceled_with_its_whole_group(tmp_path: Path, prestarted: LocalBackend) -> None:
    ref = start(prestarted, tmp_path, "JOB1", "sleeper.py", "--seconds", "60")
    runner = wait_running(ref)
    prestarted.cancel(ref, force=False)
    ended = wait_end(prestarted, ref.__class__(**{**ref.__dict__, "cancel_requested": True}))
    assert ended.status is JobStatus.CANCELED
    assert ended.exit_code == -signal.SIGTERM
    deadline = time.monotonic() + 5
    while alive(runner["child_pid"]) or alive(runner["pid"]):
        assert time.monotonic() < deadline, "a process of the canceled run lived on"
        time.sleep(0.05)


def test_a_run_asked_for_while_the_template_still_imports_starts_plainly_at_once(tmp_path: Path) -> None:
    local = LocalBackend(max_concurrent=2, models_dir=tmp_path / "models", prestart_dir=tmp_path / "prestart")
    try:  # not started: the first submit starts the template, and does not wait for its imports
        ref = start(local, tmp_path, "JOB1", "startinfo.py")
        assert local.template is not None
        assert local.template.pid is not None
        assert isinstance(local._children.get(ref.run_id), subprocess.Popen)  # a runner of its own
        assert wait_end(local, ref).status is JobStatus.COMPLETED
        wait_ready(local)
        ref = start(local, tmp_path, "JOB2", "startinfo.py")
        assert isinstance(local._children.get(ref.run_id), int)  # forked by the template, now ready
        assert wait_end(local, ref).status is JobStatus.COMPLETED
    finally:
        local.stop()


def test_a_template_that_died_is_started_again_for_the_next_run(tmp_path: Path, prestarted: LocalBackend) -> None:
    assert prestarted.template is not None
    first = prestarted.template.pid
    ref = start(prestarted, tmp_path, "JOB1", "startinfo.py")
    assert wait_end(prestarted, ref).status is JobStatus.COMPLETED
    assert first is not None
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while prestarted.template.pid is not None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    ref = start(prestarted, tmp_path, "JOB2", "startinfo.py")  # plainly, while the new one imports
    assert wait_end(prestarted, ref).status is JobStatus.COMPLETED
    assert prestarted.template.pid not in (None, first)
    wait_ready(prestarted)
    ref = start(prestarted, tmp_path, "JOB3", "startinfo.py")
    assert isinstance(prestarted._children.get(ref.run_id), int)
    assert wait_end(prestarted, ref).status is JobStatus.COMPLETED


def test_runs_outlive_the_service_and_its_template_and_are_found_again(tmp_path: Path) -> None:
    before = backend(tmp_path, prestart=True)
    ref = start(before, tmp_path, "JOB1", "sleeper.py", "--seconds", "6")
    runner = wait_running(ref)
    assert before.template is not None
    template = before.template.pid
    before.stop()  # the service stops: the template exits, the run goes on in its own session
    assert template is not None
    assert not alive(template)
    assert alive(runner["pid"])
    after = backend(tmp_path, prestart=True)  # a new service on the same data folder
    try:
        assert after.find_run("JOB1", "tests", ref.run_dir) == ref.run_id
        ended = wait_end(after, ref)
    finally:
        after.stop()
    assert ended.status is JobStatus.COMPLETED
    assert ended.exit_code == 0


def test_a_late_answer_is_never_taken_for_the_next_runs(
    tmp_path: Path, prestarted: LocalBackend, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from service.backends import local_template

    monkeypatch.setattr(local_template, "ANSWER_SECONDS", 0.0)  # the template answers after we gave up
    late = start(prestarted, tmp_path, "JOB1", "startinfo.py")
    assert isinstance(prestarted._children.get(late.run_id), subprocess.Popen)  # started plainly instead
    assert wait_end(prestarted, late).status is JobStatus.COMPLETED
    monkeypatch.setattr(local_template, "ANSWER_SECONDS", 10.0)
    ref = start(prestarted, tmp_path, "JOB2", "sleeper.py", "--seconds", "30")
    pid = prestarted._children.get(ref.run_id)
    assert isinstance(pid, int)
    assert wait_running(ref)["pid"] == pid  # this run's runner, not the late one's
    prestarted.cancel(ref, force=False)
