"""users.role youth: the Youth Union coordinators' console accounts

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08 02:35:00
"""
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

# The values as they are at this revision (a migration never follows later vocabulary changes).
BEFORE = ('officer', 'supervisor', 'inspector', 'operator')
AFTER = BEFORE + ('youth',)


def _check(values: tuple[str, ...]) -> str:
    return "role IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def upgrade() -> None:
    # Autogenerate does not see CHECK constraints: written by hand. SQLite cannot alter a
    # constraint: batch mode copies the table (its sessions' foreign key follows the name).
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_users_role'), type_='check')
        batch_op.create_check_constraint(op.f('ck_users_role'), _check(AFTER))


def downgrade() -> None:
    # A youth account cannot stay under the older constraint, and no other role fits it (each
    # would open case content or the live board): the accounts and their sessions go.
    op.execute("DELETE FROM web_sessions WHERE user_id IN (SELECT id FROM users WHERE role = 'youth')")
    op.execute("DELETE FROM users WHERE role = 'youth'")
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_users_role'), type_='check')
        batch_op.create_check_constraint(op.f('ck_users_role'), _check(BEFORE))
