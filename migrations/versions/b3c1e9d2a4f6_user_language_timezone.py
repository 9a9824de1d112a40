"""user language and time zone

Each console user's own language and time zone (issue 16, SPEC §12); NULL means the defaults:
the browser's Accept-Language / CONSOLE_LANGUAGE, and CONSOLE_TIMEZONE.

Revision ID: b3c1e9d2a4f6
Revises: a3c1e9d27b40
Create Date: 2026-12-03 10:40:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b3c1e9d2a4f6'
down_revision = "a3c1e9d27b40"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('language', sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column('timezone', sa.String(length=64), nullable=True))


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('timezone')
        batch_op.drop_column('language')
