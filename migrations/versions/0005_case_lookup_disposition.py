"""calls.disposition may be case_lookup (a citizen following a case by phone)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08 09:12:40.118532
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

# The lists as they were at each revision: a migration never reads today's vocabulary.
BEFORE = ('in_progress', 'answered', 'no_answer', 'busy', 'abandoned', 'invalid_input', 'closed', 'complaint',
          'rejected', 'failed', 'interrupted')
AFTER = BEFORE + ('case_lookup',)


def _check(values: tuple[str, ...]) -> str:
    return "disposition IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def _replace(values: tuple[str, ...]) -> None:
    # Autogenerate does not see CHECK changes: written by hand. On SQLite the batch recreates the
    # table (a large call log takes a while); on PostgreSQL it is two ALTER TABLE statements.
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_calls_disposition'), type_='check')
        batch_op.create_check_constraint(op.f('ck_calls_disposition'), _check(values))


def upgrade() -> None:
    _replace(AFTER)


def downgrade() -> None:
    # Refuse rather than rewrite history: a look-up call has no honest older disposition.
    n = op.get_bind().execute(sa.text("SELECT count(*) FROM calls WHERE disposition = 'case_lookup'")).scalar()
    if n:
        raise RuntimeError(f"{n} calls have disposition case_lookup, which revision 0004 does not allow; "
                           "export and delete them (or change their disposition) before downgrading")
    _replace(BEFORE)
