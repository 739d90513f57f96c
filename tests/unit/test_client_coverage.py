"""Every operation of the API has a method on `Client` and on `AsyncClient`, and that method performs it."""

from __future__ import annotations

import asyncio
import inspect
import re
from typing import Any

import httpx
import pytest

from service.app import create_app
from service.client import AsyncClient, Client
from service.client.calls import OPERATIONS
from service.client.protocol import ApiError


def api_operations() -> set[tuple[str, str]]:
    spec = create_app().openapi()
    return {(method.upper(), path) for path, item in spec["paths"].items() for method in item}


def arguments(method: Any) -> dict[str, Any]:
    """Values for a client method's required parameters, by their names."""
    values = {"spec": {}, "version": 1}
    return {p.name: values.get(p.name, "x") for p in inspect.signature(method).parameters.values()
            if p.default is inspect.Parameter.empty}


def template_regex(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", template).replace("[^/]+$", ".+$") + "$")


def refuse(seen: list[httpx.Request]) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(418, json={"title": "Teapot", "detail": "recorded"})
    return handler


def test_every_operation_in_openapi_has_a_client_method() -> None:
    covered = set(OPERATIONS.values())
    missing = sorted(api_operations() - covered)
    assert not missing, f"operations with no client method: {missing}"
    stale = sorted(covered - api_operations())
    assert not stale, f"client methods for operations the API no longer has: {stale}"


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_the_sync_method_sends_its_operation(name: str) -> None:
    seen: list[httpx.Request] = []
    client = Client("http://runyard.test", transport=httpx.MockTransport(refuse(seen)))
    method = getattr(client, name)

    def call() -> None:
        result = method(**arguments(method))
        if inspect.isgenerator(result):
            next(result)

    with pytest.raises(ApiError):
        call()

    verb, template = OPERATIONS[name]
    assert (seen[0].method, bool(template_regex(template).match(seen[0].url.path))) == (verb, True), seen[0].url


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_the_async_method_sends_its_operation(name: str) -> None:
    seen: list[httpx.Request] = []

    async def call() -> None:
        async with AsyncClient("http://runyard.test", transport=httpx.MockTransport(refuse(seen))) as client:
            method = getattr(client, name)
            assert inspect.iscoroutinefunction(method) or inspect.isasyncgenfunction(method), name
            result = method(**arguments(method))
            if inspect.isasyncgen(result):
                await anext(result)
            else:
                await result

    with pytest.raises(ApiError):
        asyncio.run(call())
    verb, template = OPERATIONS[name]
    assert (seen[0].method, bool(template_regex(template).match(seen[0].url.path))) == (verb, True), seen[0].url


def test_both_clients_have_the_same_methods() -> None:
    public = {n for n in dir(Client) if not n.startswith("_")} - {"close"}
    public_async = {n for n in dir(AsyncClient) if not n.startswith("_")} - {"aclose"}
    assert public == public_async
