"""The store's tables (SQLAlchemy 2 declarative). Migrations in ``migrations/`` create them;
a change here needs a new migration (``tests/unit/test_store.py`` checks they agree)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON,
        datetime: DateTime(timezone=True),
    }


class IncidentRow(Base):
    __tablename__ = "incidents"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    number: Mapped[int | None] = mapped_column(Integer)  # INC-<number>, in order of opening
    detector: Mapped[str] = mapped_column(String(64))
    dimensions: Mapped[dict[str, Any]]
    title: Mapped[str] = mapped_column(Text)
    severity: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), index=True)
    data_problem: Mapped[bool] = mapped_column(Boolean, default=False)
    opened_at: Mapped[datetime]
    onset: Mapped[datetime | None]
    updated_at: Mapped[datetime]
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(128))
    mitigated_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    impact_ended_at: Mapped[datetime | None]  # the signal back in its band (before resolved)
    reopened: Mapped[int] = mapped_column(Integer, default=0)
    members: Mapped[dict[str, Any]]  # "detector|k=v,..." -> the finding's summary
    evidence: Mapped[dict[str, Any]]
    runbook: Mapped[str | None] = mapped_column(String(128))
    slack_channel: Mapped[str | None] = mapped_column(String(64))
    slack_ts: Mapped[str | None] = mapped_column(String(32))
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 (SQLAlchemy reads it)
    __table_args__ = (
        Index("ix_incidents_slack_thread", "slack_ts", "slack_channel"),
        Index("ux_incidents_number", "number", unique=True),
    )


class TimelineRow(Base):
    __tablename__ = "timeline"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id"), index=True)
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(128))
    text: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]]


class SilenceRow(Base):
    __tablename__ = "silences"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    detector: Mapped[str | None] = mapped_column(String(64))
    dimensions: Mapped[dict[str, Any]]
    reason: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    incident_id: Mapped[str | None] = mapped_column(String(64))
    ended_at: Mapped[datetime | None]


class OutboxRow(Base):
    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    incident_id: Mapped[str | None] = mapped_column(String(64), index=True)
    channel: Mapped[str] = mapped_column(String(32))  # "slack" | "pagerduty" | ...
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    failed_at: Mapped[datetime | None]  # gave up
    last_error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any]]
    started_at: Mapped[datetime | None]  # an attempt is under way (or died: uncertain)
    claimed_by: Mapped[str | None] = mapped_column(String(128))

    __table_args__ = (Index("ix_outbox_due", "sent_at", "failed_at", "next_attempt_at"),)


class LeaseRow(Base):
    """Who runs the schedules: held until ``expires_at`` unless renewed
    (``paytriage.store.lease``)."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    epoch: Mapped[int] = mapped_column(Integer)
    acquired_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class AuditRow(Base):
    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    incident_id: Mapped[str | None] = mapped_column(String(64), index=True)
    allowed: Mapped[bool] = mapped_column(Boolean, default=True)
    data: Mapped[dict[str, Any]]


class PostmortemRow(Base):
    """One version of an incident's postmortem draft, and its review status."""

    __tablename__ = "postmortems"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32))  # draft | changes_requested | approved
    body: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]
    reviewed_by: Mapped[str | None] = mapped_column(String(128))
    reviewed_at: Mapped[datetime | None]
    review_note: Mapped[str | None] = mapped_column(Text)
    slack_file: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (Index("ux_postmortem_version", "incident_id", "version", unique=True),)
