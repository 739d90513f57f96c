"""Browser sessions for the dashboard: a signed cookie instead of a key, and a CSRF token per session.

The API key is typed once into /ui/login and never stored in the browser: the cookie holds an
expiry and the id of the key that opened it (a digest of its digest), signed with a secret that
lives only in this process. A restart therefore signs everyone out; removing a key from the
settings ends its sessions. State-changing requests made with the cookie must also carry
`X-CSRF-Token`, a second HMAC of the cookie that pages embed and other sites cannot read.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from starlette.requests import Request
from starlette.responses import Response

COOKIE = "runyard_session"
CSRF_HEADER = "X-CSRF-Token"
LIFETIME_SECONDS = 12 * 3600
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Sessions:
    """Issues and checks session cookies and their CSRF tokens."""

    def __init__(self, secret: bytes | None = None, *, lifetime: float = LIFETIME_SECONDS) -> None:
        self._secret = secret or secrets.token_bytes(32)
        self._lifetime = lifetime

    def _sign(self, purpose: str, payload: str) -> str:
        return hmac.new(self._secret, f"{purpose}:{payload}".encode(), hashlib.sha256).hexdigest()

    def issue(self, key_id: str, *, now: float | None = None) -> str:
        """A cookie value for a browser that just presented the key `key_id` names."""
        expires = int((now or time.time()) + self._lifetime)
        payload = f"{expires}.{key_id}.{secrets.token_hex(8)}"
        return f"{payload}.{self._sign('session', payload)}"

    def key_id(self, token: str | None, *, now: float | None = None) -> str | None:
        """The key id of a valid, unexpired cookie; None for anything else."""
        if not token or token.count(".") != 3:
            return None
        payload, _, signature = token.rpartition(".")
        if not hmac.compare_digest(signature, self._sign("session", payload)):
            return None
        expires, key_id, _ = payload.split(".")
        if not expires.isdigit() or int(expires) < (now or time.time()):
            return None
        return key_id

    def csrf_token(self, token: str) -> str:
        """The CSRF token that goes with the session cookie `token`."""
        return self._sign("csrf", token)

    def csrf_ok(self, token: str, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented, self.csrf_token(token))


def set_cookie(response: Response, request: Request, value: str) -> None:
    """HttpOnly (no script reads it), SameSite=Strict (no other site sends it), Secure over HTTPS."""
    response.set_cookie(COOKIE, value, max_age=LIFETIME_SECONDS, path="/", httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")


def clear_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
