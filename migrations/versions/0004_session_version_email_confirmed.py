"""Users get a session version (sessions signed with an older one are refused, so sign-out, a password change or
reset and deactivation end copied cookies too) and a confirmed-email flag (registration finishes from a mailed
link, so the registration form cannot be used to find out who has an account).

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users') as batch:
        batch.add_column(sa.Column('session_version', sa.Integer(), nullable=False, server_default='0'))
        # Accounts that exist already were made by the CLI or by the earlier registration: they count as confirmed.
        batch.add_column(sa.Column('email_confirmed', sa.Boolean(), nullable=False, server_default=sa.true()))


def downgrade() -> None:
    with op.batch_alter_table('users') as batch:
        batch.drop_column('email_confirmed')
        batch.drop_column('session_version')
