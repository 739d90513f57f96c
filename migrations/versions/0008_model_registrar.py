"""model_version: the replica storing a pending version, and until when

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 10:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import service.db.tables

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("modelversion", schema=None) as batch_op:
        batch_op.add_column(sa.Column("registrar", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True))
        batch_op.add_column(sa.Column("registrar_expires_at", service.db.tables.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("modelversion", schema=None) as batch_op:
        batch_op.drop_column("registrar_expires_at")
        batch_op.drop_column("registrar")
