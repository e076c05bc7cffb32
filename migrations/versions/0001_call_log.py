"""call log: calls, their timeline and desk-phone legs

Revision ID: 0001
Revises:
Create Date: 2026-11-28 04:20:03.335064
"""
import sqlalchemy as sa
from alembic import op

from ivr import models

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('calls',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('caller', sa.String(length=64), nullable=False),
    sa.Column('hotline', sa.String(length=16), nullable=False),
    sa.Column('started_at', models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('answered_at', models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('ended_at', models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('branch_digit', sa.String(length=1), nullable=True),
    sa.Column('branch_name', sa.String(length=200), nullable=True),
    sa.Column('agency_code', sa.String(length=32), nullable=True),
    sa.Column('agency_name', sa.String(length=200), nullable=True),
    sa.Column('answered_by', sa.String(length=16), nullable=True),
    sa.Column('wait_s', sa.Float(), nullable=True),
    sa.Column('talk_s', sa.Float(), nullable=True),
    sa.Column('disposition', sa.String(length=16), nullable=False),
    sa.Column('ended_in', sa.String(length=32), nullable=True),
    sa.Column('hangup_by', sa.String(length=16), nullable=True),
    sa.CheckConstraint("disposition IN ('in_progress', 'answered', 'no_answer', 'busy', 'abandoned', 'invalid_input', 'closed', 'complaint', 'rejected', 'failed', 'interrupted')", name=op.f('ck_calls_disposition')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_calls'))
    )
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_calls_agency_code'), ['agency_code'], unique=False)
        batch_op.create_index(batch_op.f('ix_calls_branch_digit'), ['branch_digit'], unique=False)
        batch_op.create_index(batch_op.f('ix_calls_disposition'), ['disposition'], unique=False)
        batch_op.create_index(batch_op.f('ix_calls_started_at'), ['started_at'], unique=False)

    op.create_table('call_events',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('call_id', sa.String(length=64), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('at', models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['call_id'], ['calls.id'], name=op.f('fk_call_events_call_id_calls'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_call_events')),
    sa.UniqueConstraint('call_id', 'seq', name=op.f('uq_call_events_call_id'))
    )
    with op.batch_alter_table('call_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_call_events_call_id'), ['call_id'], unique=False)

    op.create_table('call_legs',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('call_id', sa.String(length=64), nullable=False),
    sa.Column('channel_id', sa.String(length=64), nullable=False),
    sa.Column('extension', sa.String(length=16), nullable=False),
    sa.Column('started_at', models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('answered_at', models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('ended_at', models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('result', sa.String(length=16), nullable=True),
    sa.ForeignKeyConstraint(['call_id'], ['calls.id'], name=op.f('fk_call_legs_call_id_calls'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_call_legs')),
    sa.UniqueConstraint('channel_id', name=op.f('uq_call_legs_channel_id'))
    )
    with op.batch_alter_table('call_legs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_call_legs_call_id'), ['call_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_call_legs_extension'), ['extension'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('call_legs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_call_legs_extension'))
        batch_op.drop_index(batch_op.f('ix_call_legs_call_id'))

    op.drop_table('call_legs')
    with op.batch_alter_table('call_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_call_events_call_id'))

    op.drop_table('call_events')
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_calls_started_at'))
        batch_op.drop_index(batch_op.f('ix_calls_disposition'))
        batch_op.drop_index(batch_op.f('ix_calls_branch_digit'))
        batch_op.drop_index(batch_op.f('ix_calls_agency_code'))

    op.drop_table('calls')
