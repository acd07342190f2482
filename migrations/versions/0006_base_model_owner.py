"""base models: the user who registered them (None: registered by the operator, or before owners existed)

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("base_models") as batch:
        batch.add_column(sa.Column("owner_id", sa.Integer(), nullable=True))
        batch.create_index(op.f("ix_base_models_owner_id"), ["owner_id"], unique=False)
        batch.create_foreign_key(op.f("fk_base_models_owner_id_users"), "users", ["owner_id"], ["id"],
                                 ondelete="SET NULL")


def downgrade() -> None:
    with op.batch_alter_table("base_models") as batch:
        batch.drop_constraint(op.f("fk_base_models_owner_id_users"), type_="foreignkey")
        batch.drop_index(op.f("ix_base_models_owner_id"))
        batch.drop_column("owner_id")
