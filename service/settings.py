"""Service configuration; the only module that reads the environment."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[1]


class Settings(BaseSettings):
    """Every knob of the service, from `RUNYARD_*` environment variables."""

    model_config = SettingsConfigDict(env_prefix="RUNYARD_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    data_dir: Path = Path(".runyard")
    database_url: str | None = None
    local_max_concurrent: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    poll_interval_seconds: float = Field(default=2.0, gt=0)
    cancel_grace_seconds: float = Field(default=10.0, ge=0)
    sqlite_busy_timeout_ms: int = Field(default=30_000, ge=0)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_log_read_bytes: int = Field(default=1_048_576, ge=1024)
    api_keys: SecretStr | None = None
    # Extra server-side script folders a job may name as its `source`.
    sources: dict[str, Path] = Field(default_factory=dict)
    # Folders a dataset registered by path may live in (besides data_dir).
    dataset_roots: list[Path] = Field(default_factory=lambda: [Path("/usr/share/datasets")])
    log_level: str = "INFO"

    @field_validator("data_dir")
    @classmethod
    def _absolute_data_dir(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def effective_database_url(self) -> str:
        """The configured database URL, or the SQLite file in the data dir."""
        return self.database_url or f"sqlite:///{self.data_dir / 'runyard.db'}"

    @property
    def runs_dir(self) -> Path:
        return self.data_dir / "runs"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def datasets_dir(self) -> Path:
        return self.data_dir / "datasets"

    def source_folders(self) -> dict[str, Path]:
        """Named script folders; `trainer` (this repo's trainer/) is built in."""
        return {"trainer": REPO_ROOT / "trainer", **self.sources}


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings; tests build their own `Settings` instead."""
    return Settings()
