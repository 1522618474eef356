"""panel sessions kept on the server; the login throttle shared by every worker

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 02:00:00

"""
from alembic import op

from repositories.sql.models import UtcDateTime
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('panel_sessions',
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('user_name', sa.String(length=128), nullable=False),
    sa.Column('created_at', UtcDateTime(timezone=True), nullable=False),
    sa.Column('seen_at', UtcDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('token_hash', name=op.f('pk_panel_sessions'))
    )
    op.create_index(op.f('ix_panel_sessions_user_name'), 'panel_sessions', ['user_name'], unique=False)
    op.create_index(op.f('ix_panel_sessions_expires_at'), 'panel_sessions', ['expires_at'], unique=False)
    op.create_table('login_throttle',
    sa.Column('client', sa.String(length=64), nullable=False),
    sa.Column('window_start', UtcDateTime(timezone=True), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('client', name=op.f('pk_login_throttle'))
    )
    op.create_index(op.f('ix_login_throttle_window_start'), 'login_throttle', ['window_start'], unique=False)


def downgrade():
    op.drop_index(op.f('ix_login_throttle_window_start'), table_name='login_throttle')
    op.drop_table('login_throttle')
    op.drop_index(op.f('ix_panel_sessions_expires_at'), table_name='panel_sessions')
    op.drop_index(op.f('ix_panel_sessions_user_name'), table_name='panel_sessions')
    op.drop_table('panel_sessions')
