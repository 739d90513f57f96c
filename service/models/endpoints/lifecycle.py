"""An endpoint's states, and the one function that changes them."""

from __future__ import annotations

from enum import StrEnum

from sqlmodel import Session

from service.core.clock import utcnow
from service.core.errors import IllegalTransition
from service.db.tables import Endpoint


class EndpointStatus(StrEnum):
    CREATING = "creating"
    READY = "ready"
    FAILED = "failed"


_ALLOWED: dict[EndpointStatus, frozenset[EndpointStatus]] = {
    EndpointStatus.CREATING: frozenset({EndpointStatus.READY, EndpointStatus.FAILED}),
    # A ready endpoint is created again after a restart, or fails when its workers cannot be replaced.
    EndpointStatus.READY: frozenset({EndpointStatus.CREATING, EndpointStatus.FAILED}),
    EndpointStatus.FAILED: frozenset(),
}


def set_status(session: Session, endpoint: Endpoint, to: EndpointStatus, *, error: str | None = None) -> None:
    """Move `endpoint` to `to` (the caller commits); a move the lifecycle forbids raises."""
    current = EndpointStatus(endpoint.status)
    if to != current and to not in _ALLOWED[current]:
        raise IllegalTransition(f"a {current.value} endpoint cannot become {to.value}")
    endpoint.status = to.value
    endpoint.error = error if to == EndpointStatus.FAILED else None
    endpoint.updated_at = utcnow()
    session.add(endpoint)
