"""JSON responses serialised once, by the model's own pydantic serializer.

A route that returns a model has FastAPI validate it again against the response model and,
for a plain `def` route, do that in a second worker-thread hop. Routes on hot paths build
their (already typed) model and return it through `json_response`; they declare
`response_model=` so the OpenAPI document is unchanged.
"""

from __future__ import annotations

from pydantic import BaseModel
from starlette.responses import Response


def json_response(model: BaseModel, status_code: int = 200) -> Response:
    """`model` as the `application/json` body FastAPI would have written for it."""
    return Response(model.__pydantic_serializer__.to_json(model), status_code, media_type="application/json")
