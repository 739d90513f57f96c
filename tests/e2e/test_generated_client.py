"""A client generated from /openapi.json (datamodel-code-generator, as another team would) submits the
tutorial job to a live server and reads it back to `completed`: the document is enough to build one.

The generated models are also held to the server's rules: what they refuse, the server refuses.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, ValidationError

from service.jobs.schemas import TUTORIAL_JOB
from tests.e2e.conftest import LiveServer

TERMINAL = {"completed", "failed", "canceled"}


def generate(spec: dict[str, Any], folder: Path) -> ModuleType:
    """Pydantic models for every schema of `spec`, written to `folder` and imported."""
    source, target = folder / "openapi.json", folder / "runyard_models.py"
    source.write_text(json.dumps(spec))
    subprocess.run(
        [sys.executable, "-m", "datamodel_code_generator", "--input", str(source), "--input-file-type", "openapi",
         "--output", str(target), "--output-model-type", "pydantic_v2.BaseModel", "--field-constraints",
         "--use-annotated",
         "--target-python-version", "3.11", "--disable-timestamp"],
        check=True, capture_output=True, text=True, timeout=300,
    )
    loaded = importlib.util.spec_from_file_location("runyard_models", target)
    assert loaded is not None
    assert loaded.loader is not None
    module = importlib.util.module_from_spec(loaded)
    sys.modules[loaded.name] = module  # pydantic resolves the models' forward references through it
    loaded.loader.exec_module(module)
    return module


def route(spec: dict[str, Any], operation_id: str) -> tuple[str, str]:
    """(method, path) of an operation, found by its operationId as a generated client does."""
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if operation.get("operationId") == operation_id:
                return method.upper(), path
    raise AssertionError(f"no operation {operation_id}")


def test_a_generated_client_submits_the_tutorial_job_and_sees_it_complete(
    live_server: LiveServer, tmp_path: Path
) -> None:
    spec = httpx.get(f"{live_server.url}/openapi.json", timeout=30).json()
    models = generate(spec, tmp_path)
    job_create: type[BaseModel] = models.JobCreate
    job_public: type[BaseModel] = models.JobPublic

    body = job_create.model_validate(TUTORIAL_JOB)  # the tutorial request, as a typed object
    # What the server refuses, the generated model refuses too (the schema states it). Not every rule:
    # this generator leaves out `not` (the arguments' "no '..' segment"), which schemathesis does check.
    for bad in ({"script": "../service/app.py"}, {"max_retries": 11}, {"source": "a b"}, {"environment_version": 0},
                {"experiment": "no spaces"}, {"tags": {f"k{i}": "v" for i in range(51)}}):
        with pytest.raises(ValidationError):
            job_create.model_validate({**TUTORIAL_JOB, **bad})

    with httpx.Client(base_url=live_server.url, timeout=30) as http:
        method, path = route(spec, "submit_job")
        created = http.request(method, path, content=body.model_dump_json(exclude_unset=True),
                               headers={"Content-Type": "application/json"})
        assert created.status_code == 201, created.text
        job = job_public.model_validate_json(created.text)
        assert str(getattr(job.status, "value", job.status)) == "queued"

        method, template = route(spec, "get_job")
        deadline = time.monotonic() + 180
        while str(getattr(job.status, "value", job.status)) not in TERMINAL:
            assert time.monotonic() < deadline, job
            time.sleep(0.2)
            job = job_public.model_validate_json(http.request(method, template.format(job_id=job.id)).text)
    assert str(getattr(job.status, "value", job.status)) == "completed", job
    assert job.experiment == TUTORIAL_JOB["experiment"]
