"""`runyard gc [--dry-run]`: apply the retention settings now, on the machine that holds the data."""

from __future__ import annotations

from typing import Annotated

import typer

from service.cli.common import EXIT_USAGE, fail, out


def register(app: typer.Typer) -> None:
    """Add `gc` to `app`."""
    app.command()(gc)


def gc(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be deleted.")] = False,
    days: Annotated[float | None, typer.Option(help="Older than this [RUNYARD_RETENTION_DAYS].")] = None,
) -> None:
    """Delete run folders (or logs, RUNYARD_RETENTION_SCOPE) of jobs ended long ago; reads the service's
    RUNYARD_* settings and database directly, like `runyard serve`."""
    from service.core.clock import utcnow
    from service.core.settings import Settings
    from service.db.engine import Database
    from service.jobs import retention

    settings = Settings()
    if days is None and settings.retention_days is None:
        fail("set RUNYARD_RETENTION_DAYS or pass --days", EXIT_USAGE)
    db = Database(settings.effective_database_url, busy_timeout_ms=settings.sqlite_busy_timeout_ms)
    try:
        with db.session() as session:
            removals = retention.plan(session, settings=settings, now=utcnow(), days=days)
    finally:
        db.dispose()
    for removal in removals:
        verb = "would delete" if dry_run else "deleting"
        out.print(f"{verb} {removal.path} ({removal.bytes} bytes, job {removal.job_id})", soft_wrap=True)
    total = sum(r.bytes for r in removals)
    if dry_run:
        out.print(f"{len(removals)} folders, {total} bytes would be freed")
        return
    out.print(f"{retention.apply(removals)} bytes freed")
