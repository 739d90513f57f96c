"""Property-based fuzzing of the live service from its own /openapi.json: no 5xx, no schema breach."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from tests.e2e.conftest import LiveServer, start_server, stop_server

API_KEY = "fuzz-key-0123456789"
EXAMPLES = 15
CHECKS = [
    checks.not_a_server_error,
    checks.response_schema_conformance,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    # The document declares a key exactly when the server needs one (service/api/openapi.py).
    checks.ignored_auth,
    checks.missing_required_header,
]
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    # One slot, so the few valid jobs the fuzzer submits cannot swamp the machine.
    server = start_server(
        tmp_path_factory.mktemp("fuzz"), {"RUNYARD_LOCAL_MAX_CONCURRENT": "1", "RUNYARD_API_KEYS": API_KEY}
    )
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def keyless_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(tmp_path_factory.mktemp("fuzz-keyless"), {"RUNYARD_LOCAL_MAX_CONCURRENT": "1"})
    yield server
    stop_server(server)


def operations(server: LiveServer) -> list[schemathesis.APIOperation]:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


# schemathesis' pytest plugin does not run on pytest 9, so each operation's strategy is driven here.
@pytest.mark.parametrize("authorized", [True, False], ids=["with-key", "without-key"])
def test_every_operation(fuzz_server: LiveServer, authorized: bool) -> None:
    fuzz_operations(fuzz_server, authorized=authorized, keyed=True)


def test_every_operation_without_keys_configured(keyless_server: LiveServer) -> None:
    spec = schemathesis.openapi.from_url(f"{keyless_server.url}/openapi.json").raw_schema
    assert "securitySchemes" not in spec.get("components", {})
    fuzz_operations(keyless_server, authorized=False, keyed=False)


def fuzz_operations(server: LiveServer, *, authorized: bool, keyed: bool) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"} if authorized else {}
    tried: dict[str, int] = {}
    for operation in operations(server):

        @given(case=operation.as_strategy())
        @FUZZ
        def fuzz(case: schemathesis.Case) -> None:
            response = case.call_and_validate(headers=headers, checks=CHECKS)
            tried[case.operation.label] = tried.get(case.operation.label, 0) + 1
            if keyed and not authorized and case.path.startswith("/v1/"):
                assert response.status_code == 401, (case.method, case.path, response.status_code)

        fuzz()
    assert len(tried) >= 20, tried  # every operation ran, not a handful
    assert "database is locked" not in server.log_text()
