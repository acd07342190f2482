"""hf sync: hf_imports (Hub commit -> version) and hf_exports (version -> Hub commit)

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hf_imports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("adapter_id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("repo_id", sa.String(length=200), nullable=False),
        sa.Column("revision", sa.String(length=256), nullable=False),
        sa.Column("sha", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["adapter_id"], ["adapters.id"], name=op.f("fk_hf_imports_adapter_id_adapters"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["version_id"], ["adapter_versions.id"],
                                name=op.f("fk_hf_imports_version_id_adapter_versions"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hf_imports")),
        sa.UniqueConstraint("adapter_id", "repo_id", "sha", name="uq_hf_imports_adapter_id_repo_id_sha"),
    )
    op.create_index("ix_hf_imports_repo_id", "hf_imports", ["repo_id"], unique=False)
    op.create_index(op.f("ix_hf_imports_version_id"), "hf_imports", ["version_id"], unique=False)
    op.create_table(
        "hf_exports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("repo_id", sa.String(length=200), nullable=False),
        sa.Column("commit_sha", sa.String(length=40), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["created_by_id"], ["users.id"], name=op.f("fk_hf_exports_created_by_id_users"),
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["version_id"], ["adapter_versions.id"],
                                name=op.f("fk_hf_exports_version_id_adapter_versions"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hf_exports")),
    )
    op.create_index(op.f("ix_hf_exports_repo_id"), "hf_exports", ["repo_id"], unique=False)
    op.create_index(op.f("ix_hf_exports_version_id"), "hf_exports", ["version_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_hf_exports_version_id"), table_name="hf_exports")
    op.drop_index(op.f("ix_hf_exports_repo_id"), table_name="hf_exports")
    op.drop_table("hf_exports")
    op.drop_index(op.f("ix_hf_imports_version_id"), table_name="hf_imports")
    op.drop_index("ix_hf_imports_repo_id", table_name="hf_imports")
    op.drop_table("hf_imports")
