"""The v2 fake's online endpoint operations keep azure-ai-ml's signatures (as the v2 contract test does)."""

from __future__ import annotations

import pytest

pytest.importorskip("azure.ai.ml", reason="the azure-v2 extra is not installed: pip install -e .[azure-v2]")
from azure.ai.ml.operations import OnlineDeploymentOperations, OnlineEndpointOperations

from tests.fakes import azureml_v2_serving as fake
from tests.unit.test_azureml_v2_contract import _params

CONTRACT: list[tuple[type, type, str]] = [
    (fake.OnlineEndpointOperations, OnlineEndpointOperations, "get"),
    (fake.OnlineEndpointOperations, OnlineEndpointOperations, "begin_create_or_update"),
    (fake.OnlineEndpointOperations, OnlineEndpointOperations, "get_keys"),
    (fake.OnlineEndpointOperations, OnlineEndpointOperations, "begin_delete"),
    (fake.OnlineDeploymentOperations, OnlineDeploymentOperations, "get"),
    (fake.OnlineDeploymentOperations, OnlineDeploymentOperations, "begin_create_or_update"),
    (fake.OnlineDeploymentOperations, OnlineDeploymentOperations, "get_logs"),
    (fake.OnlineDeploymentOperations, OnlineDeploymentOperations, "list"),
    (fake.OnlineDeploymentOperations, OnlineDeploymentOperations, "begin_delete"),
]


@pytest.mark.parametrize(("fake_owner", "real_owner", "name"), CONTRACT,
                         ids=[f"{r.__name__}.{n}" for _, r, n in CONTRACT])
def test_faked_online_endpoint_call_has_the_sdk_signature(fake_owner: type, real_owner: type, name: str) -> None:
    assert _params(fake_owner, name) == _params(real_owner, name)
