"""fraud guard

Per-app settings of the fraud guard against SMS pumping (issue 15, docs/fraud.md): geo
permissions per channel and overrides of the FRAUD_* thresholds (NULL: the server setting).

Revision ID: f7a0d5e4b1c9
Revises: 5a5c0c4a77e1
Create Date: 2026-12-02 21:50:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'f7a0d5e4b1c9'
down_revision = "5a5c0c4a77e1"
branch_labels = None
depends_on = None

LISTS = ('fraud_allow_whatsapp', 'fraud_deny_whatsapp', 'fraud_allow_sms', 'fraud_deny_sms')


def upgrade():
    with op.batch_alter_table('apps', schema=None) as batch_op:
        for name in LISTS:
            batch_op.add_column(sa.Column(name, sa.String(length=1000), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('fraud_guard', sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column('fraud_country_limit', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('fraud_prefix_limit', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('fraud_unverified_prefix', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('fraud_unverified_country', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('fraud_block_seconds', sa.Integer(), nullable=True))


def downgrade():
    with op.batch_alter_table('apps', schema=None) as batch_op:
        for name in ('fraud_block_seconds', 'fraud_unverified_country', 'fraud_unverified_prefix', 'fraud_prefix_limit',
                     'fraud_country_limit', 'fraud_guard', *reversed(LISTS)):
            batch_op.drop_column(name)
