"""Alembic environment: run with the connection the store hands over (never a URL in a file)."""

from __future__ import annotations

from alembic import context

from paytriage.store.schema import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
