"""label studio tasks and sync states

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 10:12:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "labelstudio_tasks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("server", sa.String(length=1024), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("model_version", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"],
            ["images.id"],
            name=op.f("fk_labelstudio_tasks_image_id_images"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_labelstudio_tasks")),
        sa.UniqueConstraint("server", "project_id", "task_id", name="uq_labelstudio_tasks_task"),
    )
    with op.batch_alter_table("labelstudio_tasks", schema=None) as batch_op:
        batch_op.create_index(
            "ix_labelstudio_tasks_image", ["server", "project_id", "image_id"], unique=False
        )
    op.create_table(
        "sync_states",
        sa.Column("key", sa.String(length=1024), nullable=False),
        sa.Column(
            "value",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_sync_states")),
    )


def downgrade() -> None:
    op.drop_table("sync_states")
    with op.batch_alter_table("labelstudio_tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_labelstudio_tasks_image")
    op.drop_table("labelstudio_tasks")
