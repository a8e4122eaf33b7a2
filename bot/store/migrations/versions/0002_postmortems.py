"""Postmortem drafts: one row per version, with its review status.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "postmortems",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "incident_id", sa.String(64), sa.ForeignKey("incidents.id"), nullable=False, index=True
        ),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("author", sa.String(128), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("reviewed_by", sa.String(128)),
        sa.Column("reviewed_at", TS),
        sa.Column("review_note", sa.Text),
        sa.Column("slack_file", sa.String(64)),
    )
    op.create_index("ux_postmortem_version", "postmortems", ["incident_id", "version"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_postmortem_version", table_name="postmortems")
    op.drop_table("postmortems")
