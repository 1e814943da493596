"""Count accepted units instead of bumping rounds.accepted on every submission.

Index units(round_id, status) (replaces the plain round_id index: the unique (round_id,
index) constraint covers look-ups by round) and document that rounds.accepted is written
when the round closes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('units', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_units_round_id'))
        batch_op.create_index('ix_units_round_id_status', ['round_id', 'status'], unique=False)
    if op.get_bind().dialect.name != "sqlite":  # SQLite keeps no column comments
        op.alter_column('rounds', 'accepted', existing_type=sa.Integer(), existing_nullable=False,
                        comment="set when the round closes; count units while open")


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column('rounds', 'accepted', existing_type=sa.Integer(), existing_nullable=False, comment=None)
    with op.batch_alter_table('units', schema=None) as batch_op:
        batch_op.drop_index('ix_units_round_id_status')
        batch_op.create_index(batch_op.f('ix_units_round_id'), ['round_id'], unique=False)
