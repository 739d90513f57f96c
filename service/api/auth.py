"""API keys: kept only as SHA-256 digests, compared in constant time; or a dashboard session cookie."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.problems import problem
from service.api.session import COOKIE, CSRF_HEADER, SAFE_METHODS, Sessions
from service.core.errors import Forbidden, Unauthorized
from service.core.settings import Settings

_bearer = HTTPBearer(auto_error=False, description="an API key from RUNYARD_API_KEYS")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def digest(key: str) -> str:
    """The SHA-256 hex digest a key is stored as."""
    return hashlib.sha256(key.encode()).hexdigest()


def _id_of(key_digest: str) -> str:
    # What a session cookie names its key by: not the digest itself, which is the stored credential.
    return hashlib.sha256(f"session-key-id:{key_digest}".encode()).hexdigest()[:16]


class ApiKeys:
    """The accepted keys, by digest only: the plain keys are not kept after start-up."""

    def __init__(self, digests: frozenset[str]) -> None:
        self._digests = digests

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiKeys:
        digests = {digest(k) for k in settings.plain_api_keys()}
        digests |= {d.strip().lower() for d in settings.api_key_hashes}
        return cls(frozenset(digests))

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def accepts(self, presented: str) -> bool:
        """True when `presented` is one of the keys; every digest is compared, equal or not."""
        candidate = digest(presented)
        matched = False
        for known in self._digests:
            matched |= hmac.compare_digest(candidate, known)
        return matched

    def key_id(self, presented: str) -> str | None:
        """The id a session opened with `presented` carries; None when the key is not accepted."""
        return _id_of(digest(presented)) if self.accepts(presented) else None

    def has_key_id(self, key_id: str) -> bool:
        """True while the key a session was opened with is still configured."""
        return any(hmac.compare_digest(_id_of(known), key_id) for known in self._digests)


def session_of(request: Request) -> str | None:
    """The request's dashboard session cookie when it is valid and its key still configured."""
    keys: ApiKeys = request.app.state.api_keys
    sessions: Sessions = request.app.state.sessions
    token = request.cookies.get(COOKIE)
    key_id = sessions.key_id(token)
    return token if key_id is not None and keys.has_key_id(key_id) else None


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def require_api_key(  # async: a hash and a compare need no worker thread
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """Every /v1 route depends on this; it does nothing while no keys are configured."""
    keys: ApiKeys = request.app.state.api_keys
    if not keys.enabled:
        return
    if credentials is None:
        token = session_of(request)
        if token is None:
            raise Unauthorized("this route needs an API key: send Authorization: Bearer <key>")
        sessions: Sessions = request.app.state.sessions
        if request.method not in SAFE_METHODS and not sessions.csrf_ok(token, request.headers.get(CSRF_HEADER)):
            raise Forbidden(f"a request made with the dashboard's session must carry the {CSRF_HEADER} header")
        return
    if credentials.scheme.lower() != "bearer":
        raise Unauthorized("this route needs an API key: send Authorization: Bearer <key>")
    if not keys.accepts(credentials.credentials):
        raise Unauthorized("the API key is not valid")


async def is_trusted(request: Request, credentials: Credentials) -> bool:
    """True for a caller with a valid key (or dashboard session), or for anyone while no keys are configured."""
    keys: ApiKeys = request.app.state.api_keys
    if not keys.enabled:
        return True
    if credentials is None:
        return session_of(request) is not None
    return credentials.scheme.lower() == "bearer" and keys.accepts(credentials.credentials)


TrustedCaller = Annotated[bool, Depends(is_trusted)]


class LoopbackOnly:
    """ASGI middleware for a server without keys: it answers connections to a loopback address only.

    The settings' host is checked at start-up, but an ASGI server may bind elsewhere
    (`uvicorn --factory service.app:create_app --host 0.0.0.0`): the address each connection
    actually reached (the socket's, in the scope's `server`) is what this checks.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and not _reached_loopback(scope):
            response = problem(
                403, "Forbidden", "this server has no API keys, so it answers loopback connections only: "
                "set RUNYARD_API_KEYS to serve other addresses", Request(scope, receive),
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _reached_loopback(scope: Scope) -> bool:
    server = scope.get("server")
    if not server:
        return True  # a Unix socket: only this machine reaches it
    host = str(server[0])
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        # Servers on sockets report an IP; a name ("testserver") comes from an in-process client.
        return True
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 on a dual-stack socket
    return (mapped or address).is_loopback
