"""Shared fixtures: settings on a temporary data dir, the app served in-process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.core.settings import Settings

# Helpers live in tests/support; re-exported here only for tests written before the move.
from tests.support.jobs import TERMINAL, script_job, tutorial_job, wait_for

__all__ = ["TERMINAL", "client", "script_job", "settings", "tutorial_job", "wait_for"]


@pytest.fixture
def settings(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings for one test: its own data dir and database, fast polling."""
    return Settings(
        data_dir=tmp_path / "data",
        poll_interval_seconds=0.1,
        local_max_concurrent=2,
        cancel_grace_seconds=1.0,
        sources={"testscripts": Path(__file__).parent / "scripts"},
        # Test scripts get paths under the session's temporary folders (a marker file, a model from a
        # fixture): allowed like a dataset's, since job arguments outside the dataset roots are refused.
        dataset_roots=[tmp_path_factory.getbasetemp()],
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """The app with its lifespan running (migrations, seeding, background loops)."""
    with TestClient(create_app(settings)) as test_client:
        yield test_client
