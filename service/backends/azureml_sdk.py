"""The azureml-core surface runyard uses: the only module that imports `azureml.*`.

Everything here is loaded lazily, so a service without a workspace never imports the SDK
(~0.5 s and ~86 MB). Tests hand the backend an `AzureSdk` of fakes with the same shapes.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from service.backends.azureml_base import TRANSIENT_STATUS, call_in_thread

# Re-exported: callers that classify errors import them from here too.
from service.backends.azureml_base import AzureCallAbandoned as AzureCallAbandoned
from service.backends.azureml_base import AzureNotFound as AzureNotFound
from service.core.errors import BackendError

log = logging.getLogger(__name__)
T = TypeVar("T")

# Where the SDK writes a reply's HTTP status into an exception's message:
# `"status_code": 503` (get_http_exception_response_string, used by _execution._commands and
# _project.project_engine `_raise_request_error`, and by the snapshot client), `Response Code: 503`
# (ComputeTargetException from core/compute), `http error: 503` (the vendored MSI wrapper's
# AzureResponseError) and `Code: 503` (Environment.get/register/list's bare Exception).
_EMBEDDED_STATUS = re.compile(r'(?:"status_code":|Response Code:|http error:|\bCode:)\s*(\d{3})\b')
# A token is reused until this close to its expiry (the SDK's own service principal cache uses 5 min).
TOKEN_REFRESH_MARGIN_SECONDS = 300.0


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
    Model: Any = None
    # Serving (the tutorial's part 2): Model.deploy with an InferenceConfig to ACI or AKS.
    Webservice: Any = None
    AciWebservice: Any = None
    AksWebservice: Any = None
    InferenceConfig: Any = None
    # name -> a function returning that Azure Open Dataset's FileDataset (lazy, no download)
    open_file_dataset: Callable[[str], Any] | None = None
    # experiment -> its runs as listed (records with `.run_id` and `.status`), newest first, paged;
    # and (experiment, record) -> a Run handle built from that record without another request.
    list_runs: Callable[[Any], Iterator[Any]] | None = None
    run_of_listed: Callable[[Any, Any], Any] | None = None


def load_sdk() -> AzureSdk:
    """Import azureml-core and return its real classes (managed identity with a token cache)."""
    from azureml.core import Dataset, Environment, Experiment, Model, Run, ScriptRunConfig, Workspace
    from azureml.core.authentication import ServicePrincipalAuthentication
    from azureml.core.compute import AmlCompute, ComputeTarget
    from azureml.core.conda_dependencies import CondaDependencies
    from azureml.core.model import InferenceConfig
    from azureml.core.webservice import AciWebservice, AksWebservice, Webservice

    return AzureSdk(
        Workspace=Workspace, Experiment=Experiment, Run=Run, ComputeTarget=ComputeTarget, AmlCompute=AmlCompute,
        Environment=Environment, CondaDependencies=CondaDependencies, Dataset=Dataset,
        ScriptRunConfig=ScriptRunConfig, ServicePrincipalAuthentication=ServicePrincipalAuthentication,
        MsiAuthentication=caching_msi_authentication(), Model=Model, open_file_dataset=open_file_dataset,
        Webservice=Webservice, AciWebservice=AciWebservice, AksWebservice=AksWebservice,
        InferenceConfig=InferenceConfig, list_runs=list_run_records, run_of_listed=run_of_record,
    )


def list_run_records(experiment: Any) -> Iterator[Any]:
    """`experiment.get_runs()` without building a `Run` per listed run: the `RunDto`s it pages through.

    `Experiment.get_runs` -> `Run.list` -> `Run._rehydrate_runs` turns every listed DTO into a
    (Script)Run: ~0.44 ms of CPU each, against ~0.14 ms to read the DTO from the reply
    (`python -m bench.azure_sdk_cost`), i.e. ~4.4 s per poll at 10,000 active runs. The poller
    needs only the id and status of most of them; `run_of_record` builds a Run for those it reads.
    """
    from azureml._run_impl.run_history_facade import RunHistoryFacade

    return iter(RunHistoryFacade.get_runs(experiment))


def run_of_record(experiment: Any, record: Any) -> Any:
    """A `Run` from a listed `RunDto`, as `Run.list` builds it: no request; `clean_up=False` (facts §6.7)."""
    from azureml.core import Run

    return Run._dto_to_run(experiment, record, clean_up=False)


def open_file_dataset(name: str) -> Any:
    """An Azure Open Dataset as the tutorial gets it: `MNIST.get_file_dataset()` (azureml-opendatasets).

    Lazy: it only describes `wasbs://mnist@azureopendatastorage...` (azureml/opendatasets, checked offline).
    """
    if name != "mnist":
        raise BackendError(f"unknown Azure Open Dataset {name!r}; known: mnist", transient=False)
    try:
        from azureml.opendatasets import MNIST
    except ImportError as exc:
        raise BackendError(f"the Azure Open Dataset {name!r} needs azureml-opendatasets: "
                           "pip install 'runyard[azure]'", transient=False) from exc
    return MNIST.get_file_dataset(enable_telemetry=False)


def quiet_cancel() -> None:
    """Make `Run.cancel()` return once its request is sent.

    It ends in MetricsClient.flush, which waits up to 240 s for metric ingestion unless
    `os.getenv('AZUREML_FLUSH_INGEST_WAIT', True)` is falsy (_restclient/metrics_client.py):
    runyard never logs metrics itself, so there is nothing to wait for. An operator's value wins.
    """
    os.environ.setdefault("AZUREML_FLUSH_INGEST_WAIT", "")


def caching_msi_authentication() -> type:
    """`MsiAuthentication` that reuses each token until shortly before it expires.

    The SDK's class builds a new `MSIAuthenticationWrapper` and asks the identity endpoint on
    every `_get_*_token` call (core/authentication.py), i.e. on every request; the endpoint throttles.
    """
    from azureml.core.authentication import MsiAuthentication, _get_exp_time

    class CachingMsiAuthentication(MsiAuthentication):  # type: ignore[misc]
        def __init__(self, cloud: str | None = None, **kwargs: Any) -> None:
            super().__init__(cloud, **kwargs)
            self._tokens: dict[tuple[str, ...], tuple[str, float]] = {}
            self._token_lock = threading.Lock()

        def _cached(self, key: tuple[str, ...], fetch: Callable[[], str]) -> str:
            with self._token_lock:  # one fetch at a time: concurrent callers reuse its token
                found = self._tokens.get(key)
                if found is not None and time.time() < found[1] - TOKEN_REFRESH_MARGIN_SECONDS:
                    return found[0]
                token = fetch()
                try:
                    expires = float(_get_exp_time(token))
                except Exception:  # not a JWT: use it once, ask again next time
                    expires = 0.0
                self._tokens[key] = (token, expires)
                return token

        def _get_resource_token(self, resource: str) -> str:
            return self._cached(("resource", resource), lambda: super(CachingMsiAuthentication, self)
                                ._get_resource_token(resource))

        def _get_arm_token(self) -> str:
            return self._cached(("arm",), super()._get_arm_token)

        def _get_graph_token(self) -> str:
            return self._cached(("graph",), super()._get_graph_token)

        def _get_azureml_client_token(self) -> str:
            return self._cached(("azureml",), super()._get_azureml_client_token)

    CachingMsiAuthentication.__name__ = CachingMsiAuthentication.__qualname__ = "MsiAuthentication"
    return CachingMsiAuthentication


def call_with_timeout(what: str, timeout: float, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """One azureml-core call in its own thread with a timeout (`azureml_base.call_in_thread`)."""
    return call_in_thread(what, timeout, translate, fn, *args, **kwargs)


def translate(exc: BaseException, what: str) -> BackendError:
    """Classify an exception from the SDK: transient (retry) or permanent (with the reason)."""
    status = _status_code(exc)
    detail = f"{what}: {_message(exc)}"
    if status == 404:
        return AzureNotFound(detail)
    if status is not None:
        return BackendError(detail, transient=status in TRANSIENT_STATUS)
    from azureml import exceptions as aml
    from azureml._vendor.azure_cli_core import azclierror

    if isinstance(exc, azclierror.AzureConnectionError):
        return BackendError(detail, transient=True)  # the identity endpoint did not answer
    if isinstance(exc, azclierror.AuthenticationError):
        return BackendError(f"{what}: Azure ML authentication failed: {_message(exc)}", transient=False)
    if isinstance(exc, azclierror.AzureResponseError):
        return BackendError(detail, transient=True)  # a token reply without a status: no definitive answer
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
        return BackendError(f"{what}: a package the Azure ML SDK needs is missing ({_message(exc)}); "
                            "install runyard with its Azure extra: pip install 'runyard[azure]'", transient=False)
    if isinstance(exc, TypeError | ValueError | KeyError | AttributeError):
        return BackendError(detail, transient=False)  # a bug or bad input, not the network
    # Anything else is no definitive answer from Azure: retrying is the safe side.
    return BackendError(detail, transient=True)


def _status_code(exc: BaseException) -> int | None:
    """The HTTP status of a failed service reply: an attribute, or written into the message."""
    code = getattr(exc, "status_code", None)
    if isinstance(code, int):
        return code
    response = getattr(exc, "response", None)
    code = getattr(response, "status_code", None)
    if isinstance(code, int):
        return code
    if type(exc).__module__.startswith("requests"):
        return None  # a requests error without a response: the network
    found = _EMBEDDED_STATUS.search(_raw_message(exc))
    status = int(found.group(1)) if found else None
    return status if status is not None and status >= 400 else None


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


def _raw_message(exc: BaseException) -> str:
    """`.message` (AzureMLException's, without its decorations), else `str()`, which can raise (facts §11.7)."""
    message = getattr(exc, "message", None)
    if isinstance(message, str) and message:
        return message
    try:
        return str(exc)
    except Exception:
        return ""


def _message(exc: BaseException) -> str:
    """One readable line: a JSON reply's `error.message`, else the first line with text."""
    raw = _raw_message(exc)
    text = _json_error_message(raw)
    if text is None:
        text = next((line.strip() for line in raw.splitlines() if any(c.isalnum() for c in line)), "")
    return f"{type(exc).__name__}: {text}"[:500] if text else type(exc).__name__


def _json_error_message(raw: str) -> str | None:
    """`{"error_details": {"error": {"code", "message"}}, "status_code": N}` as `N Code: message`."""
    if not raw.lstrip().startswith("{"):
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    body = data.get("error_details", data)
    error = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(error, dict):
        code, message = error.get("code"), error.get("message")
        text = f"{code}: {message}" if code and message else str(message or code or "")
    else:
        text = str(error or "")
    status = data.get("status_code")
    text = " ".join(text.split())
    return f"HTTP {status}: {text}" if status and text else (text or None)
