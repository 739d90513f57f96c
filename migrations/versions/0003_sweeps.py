"""sweeps

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 06:11:53.342794
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import service.db.tables

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sweep",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("experiment", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("best_job_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("best_metric", sa.Float(), nullable=True),
        sa.Column("terminated", sa.JSON(), nullable=False),
        sa.Column("model_name", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column("model_version", sa.Integer(), nullable=True),
        sa.Column("error", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("idempotency_key", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column("request_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("created_at", service.db.tables.UTCDateTime(), nullable=False),
        sa.Column("updated_at", service.db.tables.UTCDateTime(), nullable=False),
        sa.Column("ended_at", service.db.tables.UTCDateTime(), nullable=True),
        sa.Column("cancel_requested_at", service.db.tables.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["experiment"], ["experiment.name"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key"),
    )
    with op.batch_alter_table("sweep", schema=None) as batch_op:
        batch_op.create_index("ix_sweep_status_id", ["status", "id"], unique=False)

    # All three are nullable: existing jobs are simply not part of a sweep.
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sweep_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True))
        batch_op.add_column(sa.Column("sweep_index", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("sweep_params", sa.JSON(), nullable=True))
        batch_op.create_index(batch_op.f("ix_job_sweep_id"), ["sweep_id"], unique=False)
        # Named so that downgrade can drop it (SQLite reflects foreign keys without names).
        batch_op.create_foreign_key("fk_job_sweep_id_sweep", "sweep", ["sweep_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.drop_constraint("fk_job_sweep_id_sweep", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_job_sweep_id"))
        batch_op.drop_column("sweep_params")
        batch_op.drop_column("sweep_index")
        batch_op.drop_column("sweep_id")

    with op.batch_alter_table("sweep", schema=None) as batch_op:
        batch_op.drop_index("ix_sweep_status_id")

    op.drop_table("sweep")
