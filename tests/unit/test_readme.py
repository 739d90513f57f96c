"""The README stays true: its quick start, and a configuration row for every setting."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import AliasChoices

from service.core.settings import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def env_names(name: str) -> list[str]:
    alias = Settings.model_fields[name].validation_alias
    if isinstance(alias, AliasChoices):
        return [str(alias.choices[0])]
    return [f"RUNYARD_{name.upper()}"]


def test_quick_start_is_the_two_commands() -> None:
    block = README.split("## Quick start", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    assert [line.split()[:2] for line in block.splitlines()] == [["make", "serve"], ["make", "test"]]


def test_every_setting_has_a_row_in_the_configuration_table() -> None:
    table = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", table))
    missing = [env for name in Settings.model_fields for env in env_names(name) if env not in documented]
    assert not missing, f"add these to the README's configuration table: {missing}"


def test_the_screenshots_are_in_the_repo() -> None:
    paths = re.findall(r"!\[[^]]*\]\(([^)]+)\)", README)
    assert "docs/img/docs-page.png" in paths
    assert {"docs/img/ui-jobs.png", "docs/img/ui-job.png", "docs/img/ui-sweep.png"} <= set(paths)
    for path in paths:
        assert (Path(__file__).resolve().parents[2] / path).is_file(), path
