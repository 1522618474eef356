"""a worker heartbeats under the same id, of up to 256 characters, that it starts sessions under

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 04:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('workers', schema=None) as batch_op:
        batch_op.alter_column('worker_id', existing_type=sa.String(length=128), type_=sa.String(length=256),
                              existing_nullable=False)


def downgrade():
    with op.batch_alter_table('workers', schema=None) as batch_op:
        batch_op.alter_column('worker_id', existing_type=sa.String(length=256), type_=sa.String(length=128),
                              existing_nullable=False)
