"""cases and post-call survey

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 04:53:16.923012
"""
import sqlalchemy as sa
from alembic import op

from ivr import models

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('cases',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('code', sa.String(length=16), nullable=False),
    sa.Column('channel', sa.String(length=8), nullable=False),
    sa.Column('caller', sa.String(length=64), nullable=True),
    sa.Column('anonymous', sa.Boolean(), nullable=False),
    sa.Column('call_id', sa.String(length=64), nullable=True),
    sa.Column('branch_digit', sa.String(length=1), nullable=True),
    sa.Column('branch_name', sa.String(length=200), nullable=True),
    sa.Column('agency_code', sa.String(length=32), nullable=True),
    sa.Column('agency_name', sa.String(length=200), nullable=True),
    sa.Column('category', sa.String(length=16), nullable=False),
    sa.Column('summary', sa.Text(), nullable=True),
    sa.Column('recording', sa.String(length=500), nullable=True),
    sa.Column('recording_seconds', sa.Double(), nullable=True),
    sa.Column('received_at', models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('deadline_at', models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('closed_reason', sa.String(length=24), nullable=True),
    sa.Column('answer', sa.Text(), nullable=True),
    sa.Column('answered_at', models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('inspection', sa.Boolean(), nullable=False),
    sa.Column('inspection_reason', sa.Text(), nullable=True),
    sa.CheckConstraint("category IN ('procedure', 'regulation', 'misconduct', 'question', 'other')", name=op.f('ck_cases_category')),
    sa.CheckConstraint("channel IN ('phone', 'zalo', 'web')", name=op.f('ck_cases_channel')),
    sa.CheckConstraint("closed_reason IS NULL OR closed_reason IN ('resolved', 'transferred', 'duplicate', 'invalid', 'no_further_action')", name=op.f('ck_cases_closed_reason')),
    sa.CheckConstraint("status IN ('received', 'classified', 'assigned', 'in_progress', 'answered', 'closed', 'reopened')", name=op.f('ck_cases_status')),
    sa.ForeignKeyConstraint(['call_id'], ['calls.id'], name=op.f('fk_cases_call_id_calls'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cases')),
    sa.UniqueConstraint('code', name=op.f('uq_cases_code'))
    )
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cases_agency_code'), ['agency_code'], unique=False)
        batch_op.create_index(batch_op.f('ix_cases_call_id'), ['call_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_cases_inspection'), ['inspection'], unique=False)
        batch_op.create_index(batch_op.f('ix_cases_received_at'), ['received_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_cases_status'), ['status'], unique=False)

    op.create_table('case_assignments',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('agency_code', sa.String(length=32), nullable=False),
    sa.Column('agency_name', sa.String(length=200), nullable=False),
    sa.Column('assigned_at', models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_case_assignments_case_id_cases'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_case_assignments')),
    sa.UniqueConstraint('case_id', 'agency_code', name=op.f('uq_case_assignments_case_id'))
    )
    with op.batch_alter_table('case_assignments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_case_assignments_agency_code'), ['agency_code'], unique=False)
        batch_op.create_index(batch_op.f('ix_case_assignments_case_id'), ['case_id'], unique=False)

    op.create_table('case_events',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('at', models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('from_status', sa.String(length=16), nullable=True),
    sa.Column('to_status', sa.String(length=16), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_case_events_case_id_cases'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_case_events'))
    )
    with op.batch_alter_table('case_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_case_events_case_id'), ['case_id'], unique=False)

    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.add_column(sa.Column('survey_score', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('case_code', sa.String(length=16), nullable=True))
        batch_op.create_index(batch_op.f('ix_calls_case_code'), ['case_code'], unique=False)
        # Autogenerate does not see check constraints: added by hand (models.calls.Call).
        batch_op.create_check_constraint(op.f('ck_calls_survey_score'), "survey_score IS NULL OR survey_score BETWEEN 1 AND 5")



def downgrade() -> None:
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_calls_survey_score'), type_='check')
        batch_op.drop_index(batch_op.f('ix_calls_case_code'))
        batch_op.drop_column('case_code')
        batch_op.drop_column('survey_score')

    with op.batch_alter_table('case_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_case_events_case_id'))

    op.drop_table('case_events')
    with op.batch_alter_table('case_assignments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_case_assignments_case_id'))
        batch_op.drop_index(batch_op.f('ix_case_assignments_agency_code'))

    op.drop_table('case_assignments')
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cases_status'))
        batch_op.drop_index(batch_op.f('ix_cases_received_at'))
        batch_op.drop_index(batch_op.f('ix_cases_inspection'))
        batch_op.drop_index(batch_op.f('ix_cases_call_id'))
        batch_op.drop_index(batch_op.f('ix_cases_agency_code'))

    op.drop_table('cases')
