"""The CLI as a newcomer meets it (issue 18) and as a hostile job feeds it (issue 20, items 5 and 7).

The real `runyard` console script against a real `python -m service`, at 80 columns. One server per
module: each test makes its own jobs and looks only at them.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service.client import Client, LogEnd, LogText
from service.core.states import JobStatus
from tests.e2e.conftest import LiveServer, start_server, stop_server
from tests.integration.test_cli import CLI, TIMEOUT, cli_env

SLEEPER = ["--no-tutorial-args", "--source", "testscripts", "--script", "sleeper.py"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = start_server(tmp_path_factory.mktemp("newcomer"))
    yield live
    stop_server(live)


def run(server: LiveServer | None, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=cli_env(server, COLUMNS="80", **env), capture_output=True, text=True,
                          timeout=TIMEOUT, check=False)


def ok_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def sleeper(server: LiveServer, *extra: str) -> dict[str, Any]:
    job: dict[str, Any] = ok_json(run(server, "submit", *SLEEPER, *extra, "--wait", "--json"))["job"]
    return job


def assert_fits_80_columns(text: str) -> None:
    assert "…" not in text, text
    assert all(len(line.rstrip()) <= 80 for line in text.splitlines()), text


def test_tables_at_80_columns_keep_ids_states_and_names_whole(server: LiveServer) -> None:
    job = sleeper(server, "--experiment", "Tutorial-sklearn-mnist", "--tag", "team=vision")
    version = ok_json(run(server, "register", job["id"], "--name", "narrow", "--path", "user_logs/std_log.txt",
                          "--json"))

    listed = run(server, "jobs", "--tag", "team=vision")
    versions = run(server, "models", "narrow")

    for table in (listed.stdout, versions.stdout):
        assert_fits_80_columns(table)
        assert job["id"] in table  # whole, so it can be pasted into the next command
    [row] = [line for line in listed.stdout.splitlines() if job["id"] in line]
    assert row.split()[:4] == [job["id"], "completed", "Tutorial-sklearn-mnist", "local"]
    assert str(version["version"]) in versions.stdout


def test_a_422_says_which_field_and_why(server: LiveServer) -> None:
    result = run(server, "submit", "--experiment", "my exp/1")
    assert result.returncode == 4
    assert "body.experiment: String should match pattern" in result.stderr

    bad_file = Path(server.data_dir).parent / "no-experiment.json"
    bad_file.write_text(json.dumps({"source": "trainer", "script": "train.py"}))
    missing = run(server, "submit", "--file", str(bad_file))
    assert "body.experiment: Field required" in missing.stderr


def test_unknown_names_point_at_the_valid_ones(server: LiveServer) -> None:
    target = run(server, "submit", "--compute-target", "locl")
    assert "did you mean 'local'?" in target.stderr
    dataset = run(server, "submit", "--dataset", "mnist")
    assert "known: digits, fashion-mnist" in dataset.stderr
    job = sleeper(server, "--arg", "steps=2")
    metric = run(server, "metrics", job["id"], "--history", "los")
    assert "did you mean 'loss'?" in metric.stderr


def test_the_catalog_commands_list_what_a_job_can_name(server: LiveServer) -> None:
    assert "local" in run(server, "targets").stdout
    assert "digits" in run(server, "datasets").stdout
    assert "tutorial-env" in run(server, "environments").stdout
    assert [t["name"] for t in ok_json(run(server, "targets", "--json"))] == ["local"]
    sleeper(server, "--experiment", "catalogued")
    assert "catalogued" in run(server, "experiments").stdout


def test_submit_help_keeps_its_defaults_and_shows_flags_as_flags() -> None:
    result = run(None, "submit", "--help")
    text = re.sub(r"[\s│]+", " ", result.stdout)
    assert "[tutorial: Tutorial-sklearn-mnist]" in text
    assert "[tutorial: 0.5]" in text
    assert "<bool>" not in result.stdout


def test_every_command_takes_json_and_the_more_hint_keeps_the_filters(server: LiveServer) -> None:
    first = sleeper(server, "--tag", "page=me")
    second = sleeper(server, "--tag", "page:me")  # both spellings of a tag
    log = ok_json(run(server, "logs", second["id"], "--json"))
    assert log["text"].startswith("sleeper starting")
    assert log["eof"] is True

    page = run(server, "jobs", "--tag", "page=me", "--limit", "1")
    [hint] = [line for line in page.stdout.splitlines() if line.startswith("more:")]
    assert "--tag page=me" in hint
    assert second["id"] in page.stdout
    rest = run(server, *hint.removeprefix("more: runyard ").split(), "--json")
    assert [j["id"] for j in ok_json(rest)["items"]] == [first["id"]]


def test_sweep_cancel_takes_json(server: LiveServer, tmp_path: Path) -> None:
    body = {"job": {"experiment": "sweep-json", "source": "testscripts", "script": "sleeper.py"},
            "search_space": {"--seconds": {"type": "choice", "values": [30, 31]}}, "sampling": "grid",
            "primary_metric": "loss", "max_concurrent_runs": 1}
    spec = tmp_path / "sweep.json"
    spec.write_text(json.dumps(body))
    sweep = ok_json(run(server, "sweep", "--file", str(spec), "--json"))
    canceled = ok_json(run(server, "sweep-cancel", sweep["id"], "--json"))
    assert canceled["id"] == sweep["id"]
    assert canceled["status"] in ("canceling", "canceled")


def test_timeouts_say_the_job_keeps_running_and_how_to_follow_it(server: LiveServer) -> None:
    for mode in ("--follow", "--wait"):
        result = run(server, "submit", *SLEEPER, "--arg", "seconds=60", mode, "--timeout", "2")
        assert result.returncode == 5, (mode, result.stderr)
        assert "keeps running" in result.stderr or "keeps going" in result.stderr
        job_id = re.findall(r"runyard logs -f (\S+)", result.stderr)[0]
        assert ok_json(run(server, "cancel", job_id, "--json"))["status"] in ("canceling", "canceled")


def test_repeating_a_cancel_succeeds(server: LiveServer) -> None:
    job = ok_json(run(server, "submit", *SLEEPER, "--arg", "seconds=60", "--json"))
    codes = [run(server, "cancel", job["id"]).returncode for _ in range(2)]
    with Client(server.url) as client:
        assert client.wait(job["id"], timeout=60, poll_interval=0.2).status is JobStatus.CANCELED
    again = run(server, "cancel", job["id"])
    assert codes + [again.returncode] == [0, 0, 0], again.stderr


def test_show_escapes_markup_and_lists_retry_attempts(server: LiveServer, tmp_path: Path) -> None:
    body = {"experiment": "retried", "source": "testscripts", "script": "sleeper.py",
            "arguments": ["--exit-code", 3], "max_retries": 1, "tags": {"team": "[/]", "x": "[bold]"}}
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps(body))
    submitted = run(server, "submit", "--file", str(spec), "--wait", "--json")
    assert submitted.returncode == 1  # the job failed, twice
    job = json.loads(submitted.stdout)["job"]
    assert job["status"] == "failed"

    shown = run(server, "show", job["id"])

    assert shown.returncode == 0, shown.stderr
    assert "team=[/]" in shown.stdout
    assert "x=[bold]" in shown.stdout
    assert "2 of 2" in shown.stdout  # the attempt now running of those allowed
    assert re.search(r"^1\s+failed\s+3", shown.stdout, re.MULTILINE), shown.stdout  # the earlier attempt


def test_a_hostile_log_reaches_neither_the_terminal_nor_the_client_as_control(server: LiveServer) -> None:
    result = run(server, "submit", "--no-tutorial-args", "--source", "testscripts", "--script", "hostile.py",
                 "--follow")
    job_id = re.findall(r"job (\S+) failed", result.stdout)[-1]
    logged = run(server, "logs", job_id)

    for text in (result.stdout, logged.stdout):
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", text), repr(text)
        assert "before click red after" in text
        assert "tab\tkept" in text
    assert result.returncode == 1  # the job failed; no forged `end` made it look completed
    with Client(server.url) as client:
        events = list(client.follow_logs(job_id))
    assert isinstance(events[-1], LogEnd)
    assert (events[-1].status, events[-1].exit_code) == (JobStatus.FAILED, 3)
    assert "\u2028event: end\u2028" in "".join(e.text for e in events if isinstance(e, LogText))


def test_a_post_that_is_not_json_gets_415(server: LiveServer) -> None:
    import httpx

    response = httpx.post(f"{server.url}/v1/experiments", content=b'{"name": "x"}',
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 415
    assert "Content-Type: application/json" in response.json()["detail"]


def test_a_401_says_how_to_pass_the_key_and_the_key_goes_after_the_command_too(tmp_path: Path) -> None:
    secured = start_server(tmp_path, {"RUNYARD_API_KEYS": '["k-1", "k-2"]'})
    try:
        refused = run(secured, "jobs")
        after = run(secured, "jobs", "--api-key", "k-2", "--json")
        before = run(secured, "--api-key", "k-1", "jobs", "--json")
        literal = run(secured, "jobs", "--api-key", '["k-1"', "--json")
    finally:
        stop_server(secured)
    assert refused.returncode == 4
    assert "--api-key" in refused.stderr
    assert "RUNYARD_API_KEY" in refused.stderr
    assert ok_json(after)["items"] == []
    assert ok_json(before)["items"] == []
    assert literal.returncode == 4
