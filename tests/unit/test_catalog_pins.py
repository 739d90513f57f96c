"""What a submit pins: the latest version or the one asked for, with get_environment's and get_dataset's 404s."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.catalog import service as catalog
from service.core.errors import InvalidRequest, NotFound
from service.db.tables import Dataset
from service.runtime import Runtime
from tests.support.core import core_runtime


@pytest.fixture
def runtime(tmp_path: Path) -> Runtime:
    runtime, _ = core_runtime(tmp_path)
    with runtime.uow() as tx:
        catalog.create_environment(tx.session, spec=catalog.TUTORIAL_ENV)  # version 2
        for version, uri in ((1, None), (2, "azureml://opendatasets/mnist"), (3, None)):
            tx.session.add(Dataset(name="digits", version=version, path=None if uri else "/d", uri=uri))
    return runtime


def _detail(call: object) -> str:
    assert callable(call)
    with pytest.raises(NotFound) as raised:
        call()
    return str(raised.value)


def test_the_pinned_versions_are_the_latest_or_the_one_asked_for(runtime: Runtime) -> None:
    with runtime.db.session() as session:
        assert catalog.pinned_environment_version(session, name="tutorial-env", version=None) == 2
        assert catalog.pinned_environment_version(session, name="tutorial-env", version=1) == 1
        assert catalog.pinned_dataset_version(session, name="digits", version=None) == 3
        assert catalog.pinned_dataset_version(session, name="digits", version=1) == 1


@pytest.mark.parametrize(("name", "version"), [("tutorial-envv", None), ("tutorial-env", 7), ("nope", 1)])
def test_a_missing_environment_is_the_same_404_as_reading_it(runtime: Runtime, name: str, version: int | None) -> None:
    with runtime.db.session() as session:
        pinned = _detail(lambda: catalog.pinned_environment_version(session, name=name, version=version))
        read = _detail(lambda: catalog.get_environment(session, name=name, version=version))
    assert pinned == read
    assert ("did you mean 'tutorial-env'" in pinned) == (name == "tutorial-envv")


@pytest.mark.parametrize(("name", "version"), [("digit", None), ("digits", 9)])
def test_a_missing_dataset_is_the_same_404_as_reading_it(runtime: Runtime, name: str, version: int | None) -> None:
    with runtime.db.session() as session:
        pinned = _detail(lambda: catalog.pinned_dataset_version(session, name=name, version=version))
        read = _detail(lambda: catalog.get_dataset(session, name=name, version=version))
    assert pinned == read


def test_an_open_dataset_without_its_package_is_refused(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catalog, "opendatasets_installed", lambda: False)
    with runtime.db.session() as session, pytest.raises(InvalidRequest, match="azureml-opendatasets"):
        catalog.pinned_dataset_version(session, name="digits", version=2)
    monkeypatch.setattr(catalog, "opendatasets_installed", lambda: True)
    with runtime.db.session() as session:
        assert catalog.pinned_dataset_version(session, name="digits", version=2) == 2
