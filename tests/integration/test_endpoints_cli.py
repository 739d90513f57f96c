"""`runyard deploy | score --file | endpoints | evaluate` against a real server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import joblib
import pytest

from service.client import Client
from tests.e2e.conftest import LiveServer, start_server, stop_server
from tests.integration.test_cli import as_json, runyard
from tests.support.endpoints import fit_digits_model
from tests.support.jobs import script_job
from trainer.utils import load_mnist


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    server = start_server(tmp_path)
    yield server
    stop_server(server)


def test_deploy_score_a_file_list_and_evaluate(live_server: LiveServer, tmp_path: Path) -> None:
    # Inside the server's datasets folder: job arguments may name paths there only.
    (live_server.data_dir / "datasets").mkdir(parents=True, exist_ok=True)
    model_file = fit_digits_model(live_server.data_dir / "datasets" / "digits.pkl")
    with Client(live_server.url) as client:
        job = client.wait(client.submit(script_job("write_model.py", "--kind", "copy", "--source", str(model_file))).id)
        client.register_model(job.id, model_name="sklearn_mnist", model_path="outputs/model.pkl")
        digits = next(d for d in client.datasets() if d.name == "digits")
    assert digits.path is not None
    images = load_mnist(digits.path)["test_images"][:5] / 255.0

    deployed = as_json(runyard(live_server, "deploy", "mnist", "--model", "sklearn_mnist", "--json"))
    assert (deployed["status"], deployed["version"]) == ("ready", 1)

    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps({"data": images.tolist()}))
    scored = runyard(live_server, "score", "mnist", "--file", str(rows))
    assert scored.returncode == 0, scored.stderr
    expected = joblib.load(model_file).predict(images).tolist()
    assert [int(line) for line in scored.stdout.split()] == expected

    rows.write_text(json.dumps([[1.0, 2.0]]))
    narrow = runyard(live_server, "score", "mnist", "--file", str(rows))
    assert narrow.returncode == 4
    # 409 since issue 12: the width is the served model's, a property of the endpoint's state.
    assert "Conflict (409)" in narrow.stderr
    assert "taking 64 values per row" in narrow.stderr
    assert "row 0 has 2" in narrow.stderr

    listed = as_json(runyard(live_server, "endpoints", "--json"))
    assert [(e["name"], e["status"]) for e in listed] == [("mnist", "ready")]
    assert "mnist" in runyard(live_server, "endpoints").stdout

    evaluated = as_json(runyard(live_server, "evaluate", "sklearn_mnist", "--dataset", "digits", "--json"))
    assert evaluated["evaluation"]["samples"] == 450
    assert 0.9 < evaluated["evaluation"]["accuracy"] <= 1.0
