"""Time: time courses of uploaded maps, a collection's timing, annotation sets of movies and temporal decodings.

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'time_courses',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('collection_id', sa.Integer(), sa.ForeignKey('collections.id', ondelete='CASCADE'), nullable=False),
        sa.Column('upload_id', sa.Integer(), sa.ForeignKey('uploads.id', ondelete='SET NULL'), nullable=True),
        sa.Column('source_file', sa.String(512), nullable=False),
        sa.Column('mix_file', sa.String(512), nullable=False),
        sa.Column('storage_key', sa.String(512), nullable=False),
        sa.Column('spectra_key', sa.String(512), nullable=True),
        sa.Column('rows', sa.Integer(), nullable=False),
        sa.Column('columns', sa.Integer(), nullable=False),
        sa.Column('created', sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index('ix_time_courses_collection_id', 'time_courses', ['collection_id'])
    with op.batch_alter_table('components') as batch:
        batch.add_column(sa.Column('timecourse_id', sa.Integer(), nullable=True))
        batch.create_foreign_key('fk_components_timecourse_id', 'time_courses', ['timecourse_id'], ['id'],
                                 ondelete='SET NULL')
        batch.create_index('ix_components_timecourse_id', ['timecourse_id'])
    with op.batch_alter_table('collections') as batch:
        batch.add_column(sa.Column('timing', sa.JSON(), nullable=True))
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('movie_id', sa.Integer(), nullable=True))
        batch.create_foreign_key('fk_jobs_movie_id', 'movies', ['movie_id'], ['id'], ondelete='CASCADE')
    op.create_table(
        'annotation_sets',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('movie_id', sa.Integer(), sa.ForeignKey('movies.id', ondelete='CASCADE'), nullable=False),
        sa.Column('owner_id', sa.Integer(), sa.ForeignKey('users.id', ondelete='SET NULL'), nullable=True),
        sa.Column('name', sa.String(255), nullable=False),
        sa.Column('description', sa.Text(), nullable=False, server_default=''),
        sa.Column('source_url', sa.String(1000), nullable=False, server_default=''),
        sa.Column('is_demo', sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column('created', sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint('movie_id', 'name'),
    )
    op.create_index('ix_annotation_sets_movie_id', 'annotation_sets', ['movie_id'])
    op.create_table(
        'annotation_events',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('set_id', sa.Integer(), sa.ForeignKey('annotation_sets.id', ondelete='CASCADE'), nullable=False),
        sa.Column('onset', sa.Float(), nullable=False),
        sa.Column('duration', sa.Float(), nullable=False),
        sa.Column('label', sa.String(200), nullable=False),
        sa.Column('amplitude', sa.Float(), nullable=False),
    )
    op.create_index('ix_annotation_events_set_id', 'annotation_events', ['set_id'])
    op.create_index('ix_annotation_events_label', 'annotation_events', ['label'])
    op.create_table(
        'temporal_decodings',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('component_id', sa.Integer(), sa.ForeignKey('components.id', ondelete='CASCADE'), nullable=False),
        sa.Column('set_id', sa.Integer(), sa.ForeignKey('annotation_sets.id', ondelete='CASCADE'), nullable=False),
        sa.Column('label', sa.String(200), nullable=False),
        sa.Column('r', sa.Float(), nullable=False),
        sa.Column('p', sa.Float(), nullable=False),
        sa.Column('q', sa.Float(), nullable=False),
        sa.Column('rank', sa.Integer(), nullable=False),
    )
    op.create_index('ix_temporal_decodings_component_id', 'temporal_decodings', ['component_id'])
    op.create_index('ix_temporal_decodings_set_id', 'temporal_decodings', ['set_id'])
    op.create_index('ix_temporal_decodings_label', 'temporal_decodings', ['label'])


def downgrade() -> None:
    op.drop_table('temporal_decodings')
    op.drop_table('annotation_events')
    op.drop_table('annotation_sets')
    with op.batch_alter_table('jobs') as batch:
        batch.drop_constraint('fk_jobs_movie_id', type_='foreignkey')
        batch.drop_column('movie_id')
    with op.batch_alter_table('collections') as batch:
        batch.drop_column('timing')
    with op.batch_alter_table('components') as batch:
        batch.drop_index('ix_components_timecourse_id')
        batch.drop_constraint('fk_components_timecourse_id', type_='foreignkey')
        batch.drop_column('timecourse_id')
    op.drop_table('time_courses')
