"""daily usage rollups beside the hourly ones (filled from them)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 08:10:00

"""
from alembic import op
import sqlalchemy as sa

from repositories.sql.models import UtcDateTime


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
    # SQLite keeps naive UTC text ("YYYY-MM-DD HH:MM:SS.ffffff"), PostgreSQL timestamptz.
    day = ("date_trunc('day', hour)" if op.get_bind().dialect.name == "postgresql"
           else "substr(hour, 1, 10) || ' 00:00:00.000000'")
    op.execute(f"INSERT INTO usage_daily (owner, kind, engine, day, sessions, tokens, cost) "
               f"SELECT owner, kind, engine, {day}, sum(sessions), sum(tokens), sum(cost) "
               f"FROM usage_rollups GROUP BY owner, kind, engine, {day}")


def downgrade():
    with op.batch_alter_table('usage_daily', schema=None) as batch_op:
        batch_op.drop_index('ix_usage_daily_day')
    op.drop_table('usage_daily')
