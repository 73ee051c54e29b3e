"""Ended page sessions: a sign-out holds across a cache flush or a Redis restart

Revision ID: 7d3e4f5a6b72
Revises: 6c2d3e4f5a61
Create Date: 2026-12-03 16:00:00.000000

"""
from alembic import op
import sqlalchemy as sa

import hms.core.types


# revision identifiers, used by Alembic.
revision = '7d3e4f5a6b72'
down_revision = '6c2d3e4f5a61'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'ended_sessions',
        sa.Column('session_id', sa.String(length=64), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('expires_at', hms.core.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('session_id'),
    )
    with op.batch_alter_table('ended_sessions', schema=None) as batch_op:
        batch_op.create_index('ix_ended_sessions_expires_at', ['expires_at'], unique=False)


def downgrade():
    with op.batch_alter_table('ended_sessions', schema=None) as batch_op:
        batch_op.drop_index('ix_ended_sessions_expires_at')
    op.drop_table('ended_sessions')
