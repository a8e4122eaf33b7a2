"""Replicas: the scheduler lease, outbox claims and a lookup of incidents by Slack thread.

- ``leases``: one row per lease (``scheduler``); the holder renews it before it expires, a
  follower takes it over once it has expired. ``epoch`` counts take-overs.
- ``outbox.started_at`` / ``claimed_by``: an attempt is claimed before it is made, so two
  replicas never send the same message at once, and an attempt that never recorded its
  outcome (the process died) is known to be uncertain and is reconciled before a retry.
- ``ix_incidents_slack_thread``: find an incident from the thread a command came from.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(128), nullable=False),
        sa.Column("epoch", sa.Integer, nullable=False),
        sa.Column("acquired_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
    )
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("started_at", TS))
        batch.add_column(sa.Column("claimed_by", sa.String(128)))
    op.create_index("ix_incidents_slack_thread", "incidents", ["slack_ts", "slack_channel"])


def downgrade() -> None:
    op.drop_index("ix_incidents_slack_thread", table_name="incidents")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("claimed_by")
        batch.drop_column("started_at")
    op.drop_table("leases")
