"""The durable store: incidents, their timeline, silences, the notification outbox and an
append-only audit log, through SQLAlchemy 2 (SQLite file by default, PostgreSQL for
replicas). Alembic migrations create and upgrade the schema when the store opens.

Durable before visible: a decision (an incident opened, a state change) and the
notifications it causes are written in one transaction; senders work off the outbox by
idempotency key, so a restart or a retry never posts twice. Everything written passes the
redactor first.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, event, func, or_, select, update
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from paytriage.core.redact import redact, redact_value
from paytriage.core.types import iso
from paytriage.domain.evidence import Evidence
from paytriage.domain.findings import Finding, QueryRef, Severity
from paytriage.domain.incidents import Incident, MemberKey
from paytriage.domain.lifecycle import Action, Silence, State, transition
from paytriage.domain.notifications import Outgoing
from paytriage.store.schema import (
    AuditRow,
    IncidentRow,
    OutboxRow,
    PostmortemRow,
    SilenceRow,
    TimelineRow,
)

CLAIM_TTL = timedelta(minutes=2)
"""How long a claimed outbox message stays with its sender before another may retry it."""


def _clean(value: Any) -> Any:
    """JSON-safe and redacted: NaN/Inf become None, datetimes ISO strings, secrets masked."""

    def plain(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, datetime):
            return iso(v)
        if isinstance(v, timedelta):
            return v.total_seconds()
        if isinstance(v, Mapping):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, list | tuple | set | frozenset):
            return [plain(x) for x in v]
        if v is None or isinstance(v, bool | int | float | str):
            return v
        return str(v)

    return redact_value(plain(value))


def _text(value: str) -> str:
    return redact(value)


def utc(at: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes: the store only ever writes UTC."""
    if at is None:
        return None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _parse(at: str | None) -> datetime | None:
    return None if at is None else datetime.fromisoformat(at.replace("Z", "+00:00"))


def finding_to_dict(f: Finding) -> dict[str, Any]:
    out: dict[str, Any] = _clean(
        {
            "detector": f.detector,
            "severity": f.severity.value,
            "dimensions": f.dimensions,
            "title": f.title,
            "observed": f.observed,
            "expected": f.expected,
            "band": list(f.band),
            "onset": f.onset,
            "at": f.at,
            "unit": f.unit,
            "queries": [
                {"source": q.source, "query": q.query, "start": q.start, "end": q.end}
                for q in f.queries
            ],
            "details": f.details,
        }
    )
    return out


def _worst(kept: Any, f: Finding) -> dict[str, Any] | None:
    """The reading furthest from what was expected so far (``kept``: the one stored), so
    the message can say how bad it got while the latest reading says how it is now."""
    if not (math.isfinite(f.observed) and math.isfinite(f.expected)):
        return kept if isinstance(kept, dict) else None
    now = {"observed": f.observed, "expected": f.expected, "at": iso(f.at)}
    if not isinstance(kept, dict):
        return now
    try:
        was = abs(float(kept["observed"]) - float(kept["expected"]))
    except (KeyError, TypeError, ValueError):
        return now
    return now if abs(f.observed - f.expected) > was else kept


def finding_from_dict(d: Mapping[str, Any]) -> Finding:
    def num(v: Any) -> float:
        return math.nan if v is None else float(v)

    at = _parse(d["at"])
    assert at is not None
    return Finding(
        detector=d["detector"],
        severity=Severity(d["severity"]),
        dimensions=dict(d["dimensions"]),
        title=d["title"],
        observed=num(d.get("observed")),
        expected=num(d.get("expected")),
        band=(num(d["band"][0]), num(d["band"][1])),
        onset=_parse(d.get("onset")),
        at=at,
        unit=d.get("unit", ""),
        queries=tuple(
            QueryRef(q["source"], q["query"], _parse(q.get("start")), _parse(q.get("end")))
            for q in d.get("queries", [])
        ),
        details=dict(d.get("details") or {}),
    )


INCIDENT_KEY = re.compile(r"^inc-[0-9a-f]{12}$")  # the stable key (idempotency, buttons)
INCIDENT_NUMBER = re.compile(r"^inc-([1-9][0-9]{0,8})$", re.IGNORECASE)  # what people type


def incident_ref(number: int | None, key: str) -> str:
    """How people name an incident: ``INC-42``, or its key before it had a number."""
    return f"INC-{number}" if number is not None else key


@dataclass(frozen=True)
class StoredIncident:
    id: str
    detector: str
    dimensions: dict[str, str]
    title: str
    severity: Severity
    state: State
    data_problem: bool
    opened_at: datetime
    onset: datetime | None
    updated_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    mitigated_at: datetime | None
    resolved_at: datetime | None
    reopened: int
    members: dict[str, dict[str, Any]]  # member id -> {"finding": ..., "active": bool}
    evidence: Evidence  # decoded from its JSON column (empty before the first gathering)
    runbook: str | None
    slack_channel: str | None
    slack_ts: str | None
    number: int | None = None
    impact_ended_at: datetime | None = None  # the signal back in its band (before resolved)

    @property
    def ref(self) -> str:
        """``INC-42``: the short name people say, type and read."""
        return incident_ref(self.number, self.id)

    @classmethod
    def of(cls, r: IncidentRow) -> StoredIncident:
        return cls(
            id=r.id,
            number=r.number,
            impact_ended_at=utc(r.impact_ended_at),
            detector=r.detector,
            dimensions=dict(r.dimensions),
            title=r.title,
            severity=Severity(r.severity),
            state=State(r.state),
            data_problem=r.data_problem,
            opened_at=utc(r.opened_at),  # type: ignore[arg-type]
            onset=utc(r.onset),
            updated_at=utc(r.updated_at),  # type: ignore[arg-type]
            acknowledged_at=utc(r.acknowledged_at),
            acknowledged_by=r.acknowledged_by,
            mitigated_at=utc(r.mitigated_at),
            resolved_at=utc(r.resolved_at),
            reopened=r.reopened,
            members=dict(r.members),
            evidence=Evidence.from_json(r.evidence),
            runbook=r.runbook,
            slack_channel=r.slack_channel,
            slack_ts=r.slack_ts,
        )

    def as_incident(self) -> Incident:
        """The grouping's view of a stored incident (its findings, active or not)."""
        inc = Incident(
            id=self.id,
            detector=self.detector,
            dimensions=dict(self.dimensions),
            title=self.title,
            severity=self.severity,
            opened_at=self.opened_at,
            onset=self.onset,
            data_problem=self.data_problem,
            resolved_at=self.resolved_at if self.state is State.resolved else None,
            reopened=self.reopened,
            impact_ended_at=self.impact_ended_at if self.state is State.resolved else None,
        )
        for m in self.members.values():
            f = finding_from_dict(m["finding"])
            key = MemberKey.of(f)
            inc.members[key] = f
            if m.get("active"):
                inc.active[key] = f
        return inc

    @property
    def detectors(self) -> list[str]:
        """The detectors of its findings (its own when it has none)."""
        return sorted({MemberKey.detector_of(m) for m in self.members}) or [self.detector]

    def lead(self) -> tuple[Finding, dict[str, Any] | None] | None:
        """The finding that names the incident, as last read, and its worst reading so far
        (``{"observed", "expected", "at"}``); None for an incident without findings."""
        chosen = None
        for m in self.members.values():
            f = m.get("finding") or {}
            if f.get("detector") == self.detector and f.get("dimensions") == self.dimensions:
                chosen = m
                break
        chosen = chosen or next(iter(self.members.values()), None)
        if chosen is None:
            return None
        worst = chosen.get("worst")
        return finding_from_dict(chosen["finding"]), worst if isinstance(worst, dict) else None

    def active_findings(self) -> list[Finding]:
        return [finding_from_dict(m["finding"]) for m in self.members.values() if m["active"]]


@dataclass(frozen=True)
class Entry:
    at: datetime
    kind: str
    actor: str
    text: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OutboxMessage:
    id: int
    key: str
    channel: str
    kind: str
    payload: dict[str, Any]
    incident_id: str | None
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    started_at: datetime | None = None  # an earlier attempt began and recorded no outcome

    @property
    def uncertain(self) -> bool:
        """An earlier attempt may have reached the other side: it died mid-way (the process
        was killed) or failed in a way that does not say whether it arrived (a timeout)."""
        return self.started_at is not None or self.attempts > 0


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    actor: str
    action: str
    incident_id: str | None
    allowed: bool
    data: dict[str, Any]


REVIEW_STATUSES = ("draft", "changes_requested", "approved")


@dataclass(frozen=True)
class Postmortem:
    incident_id: str
    version: int
    status: str
    body: str
    author: str
    created_at: datetime
    reviewed_by: str | None = None
    reviewed_at: datetime | None = None
    review_note: str | None = None
    slack_file: str | None = None

    @classmethod
    def of(cls, r: PostmortemRow) -> Postmortem:
        return cls(
            r.incident_id,
            r.version,
            r.status,
            r.body,
            r.author,
            utc(r.created_at),  # type: ignore[arg-type]
            r.reviewed_by,
            utc(r.reviewed_at),
            r.review_note,
            r.slack_file,
        )


class StoreError(RuntimeError):
    """The store could not do what was asked (unknown incident, a bad transition...)."""


class StoreUnavailable(StoreError):
    """The store cannot be opened: missing, corrupt, read-only or refusing."""


def _shown(url: str) -> str:
    return redact(url)  # a password in it becomes [SECRET]


class Tx:
    """One transaction: everything in it is written together or not at all."""

    def __init__(self, session: Session) -> None:
        self.s = session

    def save_incident(self, inc: Incident, at: datetime) -> StoredIncident:
        """Insert or update an incident from the grouping's view (findings, severity, onset);
        the people's state (acknowledged, mitigated) is kept, resolution follows the findings."""
        row = self.s.get(IncidentRow, inc.id)
        before = dict(row.members) if row is not None else {}
        members = {
            str(k): {
                "finding": finding_to_dict(f),
                "active": k in inc.active,
                "worst": _worst((before.get(str(k)) or {}).get("worst"), f),
            }
            # an active finding's latest reading (the grouping updates ``active`` only)
            for k, f in {**inc.members, **inc.active}.items()
        }
        if row is None:
            last = self.s.scalar(select(func.max(IncidentRow.number)))
            row = IncidentRow(
                id=inc.id,
                number=(last or 0) + 1,
                detector=inc.detector,
                dimensions=_clean(inc.dimensions),
                title=_text(inc.title),
                severity=inc.severity.value,
                state=State.open.value,
                data_problem=inc.data_problem,
                opened_at=inc.opened_at,
                onset=inc.onset,
                updated_at=at,
                reopened=inc.reopened,
                members=members,
                evidence={},
            )
            self.s.add(row)
        else:
            row.severity = inc.severity.value
            row.onset = inc.onset
            row.members = members
            row.updated_at = at
            if inc.reopened > row.reopened and row.state == State.resolved.value:
                row.state = State.open.value
                row.resolved_at = None
                row.acknowledged_at = row.mitigated_at = None
                row.acknowledged_by = None
            row.reopened = max(row.reopened, inc.reopened)
        row.impact_ended_at = inc.impact_ended_at  # set as it resolves, cleared as it re-opens
        if inc.resolved_at is not None and row.state != State.resolved.value:
            row.state = State.resolved.value
            row.resolved_at = inc.resolved_at
        self.s.flush()
        return StoredIncident.of(row)

    def set_evidence(self, incident_id: str, evidence: Evidence) -> None:
        self._row(incident_id).evidence = _clean(evidence.to_json())

    def set_runbook(self, incident_id: str, runbook: str | None) -> None:
        self._row(incident_id).runbook = runbook

    def set_message(self, incident_id: str, channel: str, ts: str) -> None:
        row = self._row(incident_id)
        row.slack_channel, row.slack_ts = channel, ts

    def act(
        self, incident_id: str, action: Action, actor: str, at: datetime, note: str = ""
    ) -> State:
        """A person's (or the bot's) lifecycle action, recorded in the timeline and audit log.
        Raises ``lifecycle.TransitionError`` when it does not apply (nothing is written)."""
        row = self._row(incident_id)
        new = transition(State(row.state), action)
        row.state = new.value
        row.updated_at = at
        if new is State.acknowledged:
            row.acknowledged_at, row.acknowledged_by = at, actor
        elif new is State.mitigated:
            row.mitigated_at = at
        elif new is State.resolved:
            row.resolved_at = at
        elif new is State.open:
            row.resolved_at = None
            row.reopened += 1
        text = f"{action.value} by {actor}" + (f": {note}" if note else "")
        self.timeline(incident_id, Entry(at, action.value, actor, text))
        self.audit(actor, action.value, incident_id, at, {"note": note} if note else {})
        return new

    def timeline(self, incident_id: str, entry: Entry) -> None:
        self.s.add(
            TimelineRow(
                incident_id=incident_id,
                at=entry.at,
                kind=entry.kind,
                actor=_text(entry.actor),
                text=_text(entry.text),
                data=_clean(entry.data),
            )
        )

    def enqueue(self, msg: Outgoing, at: datetime) -> bool:
        """Add a notification unless one with the same key exists; True when added."""
        exists = self.s.scalar(select(OutboxRow.id).where(OutboxRow.idempotency_key == msg.key))
        if exists is not None:
            return False
        try:
            with self.s.begin_nested():
                self.s.add(
                    OutboxRow(
                        idempotency_key=msg.key,
                        incident_id=msg.incident_id,
                        channel=msg.channel,
                        kind=msg.kind,
                        payload=_clean(msg.payload),
                        created_at=at,
                        attempts=0,
                        next_attempt_at=at,
                        result={},
                    )
                )
        except IntegrityError:  # another replica enqueued it first
            return False
        return True

    def has_outbox(self, incident_id: str, channel: str) -> bool:
        """Whether any notification to ``channel`` was enqueued for the incident."""
        q = select(OutboxRow.id).where(
            OutboxRow.incident_id == incident_id, OutboxRow.channel == channel
        )
        return self.s.scalar(q.limit(1)) is not None

    def add_silence(self, silence: Silence) -> None:
        """A silence and its audit row (IntegrityError at commit for the same id twice)."""
        self.s.add(
            SilenceRow(
                id=silence.id,
                detector=silence.detector,
                dimensions=_clean(silence.dimensions),
                reason=_text(silence.reason),
                created_by=silence.created_by,
                created_at=silence.created_at,
                expires_at=silence.expires_at,
                incident_id=silence.incident_id,
            )
        )
        self.s.flush()  # a duplicate id fails here, before anything else is added
        self.audit(
            silence.created_by,
            "silence",
            silence.incident_id,
            silence.created_at,
            {"silence": silence.id, "reason": silence.reason, "expires_at": silence.expires_at},
        )

    def audit(
        self,
        actor: str,
        action: str,
        incident_id: str | None,
        at: datetime,
        data: Mapping[str, Any] | None = None,
        *,
        allowed: bool = True,
    ) -> None:
        self.s.add(
            AuditRow(
                at=at,
                actor=_text(actor),
                action=action,
                incident_id=incident_id,
                allowed=allowed,
                data=_clean(data or {}),
            )
        )

    def _row(self, incident_id: str) -> IncidentRow:
        row = self.s.get(IncidentRow, incident_id)
        if row is None:
            raise StoreError(f"no incident {incident_id!r}")
        return row


class Store:
    """Open with ``Store.open(url)`` (migrates to the latest schema)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def open(cls, url: str, *, create: bool = True) -> Store:
        """The store at ``url``, migrated to the latest schema. With ``create`` False a
        SQLite file that does not exist is an error rather than a new, empty store (a
        command that only reads must not make one where it was run). A store that cannot
        be opened (no such file, corrupt, read-only, a server that refuses) raises
        :class:`StoreUnavailable` naming the store, its password hidden."""
        try:
            engine = create_engine(url, pool_pre_ping=True)
        except (ArgumentError, ValueError, ImportError) as exc:
            raise StoreUnavailable(f"the store URL {_shown(url)} is not valid: {exc}") from None
        shown = engine.url.render_as_string(hide_password=True)
        if engine.dialect.name == "sqlite":
            path = engine.url.database
            if not create and path and path != ":memory:" and not Path(path).exists():
                raise StoreUnavailable(
                    f"no store at {path} (store.url {shown}): run from the directory of the "
                    "bot's store, or give its configuration with --config"
                )
            event.listen(engine, "connect", _sqlite_pragmas)
        store = cls(engine)
        try:
            store.migrate()
        except SQLAlchemyError as exc:
            engine.dispose()
            why = str(getattr(exc, "orig", None) or exc).splitlines()[0]
            raise StoreUnavailable(f"the store {shown} cannot be used: {why}") from None
        return store

    def migrate(self) -> None:
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(files("paytriage.store") / "migrations"))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def begin(self) -> Iterator[Tx]:
        with self._sessions.begin() as session:
            yield Tx(session)

    # -- reading --------------------------------------------------------------------------

    def incident(self, incident_id: str) -> StoredIncident | None:
        with self._sessions() as s:
            row = s.get(IncidentRow, incident_id)
            return None if row is None else StoredIncident.of(row)

    def find(self, ref: str) -> StoredIncident | None:
        """The incident a person named: ``INC-42`` (any case) or its key ``inc-<hex>``."""
        text = ref.strip()
        m = INCIDENT_NUMBER.fullmatch(text)
        if m is not None:
            with self._sessions() as s:
                row = s.scalars(
                    select(IncidentRow).where(IncidentRow.number == int(m.group(1)))
                ).first()
                return None if row is None else StoredIncident.of(row)
        key = text.lower()
        return self.incident(key) if INCIDENT_KEY.fullmatch(key) else None

    def incidents(self, *, open_only: bool = False, limit: int = 100) -> list[StoredIncident]:
        with self._sessions() as s:
            q = select(IncidentRow).order_by(IncidentRow.opened_at.desc()).limit(limit)
            if open_only:
                q = q.where(IncidentRow.state != State.resolved.value)
            return [StoredIncident.of(r) for r in s.scalars(q)]

    def by_thread(self, ts: str, channel: str | None = None) -> StoredIncident | None:
        """The incident whose Slack message is ``ts`` (in ``channel`` when given)."""
        with self._sessions() as s:
            q = select(IncidentRow).where(IncidentRow.slack_ts == ts)
            if channel is not None:
                q = q.where(IncidentRow.slack_channel == channel)
            row = s.scalars(q.limit(1)).first()
            return None if row is None else StoredIncident.of(row)

    def timeline(self, incident_id: str) -> list[Entry]:
        with self._sessions() as s:
            q = (
                select(TimelineRow)
                .where(TimelineRow.incident_id == incident_id)
                .order_by(TimelineRow.at, TimelineRow.id)
            )
            return [
                Entry(utc(r.at), r.kind, r.actor, r.text, dict(r.data))  # type: ignore[arg-type]
                for r in s.scalars(q)
            ]

    def audit_log(self, incident_id: str | None = None) -> list[AuditEntry]:
        with self._sessions() as s:
            q = select(AuditRow).order_by(AuditRow.id)
            if incident_id is not None:
                q = q.where(AuditRow.incident_id == incident_id)
            return [
                AuditEntry(utc(r.at), r.actor, r.action, r.incident_id, r.allowed, dict(r.data))  # type: ignore[arg-type]
                for r in s.scalars(q)
            ]

    # -- silences -------------------------------------------------------------------------

    def add_silence(self, silence: Silence) -> None:
        with self.begin() as tx:
            tx.add_silence(silence)

    def end_silence(self, silence_id: str, actor: str, at: datetime) -> None:
        with self.begin() as tx:
            row = tx.s.get(SilenceRow, silence_id)
            if row is None:
                raise StoreError(f"no silence {silence_id!r}")
            row.ended_at = at
            tx.audit(actor, "unsilence", row.incident_id, at, {"silence": silence_id})

    def silences(self, at: datetime | None = None) -> list[Silence]:
        """Every silence, or those active at ``at`` (silences until resolution included while
        their incident is open)."""
        with self._sessions() as s:
            rows = list(s.scalars(select(SilenceRow).order_by(SilenceRow.created_at)))
            resolved = set(
                s.scalars(select(IncidentRow.id).where(IncidentRow.state == State.resolved.value))
            )
        out = [
            Silence(
                id=r.id,
                detector=r.detector,
                dimensions=dict(r.dimensions),
                reason=r.reason,
                created_by=r.created_by,
                created_at=utc(r.created_at),  # type: ignore[arg-type]
                expires_at=utc(r.expires_at),
                incident_id=r.incident_id,
                ended_at=utc(r.ended_at),
            )
            for r in rows
        ]
        return out if at is None else [x for x in out if x.active(at, resolved)]

    # -- outbox ---------------------------------------------------------------------------

    def due(
        self,
        at: datetime,
        limit: int = 50,
        receiver: str | None = None,
        claim_ttl: timedelta = CLAIM_TTL,
    ) -> list[OutboxMessage]:
        """Unsent notifications whose time has come, oldest first (per incident in order);
        with ``receiver``, only those to its channels (``slack`` or ``slack:<channel>``): the
        limit applies to that receiver's messages, so another receiver's backlog never
        hides them.

        A message claimed by a sender (:meth:`claim`) is not due again until ``claim_ttl``
        after its claim: the sender that holds it is still working on it, or died.
        """
        stale = at - claim_ttl
        with self._sessions() as s:
            q = (
                select(OutboxRow)
                .where(
                    OutboxRow.sent_at.is_(None),
                    OutboxRow.failed_at.is_(None),
                    OutboxRow.next_attempt_at <= at,
                    or_(OutboxRow.started_at.is_(None), OutboxRow.started_at <= stale),
                )
                .order_by(OutboxRow.id)
                .limit(limit)
            )
            if receiver is not None:
                q = q.where(
                    or_(
                        OutboxRow.channel == receiver,
                        OutboxRow.channel.startswith(f"{receiver}:", autoescape=True),
                    )
                )
            return [
                OutboxMessage(
                    r.id,
                    r.idempotency_key,
                    r.channel,
                    r.kind,
                    dict(r.payload),
                    r.incident_id,
                    r.attempts,
                    utc(r.created_at),  # type: ignore[arg-type]
                    utc(r.next_attempt_at),  # type: ignore[arg-type]
                    utc(r.started_at),
                )
                for r in s.scalars(q)
            ]

    def claim(
        self, msg: OutboxMessage, holder: str, at: datetime, claim_ttl: timedelta = CLAIM_TTL
    ) -> bool:
        """Take ``msg`` for one attempt, atomically: False when another sender has it (or it
        was sent meanwhile). The claim is committed before the attempt, so an attempt that
        dies half-way leaves the message marked uncertain for whoever retries it."""
        with self.begin() as tx:
            res = tx.s.execute(
                update(OutboxRow)
                .where(
                    OutboxRow.id == msg.id,
                    OutboxRow.sent_at.is_(None),
                    OutboxRow.failed_at.is_(None),
                    or_(OutboxRow.started_at.is_(None), OutboxRow.started_at <= at - claim_ttl),
                )
                .values(started_at=at, claimed_by=holder[:128])
            )
            return bool(getattr(res, "rowcount", 0) == 1)

    def last_thread_reply(
        self, incident_id: str, changes: Collection[str], scan: int = 50
    ) -> datetime | None:
        """When a sender last posted one of ``changes`` in the incident's thread (as its
        result records), looking at the incident's ``scan`` latest sent messages: any
        replica's, so a new leader keeps to the rate of the one before."""
        with self._sessions() as s:
            rows = s.execute(
                select(OutboxRow.sent_at, OutboxRow.result)
                .where(OutboxRow.incident_id == incident_id, OutboxRow.sent_at.is_not(None))
                .order_by(OutboxRow.sent_at.desc(), OutboxRow.id.desc())
                .limit(scan)
            )
            for sent_at, result in rows:
                if isinstance(result, Mapping) and result.get("thread") in changes:
                    return utc(sent_at) if isinstance(sent_at, datetime) else None
        return None

    def mark_sent(self, message_id: int, at: datetime, result: Mapping[str, Any]) -> None:
        with self.begin() as tx:
            row = tx.s.get(OutboxRow, message_id)
            if row is None:
                raise StoreError(f"no outbox message {message_id}")
            row.sent_at, row.result = at, _clean(result)
            row.attempts += 1
            row.started_at = row.claimed_by = None

    def mark_failed(
        self, message_id: int, at: datetime, error: str, retry_at: datetime | None
    ) -> None:
        """Record a failed attempt: retried at ``retry_at``, or given up when None."""
        with self.begin() as tx:
            row = tx.s.get(OutboxRow, message_id)
            if row is None:
                raise StoreError(f"no outbox message {message_id}")
            row.attempts += 1
            row.started_at = row.claimed_by = None
            row.last_error = _text(error)[:2000]
            if retry_at is None:
                row.failed_at = at
            else:
                row.next_attempt_at = retry_at

    # -- postmortems ---------------------------------------------------------------------

    def add_postmortem(self, incident_id: str, body: str, author: str, at: datetime) -> Postmortem:
        """A new version of the incident's draft (redacted), status ``draft``; audited."""
        with self.begin() as tx:
            tx._row(incident_id)
            last = tx.s.scalar(
                select(PostmortemRow.version)
                .where(PostmortemRow.incident_id == incident_id)
                .order_by(PostmortemRow.version.desc())
                .limit(1)
            )
            row = PostmortemRow(
                incident_id=incident_id,
                version=(last or 0) + 1,
                status="draft",
                body=_text(body),
                author=_text(author),
                created_at=at,
            )
            tx.s.add(row)
            tx.audit(author, "postmortem.version", incident_id, at, {"version": row.version})
            tx.s.flush()
            return Postmortem.of(row)

    def postmortems(self, incident_id: str) -> list[Postmortem]:
        """Every version, oldest first."""
        with self._sessions() as s:
            q = (
                select(PostmortemRow)
                .where(PostmortemRow.incident_id == incident_id)
                .order_by(PostmortemRow.version)
            )
            return [Postmortem.of(r) for r in s.scalars(q)]

    def review_postmortem(
        self,
        incident_id: str,
        version: int,
        status: str,
        actor: str,
        at: datetime,
        note: str = "",
    ) -> Postmortem:
        """Approve a version or request changes to it (audited); only the latest version
        can be reviewed, and an approved one stays approved."""
        if status not in REVIEW_STATUSES[1:]:
            raise StoreError(f"review status must be one of {REVIEW_STATUSES[1:]}, not {status!r}")
        with self.begin() as tx:
            rows = list(
                tx.s.scalars(
                    select(PostmortemRow)
                    .where(PostmortemRow.incident_id == incident_id)
                    .order_by(PostmortemRow.version.desc())
                )
            )
            row = next((r for r in rows if r.version == version), None)
            if row is None:
                raise StoreError(f"no postmortem version {version} for {incident_id!r}")
            if rows[0].version != version:
                raise StoreError(
                    f"version {version} is not the latest ({rows[0].version}): review that one"
                )
            if row.status == "approved":
                raise StoreError(f"version {version} is approved already")
            row.status, row.reviewed_by, row.reviewed_at = status, _text(actor), at
            row.review_note = _text(note) if note else None
            tx.audit(
                actor, f"postmortem.{status}", incident_id, at, {"version": version, "note": note}
            )
            tx.s.flush()
            return Postmortem.of(row)

    def set_postmortem_file(self, incident_id: str, version: int, file_id: str) -> None:
        with self.begin() as tx:
            row = tx.s.scalar(
                select(PostmortemRow).where(
                    PostmortemRow.incident_id == incident_id, PostmortemRow.version == version
                )
            )
            if row is None:
                raise StoreError(f"no postmortem version {version} for {incident_id!r}")
            row.slack_file = file_id

    def outbox_depth(self) -> int:
        return len(self.due(datetime.max.replace(tzinfo=UTC), limit=10_000))


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


def dumps(value: Any) -> str:
    """The JSON the store would write (tests and the CLI print it)."""
    return json.dumps(_clean(value), sort_keys=True)


__all__ = [
    "REVIEW_STATUSES",
    "Entry",
    "OutboxMessage",
    "Outgoing",
    "Postmortem",
    "Store",
    "StoreError",
    "StoredIncident",
    "Tx",
    "dumps",
    "finding_from_dict",
    "finding_to_dict",
]
