"""retention and report rollups

Data retention (issue 17 item 2, docs/operations.md "Retention"): when an OTP's recipient was
anonymised and the keyed hash kept in its place, when a message's was; each app's own
retention period (NULL: RETENTION_DAYS). Report rollups (issue 17 item 3): per app, UTC hour (and
UTC day), channel, status and country, the OTP counts (with how many were sent and delivered), and per
app, hour and channel the verified OTPs' milliseconds to verify; the rollup's progress.

Revision ID: a3c1e9d27b40
Revises: b3c1f0a9d2e7
Create Date: 2026-12-03 10:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a3c1e9d27b40'
down_revision = "b3c1f0a9d2e7"
branch_labels = None
depends_on = None


def upgrade():
    # Plain ADD COLUMNs (nullable, no default): no table rebuild on SQLite, no rewrite on PostgreSQL.
    op.add_column('otps', sa.Column('anonymised_at', sa.DateTime(), nullable=True))
    op.add_column('otps', sa.Column('recipient_hash', sa.String(length=64), nullable=True))
    op.add_column('messages', sa.Column('anonymised_at', sa.DateTime(), nullable=True))
    op.add_column('apps', sa.Column('retention_days', sa.Integer(), nullable=True))
    op.create_table(
        'report_rollups',
        sa.Column('app_id', sa.String(length=40), sa.ForeignKey('apps.id'), nullable=False),
        sa.Column('span', sa.String(length=4), nullable=False),
        sa.Column('hour', sa.DateTime(), nullable=False),
        sa.Column('channel', sa.String(length=8), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('country', sa.String(length=2), nullable=False),
        sa.Column('n', sa.Integer(), nullable=False),
        sa.Column('sent', sa.Integer(), nullable=False),
        sa.Column('delivered', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('app_id', 'span', 'hour', 'channel', 'status', 'country'),
    )
    op.create_table(
        'report_rollup_durations',
        sa.Column('app_id', sa.String(length=40), sa.ForeignKey('apps.id'), nullable=False),
        sa.Column('span', sa.String(length=4), nullable=False),
        sa.Column('hour', sa.DateTime(), nullable=False),
        sa.Column('channel', sa.String(length=8), nullable=False),
        sa.Column('millis', sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint('app_id', 'span', 'hour', 'channel'),
    )
    op.create_table(
        'report_rollup_state',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('rolled_until', sa.DateTime(), nullable=True),
        sa.Column('rechecked_at', sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
    )


def downgrade():
    op.drop_table('report_rollup_state')
    op.drop_table('report_rollup_durations')
    op.drop_table('report_rollups')
    with op.batch_alter_table('apps', schema=None) as batch_op:
        batch_op.drop_column('retention_days')
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_column('anonymised_at')
    with op.batch_alter_table('otps', schema=None) as batch_op:
        batch_op.drop_column('recipient_hash')
        batch_op.drop_column('anonymised_at')
