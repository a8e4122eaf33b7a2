"""The durable store (SQLAlchemy 2 + Alembic): see ``paytriage.store.store``."""

from paytriage.store.store import (
    CLAIM_TTL,
    Entry,
    OutboxMessage,
    Postmortem,
    Store,
    StoredIncident,
    StoreError,
    StoreUnavailable,
    Tx,
)

__all__ = [
    "CLAIM_TTL",
    "Entry",
    "OutboxMessage",
    "Postmortem",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "StoredIncident",
    "Tx",
]
