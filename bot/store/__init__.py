"""The durable store (SQLAlchemy 2 + Alembic): see ``bot.store.store``."""

from bot.store.store import (
    CLAIM_TTL,
    Entry,
    OutboxMessage,
    Outgoing,
    Postmortem,
    Store,
    StoredIncident,
    StoreError,
    Tx,
)

__all__ = [
    "CLAIM_TTL",
    "Entry",
    "OutboxMessage",
    "Outgoing",
    "Postmortem",
    "Store",
    "StoreError",
    "StoredIncident",
    "Tx",
]
