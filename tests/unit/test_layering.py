"""The import contracts of pyproject.toml hold (lint-imports), and azure.ai.ml stays in its backend."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_the_import_contracts_are_kept() -> None:
    # `make test` runs lint-imports itself (and installs it); a venv made before it was a dev
    # dependency lacks it: `pip install -e .[dev]`.
    pytest.importorskip("importlinter", reason="import-linter not installed: pip install -e .[dev]")
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_only_the_azure_ml_v2_backend_imports_azure_ai_ml() -> None:
    # import-linter cannot name an external subpackage, so this one is checked here.
    offenders = []
    for path in [*ROOT.glob("service/**/*.py"), *ROOT.glob("trainer/**/*.py")]:
        if path.relative_to(ROOT).as_posix().startswith("service/backends/azureml_v2"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found = [n for n in names if n == "azure.ai.ml" or n.startswith("azure.ai.ml.")]
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in found]
    assert offenders == []


def test_only_the_lifecycle_gates_assign_a_status() -> None:
    # DESIGN.md: every status change goes through one gate per entity. In-memory mirrors are named
    # otherwise (`state`), so a grep for `.status =` finds the gates and nothing else.
    gates = {"service/jobs/lifecycle.py", "service/sweeps/lifecycle.py", "service/models/endpoints/lifecycle.py"}
    offenders = []
    for path in ROOT.glob("service/**/*.py"):
        rel = path.relative_to(ROOT).as_posix()
        if rel in gates or rel.startswith(("service/client/", "service/cli/")):
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            targets = node.targets if isinstance(node, ast.Assign) else (
                [node.target] if isinstance(node, ast.AnnAssign | ast.AugAssign) else [])
            flat = [e for t in targets for e in (t.elts if isinstance(t, ast.Tuple) else [t])]
            if any(isinstance(t, ast.Attribute) and t.attr == "status" for t in flat):
                offenders.append(f"{rel}:{node.lineno}")
    assert offenders == []
