"""daily usage rollups beside the hourly ones (filled from them)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 08:10:00

"""
from alembic import op
import sqlalchemy as sa

from repositories.sql.models import UtcDateTime
from repositories.sql.rows import daily_from_hourly


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('usage_daily',
    sa.Column('owner', sa.String(length=256), nullable=False),
    sa.Column('kind', sa.String(length=64), nullable=False),
    sa.Column('engine', sa.String(length=128), nullable=False),
    sa.Column('day', UtcDateTime(timezone=True), nullable=False),
    sa.Column('sessions', sa.BigInteger(), nullable=False),
    sa.Column('tokens', sa.BigInteger(), nullable=False),
    sa.Column('cost', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('owner', 'kind', 'engine', 'day', name=op.f('pk_usage_daily'))
    )
    with op.batch_alter_table('usage_daily', schema=None) as batch_op:
        batch_op.create_index('ix_usage_daily_day', ['day'], unique=False)
    op.execute(daily_from_hourly(op.get_bind().dialect.name))


def downgrade():
    with op.batch_alter_table('usage_daily', schema=None) as batch_op:
        batch_op.drop_index('ix_usage_daily_day')
    op.drop_table('usage_daily')
