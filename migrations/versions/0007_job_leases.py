"""jobs: the replica that owns a job's submit and polling, and until when

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 07:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import service.db.tables

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True))
        batch_op.add_column(sa.Column("lease_expires_at", service.db.tables.UTCDateTime(), nullable=True))
        batch_op.create_index(batch_op.f("ix_job_owner"), ["owner"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_job_owner"))
        batch_op.drop_column("lease_expires_at")
        batch_op.drop_column("owner")
