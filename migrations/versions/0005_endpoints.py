"""endpoints, and a model version's evaluation

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 06:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import service.db.tables

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "endpoint",
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("model_name", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.Column("compute", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("replicas", sa.Integer(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("error", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("created_at", service.db.tables.UTCDateTime(), nullable=False),
        sa.Column("updated_at", service.db.tables.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    with op.batch_alter_table("endpoint", schema=None) as batch_op:
        batch_op.create_index("ix_endpoint_status_name", ["status", "name"], unique=False)
    with op.batch_alter_table("modelversion", schema=None) as batch_op:
        batch_op.add_column(sa.Column("evaluation", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("modelversion", schema=None) as batch_op:
        batch_op.drop_column("evaluation")
    with op.batch_alter_table("endpoint", schema=None) as batch_op:
        batch_op.drop_index("ix_endpoint_status_name")
    op.drop_table("endpoint")
