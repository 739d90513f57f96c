"""The checks both Azure deployers make before any SDK call, and the failure reason's log tail."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from service.backends.azureml_inference import InferenceTargets, with_log_tail
from service.backends.azureml_serving import V1_MODEL_ID, AzureServing
from service.backends.azureml_v2_serving import V2_MODEL_ID, AzureV2Serving
from service.backends.base import EnvironmentSpec, ServeRequest
from service.core.errors import BackendError
from service.core.settings import AzureInferenceSpec

SERVING = pytest.mark.parametrize(("deployer", "location", "model_id"), [
    (AzureServing, "sklearn_mnist:3", V1_MODEL_ID),
    (AzureV2Serving, "azureml:sklearn_mnist:3", V2_MODEL_ID),
])


def request(location: str, *packages: str) -> ServeRequest:
    env = EnvironmentSpec(name="tutorial-env", version=2, python_version="3.11", pip_packages=packages,
                          conda_packages=())
    return ServeRequest(target="aci-small", service="mnist-v3", endpoint="mnist", model_name="sklearn_mnist",
                        model_location=location, model_file="model.pkl", environment=env, source_dir=Path("."))


def deployer_for(cls: Any) -> InferenceTargets:
    # No workspace: every check here comes before the first SDK call.
    return cls(None, [AzureInferenceSpec(name="aci-small")])  # type: ignore[no-any-return]


@SERVING
def test_a_servable_request_names_its_model(deployer: type[InferenceTargets], location: str,
                                            model_id: re.Pattern[str]) -> None:
    found = deployer_for(deployer)._check_deployable(request(location, "azureml-defaults>=1.0"), model_id)
    assert "sklearn_mnist" in found.group(0)
    assert deployer_for(deployer).serving_targets() == ["aci-small"]


@SERVING
def test_an_environment_without_an_inference_server_is_refused_for_good(
    deployer: type[InferenceTargets], location: str, model_id: re.Pattern[str],
) -> None:
    with pytest.raises(BackendError, match="has neither of azureml-defaults, azureml-inference-server-http") as err:
        deployer_for(deployer)._check_deployable(request(location, "scikit-learn", "azureml-core"), model_id)
    assert err.value.transient is False


@SERVING
def test_a_model_from_elsewhere_and_an_unknown_target_are_refused_naming_the_sdk(
    deployer: type[InferenceTargets], location: str, model_id: re.Pattern[str],
) -> None:
    serving = deployer_for(deployer)
    serving._check_deployable(request(location, "azureml-defaults"), model_id)
    with pytest.raises(BackendError, match=rf"not in an Azure ML workspace \(SDK {serving.sdk_label}\)"):
        serving._check_deployable(request("/data/models/sklearn_mnist/3", "azureml-defaults"), model_id)
    unknown = rf"'aks-big' is not an inference target of the Azure ML \({serving.sdk_label}\)"
    with pytest.raises(BackendError, match=unknown):
        serving._spec("aks-big")


def test_the_reason_keeps_the_log_tail_and_survives_an_unreadable_log() -> None:
    log = "\n".join(["start", "", "init()", "Traceback", "  File score.py", "ModuleNotFoundError: joblib", ""])
    assert with_log_tail("the web service is Unhealthy", "svc", lambda: log) == \
        "the web service is Unhealthy | log: Traceback / File score.py / ModuleNotFoundError: joblib"

    def unreadable() -> object:
        raise BackendError("the log is not there yet", transient=True)

    assert with_log_tail("the web service is Failed", "svc", unreadable) == "the web service is Failed"
    assert len(with_log_tail("x" * 5000, "svc", lambda: None)) == 2000
