"""The OpenAPI document as the server behaves: security only when keys are configured, every error listed.

FastAPI derives the document from the routes' signatures; what it cannot see is added here once,
when the document is first built: the bearer requirement follows the keys (an `HTTPBearer`
dependency would declare it even when no key is configured), errors are problem+json, and the
statuses a middleware or an exception handler can answer on any route are listed on each.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from service.api.links import add_links
from service.api.schemas import Problem
from service.core.settings import Settings

SCHEME = "HTTPBearer"
_PROBLEM = {"$ref": "#/components/schemas/Problem"}
_TEXT = {
    400: "The request body cannot be parsed",
    401: "Missing or wrong API key",
    403: "A dashboard session's request without its CSRF header",
    413: "The request body is too large",
    415: "The request body is not JSON",
    422: "The request is not valid",
    503: "Storage or a backend is unavailable for now; retry after Retry-After",
}
_BODY_METHODS = {"post", "put", "patch"}


def operation_id(route: APIRoute) -> str:
    """A route's operationId: its function's name, unique across the API (a unit test keeps it so)."""
    return route.name


def refine(
    app: FastAPI, *, keys_required: bool, keyed: tuple[str, ...] = ("/v1/",), settings: Settings | None = None
) -> None:
    """Post-process `app`'s document; `keys_required` when keys are configured, and then the paths
    starting with one of `keyed` need one (the routes that depend on `require_api_key`); the
    limits the operator sets in `settings` are stated where a body meets them."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                _refine_operation(operation, method, keyed=keys_required and path.startswith(keyed),
                                  keys_required=keys_required, v1=path.startswith("/v1/"))
        components = schema.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        if settings is not None:
            _state_limits(schema, settings)
        add_links(schema)
        if "Problem" not in schemas:
            schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        if keys_required:
            components["securitySchemes"] = {
                SCHEME: {"type": "http", "scheme": "bearer", "description": "an API key from RUNYARD_API_KEYS"}
            }
        else:
            components.pop("securitySchemes", None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _refine_operation(
    operation: dict[str, Any], method: str, *, keyed: bool, keys_required: bool, v1: bool
) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    for parameter in operation.get("parameters", []):
        parameter["schema"] = _without_null(parameter.get("schema", {}))
    optional = operation.pop("security", None) is not None and not keyed
    if keyed:
        operation["security"] = [{SCHEME: []}]
        _add(responses, 401)
        if method in _BODY_METHODS:
            if "403" in responses and _TEXT[403] not in responses["403"]["description"]:
                responses["403"]["description"] += f"; or: {_TEXT[403]}"
            _add(responses, 403)
    else:
        responses.pop("401", None)
        if optional and keys_required:
            # A route that reads a key when one is sent (more detail) and answers without one too.
            operation["security"] = [{SCHEME: []}, {}]
    if v1:  # every /v1 route reads or writes the database, which can be locked or full
        _add(responses, 503)
    if "requestBody" in operation:
        for code in (400, 413, 415, 422):
            _add(responses, code)
    for status, response in responses.items():
        if status[:1] in "45":
            response["content"] = {"application/problem+json": {"schema": _PROBLEM}}
            if status == "422":
                response["description"] = _TEXT[422]


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A parameter's schema without FastAPI's `anyOf [..., null]` for `X | None = None`.

    A query or header is sent or left out; it cannot be JSON null (a client would send the text
    "null", which the route reads as that text).
    """
    branches = [branch for branch in schema.get("anyOf", []) if branch != {"type": "null"}]
    if len(branches) != 1 or len(schema["anyOf"]) != 2:
        return schema
    rest = {key: value for key, value in schema.items() if key != "anyOf" and not (key == "default" and value is None)}
    return {**branches[0], **rest}


def _add(responses: dict[str, Any], code: int) -> None:
    responses.setdefault(str(code), {"description": _TEXT[code]})


def _state_limits(schema: dict[str, Any], settings: Settings) -> None:
    """The bounds the operator configures, where clients meet them (the server checks the same)."""
    create = schema["components"]["schemas"].get("EndpointCreate", {}).get("properties", {})
    if "replicas" in create:
        create["replicas"].update(maximum=settings.endpoint_max_replicas,
                                  description="at most RUNYARD_ENDPOINT_MAX_REPLICAS")
    score = schema["paths"].get("/v1/endpoints/{name}/score", {}).get("post", {})
    body = score.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
    if "data" in body.get("properties", {}):
        body["properties"]["data"].update(
            maxItems=settings.endpoint_max_rows,
            description="rows of numbers, each as wide as the model's n_features; at most RUNYARD_ENDPOINT_MAX_ROWS",
        )
