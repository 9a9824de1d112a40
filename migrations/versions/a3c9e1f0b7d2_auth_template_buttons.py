"""authentication template buttons

Per-app options of the WhatsApp authentication template (issue 15, item 4; docs/channels.md
"Autofill buttons"): the OTP button type (COPY_CODE, ONE_TAP, ZERO_TAP), the Android package
name and signature hash one-tap and zero-tap need, the zero-tap terms flag and the security
recommendation. Existing apps keep the copy-code button they had.

Revision ID: a3c9e1f0b7d2
Revises: f7a0d5e4b1c9
Create Date: 2026-12-03 10:45:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a3c9e1f0b7d2'
down_revision = "f7a0d5e4b1c9"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('apps', schema=None) as batch_op:
        batch_op.add_column(sa.Column('otp_type', sa.String(length=16), nullable=False, server_default='COPY_CODE'))
        batch_op.add_column(sa.Column('android_package_name', sa.String(length=224), nullable=False,
                                      server_default=''))
        batch_op.add_column(sa.Column('android_signature_hash', sa.String(length=11), nullable=False,
                                      server_default=''))
        batch_op.add_column(sa.Column('zero_tap_terms_accepted', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column('security_recommendation', sa.Boolean(), nullable=False,
                                      server_default=sa.true()))


def downgrade():
    with op.batch_alter_table('apps', schema=None) as batch_op:
        for name in ('security_recommendation', 'zero_tap_terms_accepted', 'android_signature_hash',
                     'android_package_name', 'otp_type'):
            batch_op.drop_column(name)
