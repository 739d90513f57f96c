"""Web service / online endpoint names runyard derives from an endpoint name and version."""

from __future__ import annotations

import re

import pytest

from service.backends.azureml_v2_serving import split_service
from service.models.endpoints.remote import service_name

AZURE_RULE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # webservice_name_validation, 3..32 characters


@pytest.mark.parametrize("endpoint", ["mnist", "MNIST_svc.prod", "9lives", "a", "x" * 255, "a--b", "-.-"])
def test_a_service_name_keeps_azures_rule(endpoint: str) -> None:
    for version in (1, 12, 123456789):
        name = service_name(endpoint, version)
        assert AZURE_RULE.match(name), name
        assert 3 <= len(name) <= 32
        assert name.endswith(f"-v{version}")


def test_names_differing_only_in_case_or_punctuation_get_different_services() -> None:
    assert len({service_name(n, 1) for n in ["Mnist", "mnist", "mnist.", "mnist_"]}) == 4


def test_a_v2_service_is_an_online_endpoint_and_a_deployment_per_version() -> None:
    first, second = service_name("mnist", 1), service_name("mnist", 2)
    assert split_service(first)[0] == split_service(second)[0]
    assert (split_service(first)[1], split_service(second)[1]) == ("version-1", "version-2")
