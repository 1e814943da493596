"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-23 01:09:31.800921
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('blobs',
    sa.Column('sha256', sa.String(length=66), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False, comment='bytes'),
    sa.Column('uploader', sa.String(length=42), nullable=True, comment='NULL for blobs the coordinator wrote itself'),
    sa.Column('created_at', sa.Double(), nullable=False),
    sa.PrimaryKeyConstraint('sha256')
    )
    op.create_table('chain_cursor',
    sa.Column('name', sa.String(length=64), nullable=False, comment='indexer name'),
    sa.Column('block_number', sa.BigInteger(), nullable=False),
    sa.Column('block_hash', sa.String(length=66), nullable=False),
    sa.Column('updated_at', sa.Double(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=64), nullable=False),
    sa.Column('job_id', sa.BigInteger(), nullable=True),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.Double(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.create_index('ix_events_job_id_id', ['job_id', 'id'], unique=False)

    op.create_table('jobs',
    sa.Column('id', sa.BigInteger(), autoincrement=False, nullable=False, comment='on-chain job id'),
    sa.Column('spec_hash', sa.String(length=66), nullable=False),
    sa.Column('spec_blob', sa.String(length=66), nullable=False, comment='blob holding the canonical spec JSON'),
    sa.Column('owner', sa.String(length=42), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False, comment='active | awaiting_aggregation | complete | held'),
    sa.Column('hold_reason', sa.Text(), nullable=True),
    sa.Column('rounds_total', sa.Integer(), nullable=False),
    sa.Column('units_per_round', sa.Integer(), nullable=False),
    sa.Column('current_round', sa.Integer(), nullable=False),
    sa.Column('reward_per_unit', sa.String(length=80), nullable=False, comment='token base units, decimal string'),
    sa.Column('registered_at', sa.Double(), nullable=False),
    sa.Column('register_tx', sa.String(length=66), nullable=True, comment='postJob transaction, when the indexer saw it'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('workers',
    sa.Column('address', sa.String(length=42), nullable=False),
    sa.Column('first_seen', sa.Double(), nullable=False),
    sa.Column('last_seen', sa.Double(), nullable=False),
    sa.PrimaryKeyConstraint('address')
    )
    op.create_table('rounds',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.BigInteger(), nullable=False),
    sa.Column('round', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False, comment='open | complete | quorum | cancelled'),
    sa.Column('checkpoint_blob', sa.String(length=66), nullable=True, comment='global checkpoint G_r; NULL = init from spec seed'),
    sa.Column('units', sa.Integer(), nullable=False),
    sa.Column('accepted', sa.Integer(), nullable=False),
    sa.Column('opened_at', sa.Double(), nullable=False),
    sa.Column('deadline', sa.Double(), nullable=False),
    sa.Column('closed_at', sa.Double(), nullable=True),
    sa.Column('committed_root', sa.String(length=66), nullable=True),
    sa.Column('commit_tx', sa.String(length=66), nullable=True),
    sa.Column('finalize_tx', sa.String(length=66), nullable=True),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('job_id', 'round', name='uq_rounds_job_round')
    )
    with op.batch_alter_table('rounds', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rounds_job_id'), ['job_id'], unique=False)

    op.create_table('units',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.BigInteger(), nullable=False),
    sa.Column('round_id', sa.Integer(), nullable=False),
    sa.Column('round', sa.Integer(), nullable=False),
    sa.Column('index', sa.Integer(), nullable=False, comment='slot k'),
    sa.Column('status', sa.String(length=32), nullable=False, comment='queued | leased | verifying | accepted | cancelled'),
    sa.Column('current_lease', sa.String(length=32), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('slot_state_blob', sa.String(length=66), nullable=True, comment="slot k's inner optimizer state; NULL = fresh"),
    sa.Column('accepted_result_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ),
    sa.ForeignKeyConstraint(['round_id'], ['rounds.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('round_id', 'index', name='uq_units_round_index')
    )
    with op.batch_alter_table('units', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_units_job_id'), ['job_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_units_round_id'), ['round_id'], unique=False)

    op.create_table('leases',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('unit_id', sa.Integer(), nullable=False),
    sa.Column('worker', sa.String(length=42), nullable=False),
    sa.Column('granted_at', sa.Double(), nullable=False),
    sa.Column('expires_at', sa.Double(), nullable=False, comment='as of the grant; heartbeats extend it in Redis only'),
    sa.Column('ended_at', sa.Double(), nullable=True),
    sa.Column('end_reason', sa.String(length=32), nullable=True, comment='accepted | rejected | released | expired | cancelled'),
    sa.ForeignKeyConstraint(['unit_id'], ['units.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('leases', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_leases_unit_id'), ['unit_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_leases_worker'), ['worker'], unique=False)

    op.create_table('results',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('unit_id', sa.Integer(), nullable=False),
    sa.Column('lease_id', sa.String(length=32), nullable=False),
    sa.Column('worker', sa.String(length=42), nullable=False),
    sa.Column('input_hash', sa.String(length=66), nullable=False),
    sa.Column('output_hash', sa.String(length=66), nullable=False, comment='also the output blob'),
    sa.Column('trace_root', sa.String(length=66), nullable=False),
    sa.Column('trace_blob', sa.String(length=66), nullable=False),
    sa.Column('snapshot_blobs', sa.JSON(), nullable=False),
    sa.Column('result_hash', sa.String(length=66), nullable=False, comment='EIP-712 WorkResult digest = round leaf resultHash'),
    sa.Column('signature', sa.String(length=132), nullable=False),
    sa.Column('verdict', sa.String(length=16), nullable=False, comment='accepted | rejected'),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('evidence_blob', sa.String(length=66), nullable=True),
    sa.Column('submitted_at', sa.Double(), nullable=False),
    sa.ForeignKeyConstraint(['unit_id'], ['units.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('lease_id')
    )
    with op.batch_alter_table('results', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_results_unit_id'), ['unit_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_results_worker'), ['worker'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('results', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_results_worker'))
        batch_op.drop_index(batch_op.f('ix_results_unit_id'))

    op.drop_table('results')
    with op.batch_alter_table('leases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_leases_worker'))
        batch_op.drop_index(batch_op.f('ix_leases_unit_id'))

    op.drop_table('leases')
    with op.batch_alter_table('units', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_units_round_id'))
        batch_op.drop_index(batch_op.f('ix_units_job_id'))

    op.drop_table('units')
    with op.batch_alter_table('rounds', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rounds_job_id'))

    op.drop_table('rounds')
    op.drop_table('workers')
    op.drop_table('jobs')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index('ix_events_job_id_id')

    op.drop_table('events')
    op.drop_table('chain_cursor')
    op.drop_table('blobs')
