"""The `Allow` header of a 405: every method the request's path answers, over all its routes.

Starlette answers a 405 from the first route whose path matches, so `GET /v1/jobs` and
`POST /v1/jobs` (two routes) would each claim to be the only method; RFC 9110 §15.5.6 asks for
the resource's methods. Each route is asked through the public `BaseRoute.matches`, one method at
a time, so included routers (which FastAPI resolves lazily) answer for their own routes.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import BaseRoute, Match, Mount

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request, fallback: str | None = None) -> str | None:
    """The comma-separated methods some route answers on the request's path, else `fallback`."""
    routes: list[BaseRoute] = list(getattr(request.app.router, "routes", ()))
    # A mount (static assets) matches any method under its prefix and answers its own 405s.
    routes = [route for route in routes if not isinstance(route, Mount)]
    found = [
        method for method in METHODS
        if any(route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes)
    ]
    return ", ".join(found) if found else fallback
