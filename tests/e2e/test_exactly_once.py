"""Clients retry: the same Idempotency-Key makes one job, distinct requests all land."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.e2e.conftest import LiveServer

JOB = {"experiment": "load", "source": "testscripts", "script": "sleeper.py", "arguments": []}


async def _post_many(url: str, bodies: list[tuple[dict[str, Any], dict[str, str]]]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=64)
    # Like any real client, retry a dropped connection with the same Idempotency-Key: that is the
    # case the key exists for (a reused keep-alive connection can be closed under our feet).
    transport = httpx.AsyncHTTPTransport(retries=3, limits=limits)
    async with httpx.AsyncClient(base_url=url, timeout=120, transport=transport) as http:

        async def post(body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
            for attempt in range(3):
                try:
                    return await http.post("/v1/jobs", json=body, headers=headers)
                except httpx.TransportError:
                    if attempt == 2:
                        raise
            raise AssertionError("unreachable")

        return await asyncio.gather(*(post(b, h) for b, h in bodies))


def test_fifty_retries_with_one_key_make_one_job(live_server: LiveServer) -> None:
    responses = asyncio.run(_post_many(live_server.url, [(JOB, {"Idempotency-Key": "retry-me"})] * 50))
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    listed = httpx.get(f"{live_server.url}/v1/jobs", params={"experiment": "load"}).json()["items"]
    assert len(listed) == 1


def test_five_hundred_distinct_posts_make_five_hundred_jobs(server_factory: Any) -> None:
    server = server_factory(RUNYARD_LOCAL_MAX_CONCURRENT="1")
    bodies = [({**JOB, "tags": {"n": str(i)}}, {"Idempotency-Key": f"k-{i}"}) for i in range(500)]
    responses = asyncio.run(_post_many(server.url, bodies))
    assert [r.status_code for r in responses].count(201) == 500, {r.text for r in responses if r.status_code != 201}
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 500
    tags = {r.json()["tags"]["n"] for r in responses}
    assert len(tags) == 500
    seen: set[str] = set()
    cursor = None
    with httpx.Client(base_url=server.url, timeout=30) as http:
        while True:
            page = http.get("/v1/jobs", params={"limit": 500, **({"cursor": cursor} if cursor else {})}).json()
            seen |= {j["id"] for j in page["items"]}
            if not (cursor := page["next_cursor"]):
                break
    assert seen == ids
    assert "database is locked" not in server.log_text()
