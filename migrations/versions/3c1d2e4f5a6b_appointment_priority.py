"""appointment priority (triage): URGENT waits ahead of NORMAL

Revision ID: 3c1d2e4f5a6b
Revises: 00f3094db910
Create Date: 2026-12-03 13:45:00

"""
from alembic import op
import sqlalchemy as sa


revision = '3c1d2e4f5a6b'
down_revision = '00f3094db910'
branch_labels = None
depends_on = None


def upgrade():
    # Every existing appointment was booked before triage existed: NORMAL.
    with op.batch_alter_table('appointments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('priority', sa.String(length=8), server_default='NORMAL', nullable=False))


def downgrade():
    with op.batch_alter_table('appointments', schema=None) as batch_op:
        batch_op.drop_column('priority')
