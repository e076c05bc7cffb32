"""callback requests from the branch queue; outbound callback rows in the call log

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-08 02:45:00
"""
import sqlalchemy as sa
from alembic import op

from ivr.models import UTCDateTime

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

# The values as they are at this revision (a migration never follows later vocabulary changes).
BEFORE = ('in_progress', 'answered', 'no_answer', 'busy', 'abandoned', 'invalid_input', 'closed', 'complaint',
          'rejected', 'failed', 'interrupted', 'case_lookup', 'controller_unavailable')
CALLBACKS = ('callback_answered', 'callback_no_answer', 'callback_failed')
STATUSES = ('pending', 'serving', 'done', 'failed', 'expired')


def _check(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def upgrade() -> None:
    op.create_table(
        'callback_requests',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('call_id', sa.String(length=64), nullable=False),
        sa.Column('number', sa.String(length=32), nullable=False),
        sa.Column('branch_digit', sa.String(length=1), nullable=False),
        sa.Column('queued_at', UTCDateTime(), nullable=False),
        sa.Column('requested_at', UTCDateTime(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('due_at', UTCDateTime(), nullable=False),
        sa.Column('claimed_by', sa.String(length=64), nullable=True),
        sa.Column('claimed_at', UTCDateTime(), nullable=True),
        sa.Column('finished_at', UTCDateTime(), nullable=True),
        sa.CheckConstraint(_check('status', STATUSES), name=op.f('ck_callback_requests_status')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_callback_requests')),
        sa.UniqueConstraint('call_id', name=op.f('uq_callback_requests_call_id')),
    )
    op.create_index('ix_callback_requests_status_queued', 'callback_requests', ['status', 'queued_at'])
    # Autogenerate sees no CHECK constraint change: written by hand.
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.add_column(sa.Column('callback_of', sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_calls_callback_of'), ['callback_of'], unique=False)
        batch_op.drop_constraint(op.f('ck_calls_disposition'), type_='check')
        batch_op.create_check_constraint(op.f('ck_calls_disposition'), _check('disposition', BEFORE + CALLBACKS))


def downgrade() -> None:
    # Refuse rather than rewrite history: a callback row has no honest older disposition.
    n = op.get_bind().execute(sa.text(
        "SELECT count(*) FROM calls WHERE disposition IN ('callback_answered', 'callback_no_answer', 'callback_failed')"
    )).scalar()
    if n:
        raise RuntimeError(f"{n} calls are callbacks, which revision 0011 does not allow; "
                           "export and delete them before downgrading")
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_calls_disposition'), type_='check')
        batch_op.create_check_constraint(op.f('ck_calls_disposition'), _check('disposition', BEFORE))
        batch_op.drop_index(batch_op.f('ix_calls_callback_of'))
        batch_op.drop_column('callback_of')
    op.drop_index('ix_callback_requests_status_queued', table_name='callback_requests')
    op.drop_table('callback_requests')
