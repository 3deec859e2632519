"""Synchrony: inter-subject correlation of components, ISFC and windowed ISC of collections, moments of synchrony
and ISC by annotation label.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "component_isc",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("component_id", sa.Integer(), sa.ForeignKey("components.id", ondelete="CASCADE"), nullable=False),
        sa.Column("collection_id", sa.Integer(), sa.ForeignKey("collections.id", ondelete="CASCADE"), nullable=False),
        sa.Column("isc", sa.Float(), nullable=True),
        sa.Column("isc_pairwise", sa.Float(), nullable=True),
        sa.Column("p", sa.Float(), nullable=True),
        sa.Column("q", sa.Float(), nullable=True),
        sa.Column("n_subjects", sa.Integer(), nullable=False),
        sa.Column("n_resamples", sa.Integer(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("subjects", sa.JSON(), nullable=False),
        sa.Column("column", sa.Integer(), nullable=True),
        sa.UniqueConstraint("component_id"),
    )
    op.create_index("ix_component_isc_collection_isc", "component_isc", ["collection_id", "isc"])
    op.create_table(
        "collection_synchrony",
        sa.Column("collection_id", sa.Integer(), sa.ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("n_subjects", sa.Integer(), nullable=False),
        sa.Column("n_resamples", sa.Integer(), nullable=False),
        sa.Column("window_s", sa.Float(), nullable=True),
        sa.Column("components", sa.JSON(), nullable=False),
        sa.Column("isfc_key", sa.String(512), nullable=True),
        sa.Column("windowed_key", sa.String(512), nullable=True),
        sa.Column("median_isc", sa.Float(), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("computed", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "synchrony_moments",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("collection_id", sa.Integer(), sa.ForeignKey("collections.id", ondelete="CASCADE"), nullable=False),
        sa.Column("movie_id", sa.Integer(), sa.ForeignKey("movies.id", ondelete="CASCADE"), nullable=False),
        sa.Column("time_s", sa.Float(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
    )
    op.create_index("ix_synchrony_moments_collection_id", "synchrony_moments", ["collection_id"])
    op.create_index("ix_synchrony_moments_movie_id", "synchrony_moments", ["movie_id"])
    op.create_table(
        "synchrony_labels",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("component_id", sa.Integer(), sa.ForeignKey("components.id", ondelete="CASCADE"), nullable=False),
        sa.Column("collection_id", sa.Integer(), sa.ForeignKey("collections.id", ondelete="CASCADE"), nullable=False),
        sa.Column("set_id", sa.Integer(), sa.ForeignKey("annotation_sets.id", ondelete="CASCADE"), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("inside", sa.Float(), nullable=False),
        sa.Column("outside", sa.Float(), nullable=False),
        sa.Column("p", sa.Float(), nullable=False),
    )
    op.create_index("ix_synchrony_labels_component_id", "synchrony_labels", ["component_id"])
    op.create_index("ix_synchrony_labels_collection_id", "synchrony_labels", ["collection_id"])
    op.create_index("ix_synchrony_labels_set_label", "synchrony_labels", ["set_id", "label"])


def downgrade() -> None:
    op.drop_table("synchrony_labels")
    op.drop_table("synchrony_moments")
    op.drop_table("collection_synchrony")
    op.drop_table("component_isc")
