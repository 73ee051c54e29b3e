"""Idempotency-Key up to 255 characters (API.md), not 200

Revision ID: 5b1c2e7d9a40
Revises: 3c1d2e4f5a6b
Create Date: 2026-12-03 14:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '5b1c2e7d9a40'
down_revision = '3c1d2e4f5a6b'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('idempotency_records', schema=None) as batch_op:
        batch_op.alter_column('key', existing_type=sa.String(length=200), type_=sa.String(length=255),
                              existing_nullable=False)


def downgrade():
    # Keys longer than 200 characters would not fit back: refuse rather than truncate them.
    with op.batch_alter_table('idempotency_records', schema=None) as batch_op:
        batch_op.alter_column('key', existing_type=sa.String(length=255), type_=sa.String(length=200),
                              existing_nullable=False)
