"""API keys: kept only as SHA-256 digests, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.core.errors import Unauthorized
from service.core.settings import Settings

_bearer = HTTPBearer(auto_error=False, description="an API key from RUNYARD_API_KEYS")


def digest(key: str) -> str:
    """The SHA-256 hex digest a key is stored as."""
    return hashlib.sha256(key.encode()).hexdigest()


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
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("this route needs an API key: send Authorization: Bearer <key>")
    if not keys.accepts(credentials.credentials):
        raise Unauthorized("the API key is not valid")
