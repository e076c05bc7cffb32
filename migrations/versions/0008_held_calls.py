"""calls held by the dialplan while the controller was away

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08 00:20:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # One nullable column: existing rows were never held.
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.add_column(sa.Column('held_s', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_column('held_s')
