"""The azure-ai-ml (SDK v2) surface runyard uses: with azureml_v2_workspace, the only modules importing it.

Loaded lazily: a service without a v2 cluster never imports `azure.ai.ml` or `mlflow`.
Tests hand the backend a `V2Sdk` whose client and MLflow client are fakes of the same
shapes, while the entity builders (`command`, `Input`, `Environment`, ...) stay the real ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from service.backends.azureml_base import TRANSIENT_STATUS, AzureNotFound, call_in_thread
from service.core.errors import BackendError

T = TypeVar("T")


@dataclass(frozen=True)
class V2Sdk:
    """The azure-ai-ml and mlflow names the backend calls; tests pass fakes for the clients."""

    MLClient: Any
    MlflowClient: Any
    command: Any
    Input: Any
    Environment: Any
    AmlCompute: Any
    Data: Any
    Model: Any
    ClientSecretCredential: Any
    ManagedIdentityCredential: Any
    # Serving: a managed online endpoint with one deployment per version (azure-ai-ml entities).
    ManagedOnlineEndpoint: Any = None
    ManagedOnlineDeployment: Any = None
    CodeConfiguration: Any = None


def load_v2_sdk() -> V2Sdk:
    """Import azure-ai-ml (and the MLflow client its workspaces track metrics with)."""
    from azure.ai.ml import Input, MLClient, command
    from azure.ai.ml.entities import (
        AmlCompute,
        CodeConfiguration,
        Data,
        Environment,
        ManagedOnlineDeployment,
        ManagedOnlineEndpoint,
        Model,
    )
    from azure.identity import ClientSecretCredential, ManagedIdentityCredential
    from mlflow.tracking import MlflowClient

    return V2Sdk(
        MLClient=MLClient, MlflowClient=MlflowClient, command=command, Input=Input, Environment=Environment,
        AmlCompute=AmlCompute, Data=Data, Model=Model, ClientSecretCredential=ClientSecretCredential,
        ManagedIdentityCredential=ManagedIdentityCredential, ManagedOnlineEndpoint=ManagedOnlineEndpoint,
        ManagedOnlineDeployment=ManagedOnlineDeployment, CodeConfiguration=CodeConfiguration,
    )


def call_v2(what: str, timeout: float, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """One azure-ai-ml or MLflow call in its own thread with a timeout (`azureml_base.call_in_thread`)."""
    return call_in_thread(what, timeout, translate_v2, fn, *args, **kwargs)


def translate_v2(exc: BaseException, what: str) -> BackendError:
    """Classify an azure-ai-ml, azure-core or MLflow exception: transient (retry) or permanent."""
    from azure.core import exceptions as core

    detail = f"{what}: {_message(exc)}"
    if isinstance(exc, core.ResourceNotFoundError):
        return AzureNotFound(detail)
    if isinstance(exc, core.ClientAuthenticationError):
        return BackendError(f"{what}: Azure ML authentication failed: {_message(exc)}", transient=False)
    status = _status_code(exc)
    if status == 404:
        return AzureNotFound(detail)
    if status is not None:
        return BackendError(detail, transient=status in TRANSIENT_STATUS)
    if isinstance(exc, core.ServiceRequestError | core.ServiceResponseError | ConnectionError | TimeoutError):
        return BackendError(detail, transient=True)
    if _is_credential_error(exc):
        return BackendError(f"{what}: Azure ML authentication failed: {_message(exc)}", transient=False)
    if _is_mlflow_error(exc):
        code = str(getattr(exc, "error_code", ""))
        if code == "RESOURCE_DOES_NOT_EXIST":
            return AzureNotFound(detail)
        return BackendError(detail, transient=code in {"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE",
                                                       "REQUEST_LIMIT_EXCEEDED"})
    if _is_ml_exception(exc) or isinstance(exc, TypeError | ValueError | KeyError | AttributeError | ImportError):
        return BackendError(detail, transient=False)  # ValidationException and friends: bad input, not the network
    try:
        import requests
    except ImportError:  # pragma: no cover - requests comes with azure-core
        return BackendError(detail, transient=True)
    if isinstance(exc, requests.exceptions.RequestException):
        return BackendError(detail, transient=True)
    # No definitive answer from Azure: retrying is the safe side.
    return BackendError(detail, transient=True)


def _status_code(exc: BaseException) -> int | None:
    code = getattr(exc, "status_code", None)
    if isinstance(code, int):
        return code
    code = getattr(getattr(exc, "response", None), "status_code", None)
    return code if isinstance(code, int) else None


def _is_credential_error(exc: BaseException) -> bool:
    try:
        from azure.identity import CredentialUnavailableError
    except ImportError:  # pragma: no cover - azure-identity comes with azure-ai-ml
        return False
    return isinstance(exc, CredentialUnavailableError)


def _is_mlflow_error(exc: BaseException) -> bool:
    try:
        from mlflow.exceptions import MlflowException
    except ImportError:  # pragma: no cover - mlflow-skinny comes with the azure-v2 extra
        return False
    return isinstance(exc, MlflowException)


def _is_ml_exception(exc: BaseException) -> bool:
    from azure.ai.ml.exceptions import MlException

    return isinstance(exc, MlException)


def _message(exc: BaseException) -> str:
    message = getattr(exc, "message", None)
    if not isinstance(message, str) or not message:
        try:
            message = str(exc)
        except Exception:
            message = ""
    first = message.strip().splitlines()[0] if message.strip() else ""
    return f"{type(exc).__name__}: {first}"[:500] if first else type(exc).__name__
