"""API keys: kept only as SHA-256 digests, compared in constant time; or a dashboard session cookie."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.api.session import COOKIE, CSRF_HEADER, SAFE_METHODS, Sessions
from service.core.errors import Forbidden, Unauthorized
from service.core.settings import Settings

_bearer = HTTPBearer(auto_error=False, description="an API key from RUNYARD_API_KEYS")


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
        plain = settings.api_keys.get_secret_value() if settings.api_keys else ""
        digests = {digest(k.strip()) for k in plain.split(",") if k.strip()}
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
