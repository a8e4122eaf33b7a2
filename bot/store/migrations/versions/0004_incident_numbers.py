"""Short incident numbers: INC-42 beside the internal key.

``incidents.number`` counts incidents in the order they were opened; people say and type
"INC-42", the bot keeps its stable key (``inc-<hex>``) for idempotency. Existing incidents
are numbered by their opening time.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("number", sa.Integer))
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT id FROM incidents ORDER BY opened_at, id")).all()
    ids = [str(row[0]) for row in rows]
    for n, incident_id in enumerate(ids, start=1):
        conn.execute(
            sa.text("UPDATE incidents SET number = :n WHERE id = :id"), {"n": n, "id": incident_id}
        )
    op.create_index("ux_incidents_number", "incidents", ["number"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_incidents_number", table_name="incidents")
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("number")
