"""leases (one process at a time for hub-wide background work, e.g. the search's re-embedding pass) and
adapters.embedded_at (when the vector was last stored, indexed: other processes' search indexes follow vectors
redone without touching updated_at)

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )
    with op.batch_alter_table("adapters") as batch:
        batch.add_column(sa.Column("embedded_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index(op.f("ix_adapters_embedded_at"), ["embedded_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("adapters") as batch:
        batch.drop_index(op.f("ix_adapters_embedded_at"))
        batch.drop_column("embedded_at")
    op.drop_table("leases")
