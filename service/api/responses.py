"""JSON responses serialised once, by the model's own pydantic serializer.

A route that returns a model has FastAPI validate it again against the response model and,
for a plain `def` route, do that in a second worker-thread hop. Routes on hot paths build
their (already typed) model and return it through `json_response`; they declare
`response_model=` so the OpenAPI document is unchanged.
"""

from __future__ import annotations

from typing import Any

import pydantic_core
from pydantic import BaseModel
from starlette.responses import Response


def json_response(model: BaseModel, status_code: int = 200) -> Response:
    """`model` as the `application/json` body FastAPI would have written for it."""
    return Response(model.__pydantic_serializer__.to_json(model), status_code, media_type="application/json")


def page_response(items: list[dict[str, Any]], next_cursor: str | None) -> Response:
    """A `Page` whose items are already their model's fields (in its order, of its types) as dicts.

    pydantic serialises a value by its type the same way whether a model's field declares it
    or it stands alone (datetimes, enums, nested models), so this is the model's JSON without
    building a model per item. The caller owns that the dicts match the model exactly.
    """
    body = pydantic_core.to_json({"items": items, "next_cursor": next_cursor})
    return Response(body, media_type="application/json")
