"""The azureml-core surface runyard uses: the only module that imports `azureml.*`.

Everything here is loaded lazily, so a service without a workspace never imports the SDK
(~0.5 s and ~86 MB). Tests hand the backend an `AzureSdk` of fakes with the same shapes.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from concurrent.futures import Future, wait
from dataclasses import dataclass
from typing import Any, TypeVar

from service.core.errors import BackendError

log = logging.getLogger(__name__)
T = TypeVar("T")

# HTTP answers that say "try again later"; everything else from Azure is definitive.
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504, 530})
_ENV_CODE = re.compile(r"Code:\s*(\d{3})")


class AzureNotFound(BackendError):
    """Azure answered that the thing asked for does not exist (a definitive answer)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, transient=False)


@dataclass(frozen=True)
class AzureSdk:
    """The azureml-core classes the backend calls; tests pass fakes of the same shapes."""

    Workspace: Any
    Experiment: Any
    Run: Any
    ComputeTarget: Any
    AmlCompute: Any
    Environment: Any
    CondaDependencies: Any
    Dataset: Any
    ScriptRunConfig: Any
    ServicePrincipalAuthentication: Any
    MsiAuthentication: Any


def load_sdk() -> AzureSdk:
    """Import azureml-core and return its real classes."""
    from azureml.core import Dataset, Environment, Experiment, Run, ScriptRunConfig, Workspace
    from azureml.core.authentication import MsiAuthentication, ServicePrincipalAuthentication
    from azureml.core.compute import AmlCompute, ComputeTarget
    from azureml.core.conda_dependencies import CondaDependencies

    return AzureSdk(
        Workspace=Workspace, Experiment=Experiment, Run=Run, ComputeTarget=ComputeTarget, AmlCompute=AmlCompute,
        Environment=Environment, CondaDependencies=CondaDependencies, Dataset=Dataset,
        ScriptRunConfig=ScriptRunConfig, ServicePrincipalAuthentication=ServicePrincipalAuthentication,
        MsiAuthentication=MsiAuthentication,
    )


def call_with_timeout(what: str, timeout: float, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run one SDK call in its own daemon thread; give up after `timeout` seconds.

    Many SDK calls have no timeout of their own (compute and environment calls use bare
    `requests`). A daemon thread, unlike a ThreadPoolExecutor worker, cannot hold up the
    process at exit when such a call hangs; the abandoned call finishes in the background.
    """
    result: Future[T] = Future()

    def work() -> None:
        try:
            result.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to the caller, translated there
            result.set_exception(exc)

    threading.Thread(target=work, name=f"azureml: {what}", daemon=True).start()
    if not wait([result], timeout).done:
        log.warning("Azure ML call %r gave no answer within %.0fs; abandoned", what, timeout)
        raise BackendError(f"{what}: no answer from Azure ML within {timeout:g}s", transient=True)
    error = result.exception()
    if error is None:
        return result.result()
    if isinstance(error, BackendError):
        raise error
    raise translate(error, what) from error


def translate(exc: BaseException, what: str) -> BackendError:
    """Classify an exception from the SDK: transient (retry) or permanent (with the reason)."""
    status = _status_code(exc)
    detail = f"{what}: {_message(exc)}"
    if status == 404:
        return AzureNotFound(detail)
    if status is not None:
        return BackendError(detail, transient=status in TRANSIENT_STATUS)
    from azureml import exceptions as aml

    if isinstance(exc, aml.AzureMLException):
        inner = getattr(exc, "inner_exception", None)
        if isinstance(inner, BaseException) and inner is not exc and translate(inner, what).transient:
            # e.g. a token fetch that failed on the network, not on the credentials
            return BackendError(detail, transient=True)
        text = _message(exc)
        if isinstance(exc, aml.AuthenticationException):
            return BackendError(f"{what}: Azure ML authentication failed: {text}", transient=False)
        if "NotFound" in text or (isinstance(exc, aml.ProjectSystemException) and "not found" in text.lower()):
            return AzureNotFound(detail)  # ComputeTargetNotFound, ModelNotFound, "Workspace not found."
        return BackendError(detail, transient=False)
    if _is_network_error(exc):
        return BackendError(detail, transient=True)
    if isinstance(exc, ImportError):
        return BackendError(f"{what}: a package the Azure ML SDK needs is missing: {exc}", transient=False)
    if type(exc) is Exception and (code := _ENV_CODE.search(str(exc))):
        # Environment calls raise a bare Exception("... Code: 503 ...") on any non-200 reply.
        return BackendError(detail, transient=int(code.group(1)) in TRANSIENT_STATUS)
    if isinstance(exc, TypeError | ValueError | KeyError | AttributeError):
        return BackendError(detail, transient=False)  # a bug or bad input, not the network
    # Anything else is no definitive answer from Azure: retrying is the safe side.
    return BackendError(detail, transient=True)


def _status_code(exc: BaseException) -> int | None:
    """The HTTP status of a failed service reply, when the exception carries one."""
    code = getattr(exc, "status_code", None)
    if isinstance(code, int):
        return code
    response = getattr(exc, "response", None)
    code = getattr(response, "status_code", None)
    return code if isinstance(code, int) else None


def _is_network_error(exc: BaseException) -> bool:
    import requests

    if isinstance(exc, requests.exceptions.HTTPError):
        return False  # carries a status, handled above when it does
    if isinstance(exc, requests.exceptions.RequestException | ConnectionError | TimeoutError):
        return True
    try:
        from azure.core.exceptions import ServiceRequestError, ServiceResponseError
    except ImportError:  # pragma: no cover - azure-core comes with azureml-core
        return False
    return isinstance(exc, ServiceRequestError | ServiceResponseError)


def _message(exc: BaseException) -> str:
    """A one-line message; `str(ServiceException)` itself can raise (facts §11.7)."""
    message = getattr(exc, "message", None)
    if not isinstance(message, str) or not message:
        try:
            message = str(exc)
        except Exception:
            message = ""
    first = message.strip().splitlines()[0] if message.strip() else ""
    return f"{type(exc).__name__}: {first}"[:500] if first else type(exc).__name__
