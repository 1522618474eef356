"""scheduler lease and tick records (one process runs each tick)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 07:30:00

"""
from alembic import op
import sqlalchemy as sa

from repositories.sql.models import UtcDateTime


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('scheduler_leases',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('holder', sa.String(length=128), nullable=False),
    sa.Column('expires_at', UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_scheduler_leases'))
    )
    op.create_table('scheduler_ticks',
    sa.Column('job', sa.String(length=64), nullable=False),
    sa.Column('tick', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('holder', sa.String(length=128), nullable=False),
    sa.Column('ran_at', UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('job', 'tick', name=op.f('pk_scheduler_ticks'))
    )


def downgrade():
    op.drop_table('scheduler_ticks')
    op.drop_table('scheduler_leases')
