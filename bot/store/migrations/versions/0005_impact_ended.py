"""When an incident's impact ended: its signal back in its band, before the alert cleared.

``incidents.impact_ended_at`` is set when the last of its findings clears (the time the
signal came back, which the hysteresis follows by a few minutes) and cleared again when it
re-opens.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("impact_ended_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("impact_ended_at")
