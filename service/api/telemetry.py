"""GET /metrics: the Prometheus text format."""

from __future__ import annotations

from fastapi import APIRouter, Response

from service.api.deps import RuntimeDep

router = APIRouter(tags=["health"])


@router.get(
    "/metrics", summary="Prometheus metrics", response_class=Response,
    responses={200: {"content": {"text/plain; version=0.0.4": {"schema": {"type": "string"}}},
                     "description": "jobs by status, submits, poll cycles, backend calls and errors, HTTP latency"}},
)
def metrics(runtime: RuntimeDep) -> Response:
    """Counted at scrape time; a plain `def` so the database count runs off the event loop."""
    body, content_type = runtime.metrics.exposition()
    return Response(body, media_type=content_type)
