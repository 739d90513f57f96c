"""The fake SDK cannot drift from azureml-core: every faked call has the real signature."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest
from azureml.core import Dataset, Experiment, Model, Run, ScriptRunConfig, Workspace, script_run_config
from azureml.core import Environment as RealEnvironment
from azureml.core._experiment_method import ExperimentSubmitRegistrar
from azureml.core.compute import AmlCompute, ComputeTarget
from azureml.core.conda_dependencies import CondaDependencies
from azureml.core.run import _RunBase
from azureml.core.webservice import AciWebservice, Webservice
from azureml.data.dataset_factory import FileDatasetFactory
from azureml.data.file_dataset import FileDataset

from tests.fakes import azureml as fake

# (fake owner, real owner, attribute): what the backend reaches through the fake.
CONTRACT: list[tuple[type, type, str]] = [
    (fake.Workspace, Workspace, "__init__"),
    (fake.Workspace, Workspace, "get"),
    (fake.Workspace, Workspace, "from_config"),
    (fake.Workspace, Workspace, "get_details"),
    (fake.Experiment, Experiment, "__init__"),
    (fake.Experiment, Experiment, "submit"),
    (fake.Experiment, Experiment, "get_runs"),
    (fake.Run, Run, "__init__"),
    (fake.Run, Run, "get_status"),
    (fake.Run, Run, "get_metrics"),
    (fake.Run, Run, "get_file_names"),
    (fake.Run, Run, "download_file"),
    (fake.Run, Run, "get_details"),
    (fake.Run, Run, "cancel"),
    (fake.Run, Run, "register_model"),
    (fake.ComputeTarget, ComputeTarget, "__init__"),
    (fake.ComputeTarget, ComputeTarget, "create"),
    (fake.ComputeTarget, AmlCompute, "get_status"),  # what ComputeTarget(ws, name) returns for a cluster
    (fake.AmlCompute, AmlCompute, "provisioning_configuration"),
    (fake.Environment, RealEnvironment, "register"),
    (fake.FileDataset, FileDataset, "as_mount"),
    (fake.FileDataset, FileDataset, "as_download"),
    (fake.FileDataset, FileDataset, "register"),
    (fake.FileDatasetFactory, FileDatasetFactory, "from_files"),
    (fake.Dataset, Dataset, "get_by_name"),
    (fake.Model, Model, "list"),
    (fake.Model, Model, "__init__"),
    (fake.Model, Model, "deploy"),
    (fake.Webservice, Webservice, "__init__"),
    (fake.Webservice, AciWebservice, "get_keys"),
    (fake.Webservice, AciWebservice, "get_logs"),
    (fake.Webservice, AciWebservice, "delete"),
]
PROPERTIES: list[tuple[type, type, str]] = [
    (fake.Run, Run, "id"),
    (fake.Run, Run, "status"),
    (fake.Run, Run, "tags"),
]


def _signature(owner: type, name: str) -> inspect.Signature:
    member: Callable[..., Any] = getattr(owner, name)
    return inspect.signature(member)


@pytest.mark.parametrize(("fake_owner", "real_owner", "name"), CONTRACT,
                         ids=[f"{r.__name__}.{n}" for _, r, n in CONTRACT])
def test_faked_call_has_the_sdk_signature(fake_owner: type, real_owner: type, name: str) -> None:
    assert _signature(fake_owner, name) == _signature(real_owner, name)


@pytest.mark.parametrize(("fake_owner", "real_owner", "name"), CONTRACT,
                         ids=[f"{r.__name__}.{n}" for _, r, n in CONTRACT])
def test_faked_call_is_static_where_the_sdk_is(fake_owner: type, real_owner: type, name: str) -> None:
    """A static SDK method is a classmethod on the fake (it needs its FakeAzure): called the same way."""
    real_static = isinstance(inspect.getattr_static(real_owner, name), staticmethod | classmethod) or (
        name == "get_by_name"  # Dataset.get_by_name is AbstractDataset's staticmethod, re-exported
    )
    fake_bound = isinstance(inspect.getattr_static(fake_owner, name), classmethod)
    assert real_static == fake_bound


@pytest.mark.parametrize(("fake_owner", "real_owner", "name"), PROPERTIES,
                         ids=[f"{r.__name__}.{n}" for _, r, n in PROPERTIES])
def test_faked_property_is_a_property_in_the_sdk(fake_owner: type, real_owner: type, name: str) -> None:
    assert isinstance(inspect.getattr_static(fake_owner, name), property)
    assert isinstance(inspect.getattr_static(real_owner, name), property)


def test_every_faked_call_is_in_the_contract() -> None:
    """A call added to a fake without a contract entry fails here."""
    checked = {(f, n) for f, _, n in CONTRACT + PROPERTIES}
    for owner in (fake.Workspace, fake.Experiment, fake.Run, fake.ComputeTarget, fake.AmlCompute,
                  fake.Environment, fake.FileDataset, fake.FileDatasetFactory, fake.Dataset, fake.Model):
        public = {n for n in vars(owner) if not n.startswith("_") or n == "__init__"}
        # Dataset.File is a class, provisioning_state a plain attribute, and runyard never builds a
        # FileDataset itself (from_files and register do).
        public -= {"File", "provisioning_state"} | ({"__init__"} if owner is fake.FileDataset else set())
        assert {(owner, n) for n in public} <= checked, owner.__name__


def test_the_fake_sdk_hands_out_the_real_offline_classes() -> None:
    sdk = fake.FakeAzure().sdk()
    assert sdk.ScriptRunConfig is ScriptRunConfig
    assert sdk.CondaDependencies is CondaDependencies
    assert issubclass(sdk.Environment, RealEnvironment)
    assert Dataset.File is FileDatasetFactory
    assert sdk.Dataset.File.__mro__[1] is fake.FileDatasetFactory


def test_the_keywords_runyard_passes_through_kwargs_are_taken_by_the_sdk() -> None:
    """`Experiment.submit(config, tags, **kwargs)` and `Run(experiment, run_id, **kwargs)` accept anything;
    the functions the kwargs reach must take the names runyard passes (`run_id`, `clean_up`)."""
    config = ScriptRunConfig(source_directory=".", script="train.py")
    submit = ExperimentSubmitRegistrar.get_submit_function(config)  # what Experiment.submit calls
    assert submit is script_run_config.submit
    params = inspect.signature(submit).parameters
    assert params["run_id"].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    inspect.signature(submit).bind(config, object(), "exp", run_id="exp_JOB1")
    # Run.__init__ -> _RunBase.__init__(**kwargs), which pops `clean_up` (the kill-handler switch).
    assert "_RunBase" in {c.__name__ for c in Run.__mro__}
    assert 'kwargs.pop("clean_up", True)' in inspect.getsource(_RunBase.__init__)
    # The fakes hold the same keywords to the same functions: a misspelt one is a TypeError.
    azure = fake.FakeAzure()
    experiment = azure.Experiment(workspace=None, name="exp")
    with pytest.raises(TypeError):
        experiment.submit(config, tags={}, runid="x")
    with pytest.raises(TypeError):
        azure.Run(experiment, "x", cleanup=False)
