"""The OpenAPI document says what the server does: security only with keys, every error it can answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from service.app import create_app
from service.core.settings import Settings
from service.db.pagination import KeyShape

KEY = "doc-key-0123456789abcdef"
BEARER = {"HTTPBearer": []}


def document(tmp_path: Path, **settings: Any) -> dict[str, Any]:
    return create_app(Settings(_env_file=None, data_dir=tmp_path, **settings)).openapi()  # type: ignore[call-arg]


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, item in spec["paths"].items() for method, op in item.items()]


def test_without_keys_no_operation_declares_security_or_401(tmp_path: Path) -> None:
    spec = document(tmp_path)
    assert "securitySchemes" not in spec.get("components", {})
    for path, method, op in operations(spec):
        assert "security" not in op, (method, path)
        assert "401" not in op["responses"], (method, path)


def test_with_keys_every_v1_operation_needs_the_bearer_key_and_documents_401(tmp_path: Path) -> None:
    spec = document(tmp_path, api_keys=KEY)
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    v1 = [(path, method, op) for path, method, op in operations(spec) if path.startswith("/v1/")]
    assert len(v1) >= 20
    for path, method, op in v1:
        assert op["security"] == [BEARER], (method, path)
        assert "401" in op["responses"], (method, path)
    # /readyz answers everyone and tells a caller with a key more: the key is optional there.
    assert spec["paths"]["/readyz"]["get"]["security"] == [BEARER, {}]
    assert "security" not in spec["paths"]["/healthz"]["get"]


def test_metrics_needs_the_key_only_when_the_operator_asks(tmp_path: Path) -> None:
    assert "security" not in document(tmp_path, api_keys=KEY)["paths"]["/metrics"]["get"]
    guarded = document(tmp_path, api_keys=KEY, metrics_require_key=True)["paths"]["/metrics"]["get"]
    assert guarded["security"] == [BEARER]
    assert "401" in guarded["responses"]


def test_every_error_is_a_problem_document_and_bodies_list_their_refusals(tmp_path: Path) -> None:
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, method, op in operations(document(tmp_path, api_keys=KEY)):
        for status, response in op["responses"].items():
            if status[0] in "45":
                assert response["content"] == problem, (method, path, status)
        if "requestBody" in op:
            assert {"400", "413", "415", "422"} <= set(op["responses"]), (method, path)
        if path.startswith("/v1/"):
            assert "503" in op["responses"], (method, path)


def test_the_log_stream_documents_each_event_type_and_its_data(tmp_path: Path) -> None:
    ok = document(tmp_path)["paths"]["/v1/jobs/{job_id}/logs"]["get"]["responses"]["200"]["content"]
    events = ok["text/event-stream"]["schema"]["oneOf"]
    by_name = {e["properties"]["event"]["const"]: e["properties"]["data"] for e in events}
    assert {"log", "attempt", "end"} <= set(by_name)
    assert by_name["log"] == {"type": "string"}
    assert set(by_name["end"]["contentSchema"]["required"]) == {"status", "exit_code", "error", "next_offset"}
    assert by_name["attempt"]["contentMediaType"] == "application/json"


def test_an_undeclared_method_answers_405_with_allow(tmp_path: Path) -> None:
    client = TestClient(create_app(Settings(_env_file=None, data_dir=tmp_path)))  # type: ignore[call-arg]
    for path, allowed in (("/healthz", "GET"), ("/v1/jobs/01ABC/cancel", "POST"),
                          # GET and POST are two routes; the header names the path's methods, not one route's
                          ("/v1/jobs", "GET, POST"), ("/v1/endpoints/e1", "GET, PATCH, DELETE")):
        for method in ("TRACE", "OPTIONS"):
            answer = client.request(method, path)
            assert answer.status_code == 405, (method, path)
            assert answer.headers["allow"] == allowed, (method, path)


def test_a_model_version_is_a_number_from_1_or_latest_in_the_document_and_the_server(tmp_path: Path) -> None:
    spec = document(tmp_path)
    for path in ("/v1/models/{name}/versions/{version}", "/v1/models/{name}/versions/{version}/evaluate"):
        (version,) = [p for op in spec["paths"][path].values() for p in op["parameters"] if p["name"] == "version"]
        assert version["schema"]["pattern"] == "^([1-9][0-9]{0,8}|latest)$"
    with TestClient(create_app(Settings(_env_file=None, data_dir=tmp_path))) as client:  # type: ignore[call-arg]
        assert client.get("/v1/models/m/versions/0").status_code == 422
        assert client.get("/v1/models/m/versions/1").status_code == 404
        assert client.get("/v1/models/m/versions/latest").status_code == 404


def test_a_dataset_body_takes_exactly_one_of_path_or_uri(tmp_path: Path) -> None:
    body = document(tmp_path)["components"]["schemas"]["DatasetCreate"]
    assert [branch["required"] for branch in body["oneOf"]] == [["path"], ["uri"]]


def test_each_cursor_is_documented_with_its_lists_key_shape(tmp_path: Path) -> None:
    shapes = {"/v1/jobs/{job_id}/metrics/{name}/history": KeyShape.INT, "/v1/models/{name}/versions": KeyShape.INT,
              "/v1/datasets": KeyShape.TEXT_INT, "/v1/environments": KeyShape.TEXT_INT}
    seen = 0
    for path, method, op in operations(document(tmp_path)):
        for param in op.get("parameters", []):
            if param["name"] == "cursor":
                shape = shapes.get(path, KeyShape.TEXT)
                schema = param["schema"]
                assert (schema["pattern"], schema["minLength"]) == (shape.pattern, shape.min_length), (method, path)
                assert "422" in op["responses"], (method, path)
                seen += 1
    assert seen >= 10


def test_operation_ids_are_the_route_names_and_unique(tmp_path: Path) -> None:
    spec = document(tmp_path)
    ids = [op["operationId"] for _, _, op in operations(spec)]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    assert spec["paths"]["/v1/jobs"]["post"]["operationId"] == "submit_job"


def test_links_lead_from_created_resources_to_their_operations(tmp_path: Path) -> None:
    spec = document(tmp_path)
    ids = {op["operationId"] for _, _, op in operations(spec)}
    links = spec["paths"]["/v1/jobs"]["post"]["responses"]["201"]["links"]
    assert links["GetJob"] == {"operationId": "get_job", "parameters": {"job_id": "$response.body#/id"}}
    for path, method, op in operations(spec):
        for response in op["responses"].values():
            for link in response.get("links", {}).values():
                assert link["operationId"] in ids, (method, path, link)
    endpoint_links = spec["paths"]["/v1/endpoints"]["post"]["responses"]["201"]["links"]
    assert {"GetEndpoint", "Score", "DeleteEndpoint"} <= set(endpoint_links)


def test_no_parameter_is_documented_as_json_null(tmp_path: Path) -> None:
    # A query or header is sent or not; FastAPI's `X | None` would let a client send the text "null".
    for path, method, op in operations(document(tmp_path)):
        for param in op.get("parameters", []):
            assert {"type": "null"} not in param["schema"].get("anyOf", []), (method, path, param["name"])


def test_the_operators_limits_are_in_the_document(tmp_path: Path) -> None:
    spec = document(tmp_path, endpoint_max_replicas=3, endpoint_max_rows=70)
    assert spec["components"]["schemas"]["EndpointCreate"]["properties"]["replicas"]["maximum"] == 3
    body = spec["paths"]["/v1/endpoints/{name}/score"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["data"]["maxItems"] == 70
