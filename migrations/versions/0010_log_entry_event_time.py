"""log entries keep the reporter's time of the event (at)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 09:00:00

"""
from alembic import op
import sqlalchemy as sa

from repositories.sql.models import UtcDateTime


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('log_entries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('at', UtcDateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table('log_entries', schema=None) as batch_op:
        batch_op.drop_column('at')
