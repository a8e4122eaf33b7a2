"""The scheduler lease: of several replicas sharing one store, one leader runs the schedules.

Every replica serves Slack interactions (they only write to the store and the outbox); only
the holder of the ``scheduler`` lease evaluates detectors and drains the outbox. The lease is
a row in the store (PostgreSQL for replicas; SQLite works for one machine): the holder renews
it every ``renew_every``; once it has not been renewed for ``ttl`` any replica may take it
over, so a leader that dies (even by ``kill -9``, which releases nothing) is replaced within
``ttl + renew_every``. A leader shutting down cleanly releases it at once.

Take-over and renewal are one conditional ``UPDATE`` each, so two replicas never both
succeed. A leader also stops leading on its own once its last successful renewal is ``ttl``
old by its monotonic clock (say, it was paused or lost the database), before any follower
can take over; work it does is guarded by :meth:`Lease.valid`, and outbox messages are
claimed one by one besides (``Store.claim``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from paytriage.store.schema import LeaseRow

log = logging.getLogger(__name__)


def replica_id() -> str:
    """This process among the replicas: host, pid and a random part (pids repeat)."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class Lease:
    engine: Engine
    name: str = "scheduler"
    holder: str = field(default_factory=replica_id)
    ttl: timedelta = timedelta(seconds=30)
    monotonic: Callable[[], float] = time.monotonic
    # The time expiries are written and judged in: by default the database's clock on
    # PostgreSQL (one clock for every replica) and ours on SQLite; a test passes its own.
    clock: Callable[[], datetime] | None = None
    on_change: Callable[[bool], None] | None = None
    _valid_until: float = field(default=0.0, init=False)
    _epoch: int | None = field(default=None, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        if self.ttl <= timedelta(0):
            raise ValueError("lease ttl must be positive")

    # -- the database side -----------------------------------------------------------------

    def _now(self) -> datetime:
        """The database's clock on PostgreSQL (one clock for every replica); ours on SQLite,
        which only serves replicas on one machine; ``clock`` when given."""
        if self.clock is not None:
            return self.clock()
        if self.engine.dialect.name == "postgresql":
            with self.engine.connect() as conn:
                at: datetime = conn.execute(text("SELECT clock_timestamp()")).scalar_one()
            return at.astimezone(UTC)
        return datetime.now(UTC)

    def hold(self) -> bool:
        """Take the lease if it is free or expired, renew it if ours; True while we lead.

        A database error is not a crash: we lead no longer (from now on by our own clock at
        the latest), and try again at the next call.
        """
        started = self.monotonic()
        try:
            epoch = self._take_or_renew()
        except SQLAlchemyError as exc:
            log.warning("lease %s: the store did not answer (%s)", self.name, type(exc).__name__)
            epoch = None
        with self._lock:
            was = self.valid()
            if epoch is not None:
                self._valid_until = started + self.ttl.total_seconds()
                if epoch != self._epoch:
                    log.info("lease %s taken by %s (epoch %d)", self.name, self.holder, epoch)
                self._epoch = epoch
            is_now = self.valid()
        if was != is_now and self.on_change is not None:
            self.on_change(is_now)
        return is_now

    def _take_or_renew(self) -> int | None:
        now = self._now()
        expires = now + self.ttl
        ins = (postgresql if self.engine.dialect.name == "postgresql" else sqlite).insert
        with self.engine.begin() as conn:
            conn.execute(
                ins(LeaseRow)
                .values(name=self.name, holder="", epoch=0, acquired_at=now, expires_at=now)
                .on_conflict_do_nothing(index_elements=["name"])
            )
            renewed = conn.execute(
                update(LeaseRow)
                .where(LeaseRow.name == self.name, LeaseRow.holder == self.holder)
                .values(expires_at=expires)
                .returning(LeaseRow.epoch)
            ).scalar_one_or_none()
            if renewed is not None:
                return int(renewed)
            taken = conn.execute(
                update(LeaseRow)
                .where(LeaseRow.name == self.name, LeaseRow.expires_at <= now)
                .values(
                    holder=self.holder,
                    epoch=LeaseRow.epoch + 1,
                    acquired_at=now,
                    expires_at=expires,
                )
                .returning(LeaseRow.epoch)
            ).scalar_one_or_none()
            return None if taken is None else int(taken)

    def release(self) -> None:
        """Give the lease up now (clean shutdown): a follower takes over at its next try."""
        with self._lock:
            self._valid_until = 0.0
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    update(LeaseRow)
                    .where(LeaseRow.name == self.name, LeaseRow.holder == self.holder)
                    .values(expires_at=datetime(1970, 1, 1, tzinfo=UTC))
                )
        except SQLAlchemyError as exc:  # it expires by itself
            log.warning("lease %s not released (%s)", self.name, type(exc).__name__)
        if self.on_change is not None:
            self.on_change(False)

    def current(self) -> tuple[str, int, datetime] | None:
        """Who holds the lease, its epoch and until when (None before anyone took it)."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(LeaseRow.holder, LeaseRow.epoch, LeaseRow.expires_at).where(
                    LeaseRow.name == self.name
                )
            ).first()
        if row is None or not row.holder:
            return None
        at = row.expires_at
        return row.holder, int(row.epoch), at if at.tzinfo else at.replace(tzinfo=UTC)

    # -- our side ----------------------------------------------------------------------------

    def valid(self) -> bool:
        """Whether we lead now: renewed successfully within ``ttl`` by our monotonic clock
        (measured from before the renewal, so never later than the database's expiry)."""
        return self.monotonic() < self._valid_until

    @property
    def epoch(self) -> int | None:
        return self._epoch


class AlwaysLeader:
    """The lease of a single replica (``replicas.enabled: false``): always the leader."""

    holder = "single"

    def hold(self) -> bool:
        return True

    def valid(self) -> bool:
        return True

    def release(self) -> None:
        return None
