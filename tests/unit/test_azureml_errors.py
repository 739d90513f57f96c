"""SDK exceptions become `BackendError`s: transient ones are retried, permanent ones fail the job."""

from __future__ import annotations

import threading

import pytest
import requests
from azureml.exceptions import (
    AuthenticationException,
    ComputeTargetException,
    ModelPathNotFoundException,
    ProjectSystemException,
    UserErrorException,
    WebserviceException,
)

from service.backends.azureml_sdk import AzureNotFound, call_with_timeout, translate
from service.core.errors import BackendError
from tests.fakes.azureml import service_error


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (service_error(500), True),
        (service_error(502), True),
        (service_error(503), True),
        (service_error(429), True),
        (service_error(408), True),
        (service_error(400), False),
        (service_error(403, "AuthorizationFailed"), False),
        (requests.exceptions.ConnectionError("Name or service not known"), True),
        (requests.exceptions.ReadTimeout("read timed out"), True),
        (TimeoutError("socket timeout"), True),
        (AuthenticationException("AADSTS7000215: Invalid client secret"), False),
        (UserErrorException("Please specify a different target name. local is a reserved name."), False),
        (ModelPathNotFoundException("Could not locate the provided model_path"), False),
        (Exception("Error retrieving the environment definition. Code: 503\n: busy"), True),
        (Exception("Error retrieving the environment definition. Code: 400\n: bad"), False),
        (ImportError('Missing required package "azureml-dataset-runtime"'), False),
        (TypeError("unexpected keyword"), False),
        (RuntimeError("something else entirely"), True),  # no definitive answer: retry
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_classification(error: BaseException, transient: bool) -> None:
    translated = translate(error, "do a thing")
    assert translated.transient is transient
    assert translated.message.startswith("do a thing: ")


@pytest.mark.parametrize(
    "error",
    [
        service_error(404, "RunNotFound"),
        ComputeTargetException("ComputeTargetNotFound: Compute Target with name cpu-cluster not found"),
        ProjectSystemException("Workspace not found."),
        WebserviceException("ModelNotFound: Model with id nope:1 not found in provided workspace"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_not_found_is_its_own_permanent_answer(error: BaseException) -> None:
    translated = translate(error, "look")
    assert isinstance(translated, AzureNotFound)
    assert not translated.transient


def test_an_auth_error_caused_by_the_network_is_transient() -> None:
    error = AuthenticationException("could not get a token", inner_exception=requests.exceptions.ConnectionError())
    assert translate(error, "connect").transient


def test_the_message_survives_a_service_exception_whose_str_raises() -> None:
    error = service_error(503, "ServiceUnavailable", "try later")
    with pytest.raises(TypeError):
        str(error)  # facts §11.7: details=None breaks ServiceException.__str__
    assert translate(error, "list runs").message == "list runs: ServiceException: (ServiceUnavailable) try later"


def test_call_with_timeout_returns_and_translates() -> None:
    assert call_with_timeout("add", 1, lambda a, b: a + b, 1, b=2) == 3
    with pytest.raises(BackendError, match="busy") as raised:
        call_with_timeout("fail", 1, _raise, service_error(503, "Busy", "busy"))
    assert raised.value.transient


def test_call_with_timeout_abandons_a_hanging_call() -> None:
    release = threading.Event()
    with pytest.raises(BackendError, match="no answer from Azure ML within 0.1s") as raised:
        call_with_timeout("hang", 0.1, release.wait, 30)
    release.set()
    assert raised.value.transient


def _raise(error: BaseException) -> None:
    raise error
