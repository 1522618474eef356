"""workers remember when they were first seen (started_at)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 07:05:00

"""
from alembic import op
import sqlalchemy as sa

from repositories.sql.models import UtcDateTime


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('workers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('started_at', UtcDateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table('workers', schema=None) as batch_op:
        batch_op.drop_column('started_at')
