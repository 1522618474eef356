"""log entries without a foreign key (the store keeps the invariant; see LogRow)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 06:50:00

"""
from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('log_entries', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_log_entries_session_pk'), type_='foreignkey')


def downgrade():
    # Entries whose session is gone would break the restored constraint.
    op.execute("DELETE FROM log_entries WHERE session_pk NOT IN (SELECT pk FROM sessions)")
    with op.batch_alter_table('log_entries', schema=None) as batch_op:
        batch_op.create_foreign_key(batch_op.f('fk_log_entries_session_pk'), 'sessions', ['session_pk'], ['pk'],
                                    ondelete='CASCADE')
