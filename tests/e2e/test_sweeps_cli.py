"""`runyard sweep` against a real `python -m service`: progress lines, the table, exit codes."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from service.cli.main import app
from tests.e2e.conftest import LiveServer


def test_sweep_waits_with_progress_and_prints_the_children(live_server: LiveServer) -> None:
    runner = CliRunner()
    args = ["--url", live_server.url, "sweep", "--experiment", "cli-sweep",
            "--param", "regularization=choice:0.01,1,10", "--register-best", "cli-best", "--wait", "--timeout", "240"]
    result = runner.invoke(app, args)

    assert result.exit_code == 0, result.output
    assert "sweep " in result.output
    assert "3/3 done" in result.output
    assert "registered cli-best version 1" in result.output
    for value in ("--regularization=0.01", "--regularization=1", "--regularization=10"):
        assert value in result.output
    assert "*" in result.output  # the best child is starred

    listed = runner.invoke(app, ["--url", live_server.url, "sweeps", "--json"])
    assert listed.exit_code == 0, listed.output
    [sweep] = json.loads(listed.stdout)
    assert sweep["status"] == "completed"
    assert sweep["sampling"] == "grid"
    assert sweep["registered_model"] == {"name": "cli-best", "version": 1}


def test_sweep_errors_are_one_line_and_exit_4(live_server: LiveServer) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["--url", live_server.url, "sweep", "--param", "regularization=loguniform:0,1"])
    assert result.exit_code == 4
    # Refused by the schema (issue 12), the field and the rule named on one line.
    assert "search_space.--regularization.loguniform.low: Input should be greater than 0" in result.output
    bad = runner.invoke(app, ["--url", live_server.url, "sweep", "--param", "regularization=normal:0,1"])
    assert bad.exit_code == 2
    assert "expected NAME=choice" in bad.output
