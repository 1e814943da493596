"""Chain indexer (chain_events, chain_blocks), job intake from chain (jobs held without a
spec; the chain job's coordinator, status, maxUnits, deadline), settlement (rounds'
settle state machine and lease, commit totals, challenge end), aggregation outputs (final
model, validation loss) and revoked units.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('chain_blocks',
    sa.Column('indexer', sa.String(length=64), nullable=False),
    sa.Column('number', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('hash', sa.String(length=66), nullable=False),
    sa.PrimaryKeyConstraint('indexer', 'number')
    )
    op.create_table('chain_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('block_number', sa.BigInteger(), nullable=False),
    sa.Column('block_hash', sa.String(length=66), nullable=False),
    sa.Column('log_index', sa.Integer(), nullable=False),
    sa.Column('tx_hash', sa.String(length=66), nullable=False),
    sa.Column('contract', sa.String(length=42), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False, comment='event name from the ABI'),
    sa.Column('job_id', sa.BigInteger(), nullable=True, comment="the event's jobId, when it has one below 2^63"),
    sa.Column('args', sa.JSON(), nullable=False, comment='decoded arguments; bytes 0x-hex, big ints strings'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('block_hash', 'log_index', name='uq_chain_events_block_log')
    )
    with op.batch_alter_table('chain_events', schema=None) as batch_op:
        batch_op.create_index('ix_chain_events_block_number', ['block_number'], unique=False)
        batch_op.create_index('ix_chain_events_job_id_id', ['job_id', 'id'], unique=False)

    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('coordinator', sa.String(length=42), nullable=True, comment="the job's coordinator on chain"))
        batch_op.add_column(sa.Column('chain_status', sa.String(length=16), nullable=True, comment='open | completed | closed (on chain)'))
        batch_op.add_column(sa.Column('max_units', sa.String(length=80), nullable=True, comment="the chain job's maxUnits, decimal string"))
        batch_op.add_column(sa.Column('deadline', sa.BigInteger(), nullable=True, comment="the chain job's deadline, unix s"))
        batch_op.add_column(sa.Column('complete_tx', sa.String(length=66), nullable=True, comment='completeJob transaction'))
        batch_op.add_column(sa.Column('final_model_blob', sa.String(length=66), nullable=True, comment='G_R, the outer step after the last round'))
        batch_op.alter_column('spec_blob', existing_type=sa.VARCHAR(length=66), nullable=True,
                              comment='blob holding the canonical spec JSON; NULL until uploaded',
                              existing_comment='blob holding the canonical spec JSON')
        batch_op.alter_column('status', existing_type=sa.String(length=32),
                              comment='held | active | awaiting_aggregation | complete | closed',
                              existing_comment='active | awaiting_aggregation | complete | held')
        batch_op.alter_column('rounds_total', existing_type=sa.INTEGER(), nullable=True,
                              comment='R from the spec; NULL while held without one')
        batch_op.alter_column('units_per_round', existing_type=sa.INTEGER(), nullable=True,
                              comment='K from the spec; NULL while held without one')

    with op.batch_alter_table('rounds', schema=None) as batch_op:
        batch_op.add_column(sa.Column('settle_state', sa.String(length=16), nullable=True, comment='NULL (not started) | committing | committed | finalized'))
        batch_op.add_column(sa.Column('settle_owner', sa.String(length=32), nullable=True, comment='token of the process holding the settle lease'))
        batch_op.add_column(sa.Column('settle_lease_until', sa.Double(), nullable=True, comment='unix s; another process may take over after'))
        batch_op.add_column(sa.Column('settle_error', sa.Text(), nullable=True, comment='last settlement failure, cleared on success'))
        batch_op.add_column(sa.Column('committed_total', sa.String(length=80), nullable=True, comment='token base units, decimal string'))
        batch_op.add_column(sa.Column('committed_units', sa.Integer(), nullable=True, comment='leaves in the committed tree'))
        batch_op.add_column(sa.Column('challenge_end', sa.BigInteger(), nullable=True, comment='unix s (chain time) the window closes'))
        batch_op.add_column(sa.Column('val_loss', sa.Double(), nullable=True, comment='validation loss of G_{r+1}, nats/token'))

    with op.batch_alter_table('units', schema=None) as batch_op:
        batch_op.add_column(sa.Column('revoked_by_dispute', sa.BigInteger(), nullable=True, comment="market dispute whose ruling 2 revoked this unit's leaf"))



def downgrade() -> None:
    with op.batch_alter_table('units', schema=None) as batch_op:
        batch_op.drop_column('revoked_by_dispute')

    with op.batch_alter_table('rounds', schema=None) as batch_op:
        batch_op.drop_column('val_loss')
        batch_op.drop_column('challenge_end')
        batch_op.drop_column('committed_units')
        batch_op.drop_column('committed_total')
        batch_op.drop_column('settle_error')
        batch_op.drop_column('settle_lease_until')
        batch_op.drop_column('settle_owner')
        batch_op.drop_column('settle_state')

    # jobs held without a spec have no K, R or spec blob: they cannot exist at 0003
    op.execute("DELETE FROM jobs WHERE spec_blob IS NULL")
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.alter_column('units_per_round', existing_type=sa.INTEGER(), nullable=False, comment=None,
                              existing_comment='K from the spec; NULL while held without one')
        batch_op.alter_column('rounds_total', existing_type=sa.INTEGER(), nullable=False, comment=None,
                              existing_comment='R from the spec; NULL while held without one')
        batch_op.alter_column('status', existing_type=sa.String(length=32),
                              comment='active | awaiting_aggregation | complete | held',
                              existing_comment='held | active | awaiting_aggregation | complete | closed')
        batch_op.alter_column('spec_blob', existing_type=sa.VARCHAR(length=66), nullable=False,
                              comment='blob holding the canonical spec JSON',
                              existing_comment='blob holding the canonical spec JSON; NULL until uploaded')
        batch_op.drop_column('final_model_blob')
        batch_op.drop_column('complete_tx')
        batch_op.drop_column('deadline')
        batch_op.drop_column('max_units')
        batch_op.drop_column('chain_status')
        batch_op.drop_column('coordinator')

    with op.batch_alter_table('chain_events', schema=None) as batch_op:
        batch_op.drop_index('ix_chain_events_job_id_id')
        batch_op.drop_index('ix_chain_events_block_number')

    op.drop_table('chain_events')
    op.drop_table('chain_blocks')
