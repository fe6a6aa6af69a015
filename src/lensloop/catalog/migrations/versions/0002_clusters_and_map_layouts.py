"""clusters and map layouts

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 07:58:08.596988
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "cluster_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("embedding_set_id", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(length=32), nullable=False),
        sa.Column(
            "params",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("n_clusters", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["embedding_set_id"],
            ["embedding_sets.id"],
            name=op.f("fk_cluster_runs_embedding_set_id_embedding_sets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cluster_runs")),
    )
    with op.batch_alter_table("cluster_runs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_cluster_runs_embedding_set_id"), ["embedding_set_id"], unique=False
        )

    op.create_table(
        "map_layouts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("embedding_set_id", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(length=32), nullable=False),
        sa.Column(
            "params",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("png_path", sa.String(length=4096), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["embedding_set_id"],
            ["embedding_sets.id"],
            name=op.f("fk_map_layouts_embedding_set_id_embedding_sets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_map_layouts")),
    )
    with op.batch_alter_table("map_layouts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_map_layouts_embedding_set_id"), ["embedding_set_id"], unique=False
        )

    op.create_table(
        "cluster_members",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("cluster", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"],
            ["images.id"],
            name=op.f("fk_cluster_members_image_id_images"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["cluster_runs.id"],
            name=op.f("fk_cluster_members_run_id_cluster_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "image_id", name=op.f("pk_cluster_members")),
    )
    with op.batch_alter_table("cluster_members", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cluster_members_image_id"), ["image_id"], unique=False)

    op.create_table(
        "map_points",
        sa.Column("layout_id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("x", sa.Float(), nullable=False),
        sa.Column("y", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"],
            ["images.id"],
            name=op.f("fk_map_points_image_id_images"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["layout_id"],
            ["map_layouts.id"],
            name=op.f("fk_map_points_layout_id_map_layouts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("layout_id", "image_id", name=op.f("pk_map_points")),
    )
    with op.batch_alter_table("map_points", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_map_points_image_id"), ["image_id"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("map_points", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_map_points_image_id"))

    op.drop_table("map_points")
    with op.batch_alter_table("cluster_members", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cluster_members_image_id"))

    op.drop_table("cluster_members")
    with op.batch_alter_table("map_layouts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_map_layouts_embedding_set_id"))

    op.drop_table("map_layouts")
    with op.batch_alter_table("cluster_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cluster_runs_embedding_set_id"))

    op.drop_table("cluster_runs")
