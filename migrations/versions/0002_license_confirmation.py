"""Collections record the uploader's confirmation that the data may be shared under the chosen license; upload
sizes become 64-bit (a 2 GiB upload overflows PostgreSQL's integer).

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ALTER TABLE, never a batch "recreate": on SQLite with foreign keys on, dropping the old collections or
    # uploads table would cascade into components, jobs and decodings.
    op.add_column('collections', sa.Column('license_confirmed_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('collections', sa.Column('license_confirmed_by', sa.String(length=254), nullable=False,
                                           server_default=''))
    if op.get_bind().dialect.name != 'sqlite':  # SQLite integers are 64-bit already
        op.alter_column('uploads', 'size', existing_type=sa.Integer(), type_=sa.BigInteger(),
                        existing_nullable=False)


def downgrade() -> None:
    if op.get_bind().dialect.name != 'sqlite':
        op.alter_column('uploads', 'size', existing_type=sa.BigInteger(), type_=sa.Integer(),
                        existing_nullable=False)
    op.drop_column('collections', 'license_confirmed_by')
    op.drop_column('collections', 'license_confirmed_at')
