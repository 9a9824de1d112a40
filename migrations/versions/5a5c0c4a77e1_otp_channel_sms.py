"""otp channel (sms)

Which channel an OTP's last send went over (`whatsapp` or `sms`), and each send attempt's
channel (issue 15, SMS channel). Existing rows were all WhatsApp.

Revision ID: 5a5c0c4a77e1
Revises: e7e2812b5862
Create Date: 2026-12-02 21:45:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '5a5c0c4a77e1'
down_revision = 'e7e2812b5862'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('otps', schema=None) as batch_op:
        batch_op.add_column(sa.Column('channel', sa.String(length=8), nullable=False, server_default='whatsapp'))
    with op.batch_alter_table('send_attempts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('channel', sa.String(length=8), nullable=False, server_default='whatsapp'))


def downgrade():
    with op.batch_alter_table('send_attempts', schema=None) as batch_op:
        batch_op.drop_column('channel')
    with op.batch_alter_table('otps', schema=None) as batch_op:
        batch_op.drop_column('channel')
