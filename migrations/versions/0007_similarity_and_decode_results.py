"""Similar components (a reduced vector per component in a fitted basis) and visitors' decoded maps.

Revision ID: 0007
Revises: 0006 (the lead re-chains it after 0006)
"""
import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'similarity_bases',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('storage_key', sa.String(512), nullable=False),
        sa.Column('dims', sa.Integer(), nullable=False),
        sa.Column('fitted_on', sa.Integer(), nullable=False),
        sa.Column('active', sa.Boolean(), nullable=False),
        sa.Column('created', sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        'component_vectors',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('basis_id', sa.Integer(), sa.ForeignKey('similarity_bases.id', ondelete='CASCADE'),
                  nullable=False),
        sa.Column('component_id', sa.Integer(), sa.ForeignKey('components.id', ondelete='CASCADE'), nullable=False),
        sa.Column('collection_id', sa.Integer(), sa.ForeignKey('collections.id', ondelete='CASCADE'),
                  nullable=False),
        sa.Column('vector', sa.LargeBinary(), nullable=False),
        sa.Column('captured', sa.Float(), nullable=False),
        sa.UniqueConstraint('basis_id', 'component_id'),
    )
    op.create_index('ix_component_vectors_basis_id', 'component_vectors', ['basis_id'])
    op.create_index('ix_component_vectors_component_id', 'component_vectors', ['component_id'])
    op.create_index('ix_component_vectors_collection_id', 'component_vectors', ['collection_id'])
    op.create_table(
        'decode_results',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('token', sa.String(64), nullable=False, unique=True),
        sa.Column('owner_id', sa.Integer(), sa.ForeignKey('users.id', ondelete='CASCADE'), nullable=True),
        sa.Column('client_hash', sa.String(64), nullable=False),
        sa.Column('reference_set_id', sa.Integer(), sa.ForeignKey('reference_sets.id', ondelete='SET NULL'),
                  nullable=True),
        sa.Column('reference_name', sa.String(255), nullable=False),
        sa.Column('mask', sa.String(16), nullable=False),
        sa.Column('filename', sa.String(255), nullable=False),
        sa.Column('size', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('volumes', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(16), nullable=False),
        sa.Column('error', sa.Text(), nullable=False),
        sa.Column('warnings', sa.JSON(), nullable=False),
        sa.Column('progress_done', sa.Integer(), nullable=False),
        sa.Column('storage_prefix', sa.String(512), nullable=False),
        sa.Column('job_id', sa.Integer(), sa.ForeignKey('jobs.id', ondelete='SET NULL'), nullable=True),
        sa.Column('created', sa.DateTime(timezone=True), nullable=False),
        sa.Column('finished', sa.DateTime(timezone=True), nullable=True),
        sa.Column('expires', sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index('ix_decode_results_owner_id', 'decode_results', ['owner_id'])
    op.create_index('ix_decode_results_client_hash', 'decode_results', ['client_hash'])
    op.create_index('ix_decode_results_status', 'decode_results', ['status'])
    op.create_index('ix_decode_results_created', 'decode_results', ['created'])
    op.create_index('ix_decode_results_expires', 'decode_results', ['expires'])


def downgrade() -> None:
    op.drop_table('decode_results')
    op.drop_table('component_vectors')
    op.drop_table('similarity_bases')
