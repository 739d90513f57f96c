"""Which replica stores a pending model version: a lease (registrar, expiry) on the reserved row.

A registration reserves its version, asks the backend to store the model, then records where it
went. Between the first and the last step the row is `pending`; a once-per registration (a sweep's
best model) that finds such a row finishes it instead of reserving another. Without an owner, a
second replica finding the row while the first is still talking to Azure would ask Azure again and
register the model twice. So the reserving replica holds the row for `lease_seconds`, renews it while
its backend call lasts, and another replica takes it over only once that lapses (its holder died).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import col

from service.core.clock import utcnow
from service.core.errors import Conflict
from service.db.tables import ModelVersion
from service.runtime import Runtime

log = logging.getLogger(__name__)


class RegistrationBusy(Conflict):
    """Another replica is storing this version right now; ask again after its lease."""

    title = "Registration in progress"


def hold(model: ModelVersion, owner: str, *, now: datetime, seconds: float) -> None:
    """Make `owner` the registrar of a pending row read under the model name's turn (raises when busy)."""
    other = model.registrar not in (None, owner)
    if other and model.registrar_expires_at is not None and model.registrar_expires_at > now:
        raise RegistrationBusy(
            f"model {model.name!r} version {model.version} is being registered by replica {model.registrar} "
            f"(until {model.registrar_expires_at.isoformat()})",
            registrar=model.registrar,
        )
    model.registrar, model.registrar_expires_at = owner, now + timedelta(seconds=seconds)


@contextmanager
def renewing(runtime: Runtime, model_id: int | None) -> Iterator[None]:
    """Keep this replica's hold on the pending row while the body (the backend call) runs.

    A slow Azure call must not let the lease lapse: another replica would then call Azure too.
    Renewed from a thread at a third of the lease, each renewal one short write transaction.
    """
    settings = runtime.settings
    me, seconds = settings.effective_replica_id, settings.lease_seconds
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(seconds / 3):
            try:
                with runtime.uow() as tx:
                    tx.session.execute(
                        update(ModelVersion)
                        .where(col(ModelVersion.id) == model_id, col(ModelVersion.registrar) == me,
                               col(ModelVersion.pending).is_(True))
                        .values(registrar_expires_at=utcnow() + timedelta(seconds=seconds))
                    )
            except Exception:  # a database blip: the next renewal (well inside the lease) tries again
                log.warning("renewing the registration of model version row %s failed", model_id, exc_info=True)

    worker = threading.Thread(target=renew, name=f"registrar-{model_id}", daemon=True)
    worker.start()
    try:
        yield
    finally:
        stop.set()
        worker.join()
