"""otp superseded code hashes

The keyed hashes of the codes a resend replaced, so a code from before a resend answers
OTP_CANCELED ("replaced by a resend") instead of INVALID_CODE (issue 14, defect 14).

Revision ID: e7e2812b5862
Revises: 0b0987b85dcc
Create Date: 2026-12-02 01:10:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'e7e2812b5862'
down_revision = '0b0987b85dcc'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('otps', schema=None) as batch_op:
        batch_op.add_column(sa.Column('superseded_code_hashes', sa.Text(), nullable=True))


def downgrade():
    with op.batch_alter_table('otps', schema=None) as batch_op:
        batch_op.drop_column('superseded_code_hashes')
