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
