"""Jobs record the process running them, so a message handed back after its worker process died takes the job
over at once, and a second delivery of a job whose runner is alive does not run it twice.

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('jobs', sa.Column('runner', sa.String(255), nullable=True))


def downgrade() -> None:
    op.drop_column('jobs', 'runner')
