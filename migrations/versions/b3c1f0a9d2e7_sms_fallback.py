"""sms fallback of channel auto, per-app SMS texts

The SMS fallback of channel `auto` (issue 15, docs/channels.md): `otps.fallback` (NULL, armed,
done, refused), the per-app `apps.fallback_after_seconds` (NULL: FALLBACK_AFTER_SECONDS) and the
per-app SMS texts `apps.sms_texts` (JSON by language; NULL: the built-in texts).

Revision ID: b3c1f0a9d2e7
Revises: a3c9e1f0b7d2
Create Date: 2026-12-03 10:50:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b3c1f0a9d2e7'
down_revision = "a3c9e1f0b7d2"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('apps', schema=None) as batch_op:
        batch_op.add_column(sa.Column('fallback_after_seconds', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('sms_texts', sa.JSON(), nullable=True))
    with op.batch_alter_table('otps', schema=None) as batch_op:
        batch_op.add_column(sa.Column('fallback', sa.String(length=8), nullable=True))
        # The sweep's look for armed OTPs whose receipt is overdue.
        batch_op.create_index('ix_otps_fallback_sent', ['fallback', 'last_sent_at'], unique=False)


def downgrade():
    with op.batch_alter_table('otps', schema=None) as batch_op:
        batch_op.drop_index('ix_otps_fallback_sent')
        batch_op.drop_column('fallback')
    with op.batch_alter_table('apps', schema=None) as batch_op:
        batch_op.drop_column('sms_texts')
        batch_op.drop_column('fallback_after_seconds')
