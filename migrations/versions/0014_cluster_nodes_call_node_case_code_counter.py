"""cluster: calls.node, cluster_nodes (heartbeats), case_code_counter (codes unique across nodes)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-08 02:50:00
"""
import secrets

import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.add_column(sa.Column('node', sa.String(length=20), nullable=True))
        # Survivors look for a dead node's calls left in progress.
        batch_op.create_index('ix_calls_node_disposition', ['node', 'disposition'], unique=False)
    op.create_table(
        'cluster_nodes',
        sa.Column('name', sa.String(length=20), nullable=False),
        sa.Column('seen_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('asterisk_up', sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_cluster_nodes')),
    )
    counter = op.create_table(
        'case_code_counter',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('next', sa.Integer(), nullable=False),
        sa.Column('key', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_case_code_counter')),
    )
    # One key per database: every node permutes the shared counter the same way.
    op.bulk_insert(counter, [{'id': 1, 'next': 0, 'key': secrets.token_hex(32)}])


def downgrade() -> None:
    op.drop_table('case_code_counter')
    op.drop_table('cluster_nodes')
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_index('ix_calls_node_disposition')
        batch_op.drop_column('node')
