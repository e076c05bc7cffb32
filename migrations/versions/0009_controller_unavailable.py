"""disposition controller_unavailable: calls logged from Asterisk's own record

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08 00:40:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

# The values as they are at this revision (a migration never follows later vocabulary changes).
BEFORE = ('in_progress', 'answered', 'no_answer', 'busy', 'abandoned', 'invalid_input', 'closed', 'complaint',
          'rejected', 'failed', 'interrupted', 'case_lookup')
AFTER = BEFORE + ('controller_unavailable',)


def _check(values: tuple[str, ...]) -> str:
    return "disposition IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def upgrade() -> None:
    # "controller_unavailable" does not fit in 16 characters: the column widens to 32.
    # Autogenerate sees neither the CHECK constraint nor this change: written by hand.
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_calls_disposition'), type_='check')
        batch_op.alter_column('disposition', existing_type=sa.String(length=16), type_=sa.String(length=32),
                              existing_nullable=False)
        batch_op.create_check_constraint(op.f('ck_calls_disposition'), _check(AFTER))


def downgrade() -> None:
    # Rows of the new disposition cannot stay: they become "failed" (the nearest older value).
    op.execute("UPDATE calls SET disposition = 'failed' WHERE disposition = 'controller_unavailable'")
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_calls_disposition'), type_='check')
        batch_op.alter_column('disposition', existing_type=sa.String(length=32), type_=sa.String(length=16),
                              existing_nullable=False)
        batch_op.create_check_constraint(op.f('ck_calls_disposition'), _check(BEFORE))
