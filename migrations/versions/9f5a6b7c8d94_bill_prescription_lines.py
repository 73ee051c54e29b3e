"""Bill items may name the prescription line they bill: each line billed at most once

Revision ID: 9f5a6b7c8d94
Revises: 8e4f5a6b7c83
Create Date: 2026-12-03 19:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '9f5a6b7c8d94'
down_revision = '8e4f5a6b7c83'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('bill_items', schema=None) as batch_op:
        batch_op.add_column(sa.Column('prescription_item_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            'fk_bill_items_prescription_item_id', 'prescription_items', ['prescription_item_id'], ['id']
        )
        batch_op.create_unique_constraint('uq_bill_items_prescription_item_id', ['prescription_item_id'])


def downgrade():
    with op.batch_alter_table('bill_items', schema=None) as batch_op:
        batch_op.drop_constraint('uq_bill_items_prescription_item_id', type_='unique')
        batch_op.drop_constraint('fk_bill_items_prescription_item_id', type_='foreignkey')
        batch_op.drop_column('prescription_item_id')
