"""Brings the database schema to the newest Alembic revision: the only way it is made."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from service.core.settings import REPO_ROOT


def alembic_config(database_url: str) -> Config:
    """Alembic's config for this repo, pointed at `database_url`."""
    config = Config(str(REPO_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(REPO_ROOT / "migrations"))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    config.attributes["configure_logging"] = False
    return config


def upgrade(database_url: str) -> None:
    """Run `alembic upgrade head` against `database_url`."""
    if database_url.startswith("sqlite:///"):
        Path(database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(database_url), "head")
