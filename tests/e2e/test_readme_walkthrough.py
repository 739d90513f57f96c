"""The README's tutorial, block by block and in order, against a fresh server: curl, then the CLI, then Python.

Each command runs as written (only the port changes); the test fails when what the README shows
next to it (an expected output block, or a `# ...` note naming a value) differs in substance.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import REPO_ROOT, LiveServer
from tests.integration.test_cli import CLI

README = (REPO_ROOT / "README.md").read_text()
TIMEOUT = 300


def blocks(section: str) -> list[tuple[str, str]]:
    """(language, body) of each fenced block between `### {section}` and the next heading."""
    text = README.split(f"### {section}\n", 1)[1].split("\n##", 1)[0]
    return re.findall(r"```(\w+)\n(.*?)```", text, re.DOTALL)


def localize(text: str, server: LiveServer) -> str:
    return text.replace("localhost:8000", f"127.0.0.1:{server.port}").replace("127.0.0.1:8000",
                                                                               f"127.0.0.1:{server.port}")


def shell(script: str, server: LiveServer, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    path = f"{Path(CLI[0]).parent}:{os.environ['PATH']}"
    full_env = {**os.environ, "PATH": path, "RUNYARD_URL": server.url, "COLUMNS": "200", **env}
    return subprocess.run(["bash", "-c", localize(script, server)], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=TIMEOUT, check=False)


def commands(block: str) -> list[tuple[str, str]]:
    """(command, the note after its `#`) for each line of a shell block that is a whole command."""
    found = []
    for line in block.splitlines():
        command, _, note = line.partition("  # ")
        if command.strip() and not command.lstrip().startswith("#"):
            found.append((command.strip(), note.strip()))
    return found


def sse_events(text: str) -> list[str]:
    return re.findall(r"^event: (\w+)", text, re.MULTILINE)


def test_the_readme_tutorial_runs_as_written(live_server: LiveServer, tmp_path: Path) -> None:
    curl = blocks("With curl")
    assert [lang for lang, _ in curl] == ["sh", "text", "sh"]

    # 1. Submit with curl and follow the stream: the events the README shows, ending `completed`.
    submit_and_follow = curl[0][1]
    first = shell(submit_and_follow + '\necho "JOB=$JOB"', live_server, tmp_path)
    assert first.returncode == 0, first.stderr
    job_id = re.findall(r"^JOB=(\S+)$", first.stdout, re.MULTILINE)[-1]
    shown = curl[1][1]
    assert sse_events(first.stdout)[-1] == sse_events(shown)[-1] == "end"
    assert set(sse_events(first.stdout)) == set(sse_events(shown))
    end = json.loads(re.findall(r"^event: end\ndata: (.*)$", first.stdout, re.MULTILINE)[0])
    shown_end = json.loads(re.findall(r"^event: end\ndata: (.*)$", shown, re.MULTILINE)[0])
    assert end.keys() == shown_end.keys()
    assert (end["status"], end["exit_code"]) == (shown_end["status"], shown_end["exit_code"])
    for line in ("Train a logistic regression model with regularization rate of 0.5", "Accuracy is 0.9",
                 "Model saved to ", "outputs/sklearn_mnist_model.pkl"):
        assert line in first.stdout

    # 2. The reads and the two registrations: each note's names appear in the answer.
    env = {"JOB": job_id}
    reads = shell(curl[2][1], live_server, tmp_path, **env)
    assert reads.returncode == 0, reads.stderr
    for command, note in commands(curl[2][1]):
        if command.startswith(("curl -s localhost", 'curl -s "localhost')):
            answer = shell(command, live_server, tmp_path, **env).stdout
            # What a note names: quoted keys, file paths and snake_case fields must be in the answer.
            named = re.findall(r'"([\w ]+)":', note) + re.findall(r"\b\w+/[\w./]+", note) + \
                re.findall(r"\b[a-z]+_[a-z_]+\b", note)
            missing = [name for name in named if name not in answer]
            assert not missing, (command, missing, answer[:300])
    latest = json.loads(shell("curl -s localhost:8000/v1/models/sklearn_mnist/versions/latest", live_server,
                              tmp_path).stdout)
    assert (latest["name"], latest["version"]) == ("sklearn_mnist", 2)  # as the README's note says
    assert (tmp_path / "model.pkl").stat().st_size > 0

    # 3. The CLI block, line by line: exit codes and the values its notes promise.
    (tmp_path / "job.json").write_text(json.dumps({"experiment": "from-file", "source": "trainer",
                                                   "script": "train.py", "arguments": [
                                                       "--data-folder", {"dataset": "digits"}]}))
    outputs: dict[str, subprocess.CompletedProcess[str]] = {}
    for command, _ in commands(blocks("With the CLI")[0][1]):
        outputs[command] = shell(command, live_server, tmp_path, **env)
    expected_codes = {"runyard cancel $JOB": 4}
    for command, result in outputs.items():
        assert result.returncode == expected_codes.get(command, 0), (command, result.stdout, result.stderr)
    assert "Accuracy is 0.9" in outputs["runyard submit --follow"].stdout
    assert "completed" in outputs["runyard submit --follow"].stdout
    assert "version 3" in outputs["runyard register $JOB"].stdout  # the note: 3, after curl's 1 and 2
    assert "is already completed" in outputs["runyard cancel $JOB"].stderr
    assert "Conflict (409)" in outputs["runyard cancel $JOB"].stderr
    assert "local" in outputs["runyard targets"].stdout
    history = outputs["runyard metrics $JOB --history accuracy"].stdout.splitlines()
    assert history[0].split() == ["step", "value", "time"]
    assert float(history[1].split()[1]) > 0.9

    # 4. The Python block as written: it prints the run's output, then `finished: completed` and the accuracy.
    [(lang, code)] = blocks("With Python")
    assert lang == "python"
    python = subprocess.run([sys.executable, "-c", localize(code, live_server) + "\nprint('version', version.version)"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert python.returncode == 0, python.stderr
    assert "finished: JobStatus.COMPLETED" in python.stdout or "finished: completed" in python.stdout
    assert float(python.stdout.strip().splitlines()[-2]) > 0.9
    assert python.stdout.strip().splitlines()[-1] == "version 4"
