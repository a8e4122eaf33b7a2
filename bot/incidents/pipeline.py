"""From detector events to durable incidents with evidence, a runbook and notifications.

``IncidentPipeline.step`` takes what the detectors raised and cleared at one evaluation
(the live scheduler's cycle, or one step of a replay) and, for each incident it touches:

1. groups the findings (``paytriage.domain.incidents``): open, join, relapse, resolve;
2. gathers evidence when an incident opens or re-opens, and refreshes it every
   ``evidence.refresh_every`` while it is open; matches its runbook;
3. writes the incident, its new timeline entries, evidence and runbook, and the
   notifications they cause, in one transaction (durable before visible: senders work off
   the outbox, each message under an idempotency key, so a restart never posts twice);
4. asks silences and maintenance windows first: a suppressed notification is not enqueued,
   and the timeline says why (the incident itself is always recorded).

After a restart, ``restore`` takes the open incidents back from the store. Their findings
are expected to be raised again by the detectors (which read persistence from the data); a
finding that is not raised again within its detector's ``for`` + ``clear_after`` clears, so
an incident whose problem ended while the bot was down resolves instead of staying open.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from paytriage.core.logs import log_context
from paytriage.detection.run import Event, EventKind
from paytriage.detectors.signals import Frame
from paytriage.domain.evidence import ChartSection, Evidence, RunbookSection
from paytriage.domain.findings import Finding
from paytriage.domain.incidents import Grouper, Incident, MemberKey, TimelineEntry, TimelineKind
from paytriage.domain.lifecycle import Maintenance, Silence, State, suppressed_by
from paytriage.domain.notifications import (
    BOT,
    KIND_OF_CHANGE,
    PAGERDUTY,
    Change,
    Channel,
    Kind,
    change_message,
    page_message,
)
from paytriage.evidence.gather import Gathered, lead_finding, save_chart
from paytriage.incidents.runbooks import Runbook, match
from paytriage.store import Entry, Store, Tx

log = logging.getLogger(__name__)

# The changes after which an open incident's evidence is gathered again.
GATHERS = frozenset({Change.OPENED, Change.REOPENED, Change.REFRESHED, Change.JOINED})


@dataclass
class StepReport:
    """What one step did, per incident id (tests, logs and the bot's metrics read it)."""

    changes: dict[str, list[Change]] = field(default_factory=dict)
    suppressed: dict[str, str] = field(default_factory=dict)
    enqueued: list[str] = field(default_factory=list)

    def ids(self, change: Change) -> list[str]:
        return [i for i, cs in self.changes.items() if change in cs]


Router = Callable[[Incident], Channel | None]


class Gatherer(Protocol):
    """Evidence for an incident at ``at`` (``paytriage.evidence.gather.EvidenceGatherer``)."""

    def gather(
        self,
        inc: Incident,
        at: datetime,
        frames: Mapping[str, Frame] | None = None,
        active: Sequence[Finding] = (),
    ) -> Gathered: ...


@dataclass
class IncidentPipeline:
    store: Store
    gatherer: Gatherer | None
    runbooks: Sequence[Runbook]
    correlation_window: timedelta
    reopen_within: timedelta
    refresh_every: timedelta = timedelta(minutes=5)
    chart_dir: Path | None = None
    runbook_base_url: str | None = None
    pinned_runbooks: Mapping[str, str | None] = field(default_factory=dict)
    quiet_after_restart: Mapping[str, timedelta] = field(default_factory=dict)
    maintenance: Sequence[Maintenance] = ()
    channel: Router | None = None  # where an incident's notifications go (None: nowhere)
    page: Callable[[Incident], bool] | None = None  # whether an incident pages (PagerDuty)

    def __post_init__(self) -> None:
        self.grouper = Grouper(self.correlation_window, self.reopen_within)
        self._timeline_done: dict[str, int] = {}
        self._refreshed: dict[str, datetime] = {}
        self._gathers: dict[str, int] = {}
        self._pinned: dict[str, tuple[str | None, RunbookSection]] = {}  # the runbook paged with
        self._restored: dict[MemberKey, tuple[Finding, datetime]] = {}

    # -- restart ----------------------------------------------------------------------------

    def restore(self, at: datetime) -> list[str]:
        """Take the store's open incidents back; returns their ids."""
        ids = []
        for row in self.store.incidents(open_only=True, limit=10_000):
            inc = row.as_incident()
            if inc.declared:
                continue  # a person's incident: no finding of the grouping's clears it
            self.grouper.adopt(inc)
            self._timeline_done[inc.id] = len(inc.timeline)
            self._gathers[inc.id] = row.evidence.version
            if row.evidence.runbook is not None:
                self._pinned[inc.id] = (row.runbook, row.evidence.runbook)
            if row.evidence.gathered_at is not None:
                self._refreshed[inc.id] = row.evidence.gathered_at
            for key, f in inc.active.items():
                grace = self.quiet_after_restart.get(f.detector, timedelta(minutes=15))
                self._restored[key] = (f, at + grace)
            ids.append(inc.id)
        if ids:
            log.info("restored %d open incident(s) from the store", len(ids))
        return ids

    # -- one evaluation ---------------------------------------------------------------------

    def step(
        self,
        events: Iterable[Event],
        active: Sequence[Finding],
        at: datetime,
        frames: Mapping[str, Frame] | None = None,
    ) -> StepReport:
        report = StepReport()
        touched: dict[str, Incident] = {}

        def note(inc: Incident, change: Change) -> None:
            touched[inc.id] = inc
            report.changes.setdefault(inc.id, [])
            if change not in report.changes[inc.id]:
                report.changes[inc.id].append(change)

        for e in sorted(events, key=lambda e: e.at):
            if e.kind == EventKind.RAISED:
                self._restored.pop(MemberKey.of(e.finding), None)
                before = self.grouper.incident_of(e.finding)
                was_open = before is not None and before.is_open
                severities = {i.id: i.severity for i in self.grouper.incidents}
                inc = self.grouper.raised(e.finding, e.at)
                severity = severities.get(inc.id)
                if severity is None:
                    note(inc, Change.OPENED)
                elif inc is before and not was_open:
                    note(inc, Change.REOPENED)
                elif inc is not before:
                    note(inc, Change.JOINED)
                if severity is not None and inc.severity.rank > severity.rank:
                    note(inc, Change.SEVERITY)
            elif e.kind == EventKind.CLEARED:
                self._restored.pop(MemberKey.of(e.finding), None)
                cleared = self.grouper.cleared(e.finding, e.at)
                if cleared is not None:
                    touched[cleared.id] = cleared
                    if not cleared.is_open:
                        note(cleared, Change.RESOLVED)
        for f in active:
            current = self.grouper.incident_of(f)
            if current is None or not current.is_open:
                continue
            severity = current.severity
            self.grouper.updated(f)
            if current.severity.rank > severity.rank:
                note(current, Change.SEVERITY)
        for key, (f, deadline) in list(self._restored.items()):
            if at >= deadline:
                del self._restored[key]
                owner = self.grouper.incident_of(f)
                if owner is not None and owner.is_open:
                    what = f"{f.detector} not raised again since the restart"
                    owner.timeline.append(TimelineEntry(at, TimelineKind.NOT_RAISED_AGAIN, what))
                gone = self.grouper.cleared(f, at)
                if gone is not None:
                    touched[gone.id] = gone
                    if not gone.is_open:
                        note(gone, Change.RESOLVED)
        for inc in self.grouper.incidents:
            last = self._refreshed.get(inc.id)
            if inc.is_open and inc.id not in touched and last and at - last >= self.refresh_every:
                note(inc, Change.REFRESHED)
        for gone in self.grouper.prune(at):
            for d in (self._timeline_done, self._refreshed, self._gathers, self._pinned):
                d.pop(gone.id, None)
        silences = self.store.silences(at) if touched else []
        for inc in touched.values():
            try:
                with log_context(incident_id=inc.id):
                    changes = report.changes.get(inc.id, [])
                    self._persist(inc, changes, at, active, frames, report, silences)
            except Exception:
                # One incident's failure (a store error) must not lose the others' updates;
                # its state stays in memory and is written on the next step that touches it.
                log.exception("incident %s could not be saved", inc.id)
        return report

    # -- writing ----------------------------------------------------------------------------

    def _persist(
        self,
        inc: Incident,
        changes: list[Change],
        at: datetime,
        active: Sequence[Finding],
        frames: Mapping[str, Frame] | None,
        report: StepReport,
        silences: Sequence[Silence],
    ) -> None:
        evidence: Evidence | None = None
        runbook: tuple[str | None, RunbookSection] | None = None
        if inc.is_open and GATHERS & set(changes):
            evidence = self._evidence(inc, at, active, frames)
            self._refreshed[inc.id] = at
        if evidence is not None or Change.OPENED in changes:
            runbook = self._runbook(inc)  # chosen once, kept with every evidence version
            if evidence is not None:
                evidence = replace(evidence, runbook=runbook[1])

        stored_before = self.store.incident(inc.id)
        with self.store.begin() as tx:
            stored = tx.save_incident(inc, at)
            done = self._timeline_done.get(inc.id, 0)
            for t in inc.timeline[done:]:
                tx.timeline(inc.id, Entry(t.at, t.kind, t.by, t.what))
            if evidence is not None:
                tx.set_evidence(inc.id, evidence)
            if runbook is not None and Change.OPENED in changes:
                tx.set_runbook(inc.id, runbook[0])
            kinds: set[Kind] = set()
            for change in changes:
                kind = KIND_OF_CHANGE[change]
                if kind in kinds:
                    continue  # joined and more severe in one step: one update
                kinds.add(kind)
                if (
                    change == Change.RESOLVED
                    and stored_before is not None
                    and (stored_before.state is State.resolved)
                ):
                    continue  # resolved by a person already: nothing new to tell
                why = suppressed_by(
                    inc.detector, inc.dimensions, inc.id, at, silences, self.maintenance
                )
                channel = self.channel(inc) if self.channel is not None else None
                if why is not None:
                    report.suppressed[inc.id] = why
                    tx.timeline(
                        inc.id,
                        Entry(at, TimelineKind.SUPPRESSED, BOT, f"{kind} not sent: {why}"),
                    )
                    continue
                if self.page is not None:
                    self._page(tx, inc, change, at, report)
                if channel is None:
                    continue
                msg = change_message(
                    inc.id,
                    change,
                    channel,
                    title=inc.title,
                    severity=inc.severity.value,
                    state=stored.state.value,
                    at=at,
                    reopened=inc.reopened,
                )
                if tx.enqueue(msg, at):
                    report.enqueued.append(msg.key)
        self._timeline_done[inc.id] = len(inc.timeline)

    def _page(
        self, tx: Tx, inc: Incident, change: Change, at: datetime, report: StepReport
    ) -> None:
        """Trigger PagerDuty when a paging incident opens or re-opens; resolve it with the
        incident when it was paged (automatically or by someone pressing Escalate)."""
        assert self.page is not None
        if change in (Change.OPENED, Change.REOPENED) and self.page(inc):
            action = "trigger"
        elif change == Change.RESOLVED and tx.has_outbox(inc.id, str(PAGERDUTY)):
            action = "resolve"
        else:
            return
        msg = page_message(inc.id, action, reopened=inc.reopened, at=at)
        if tx.enqueue(msg, at):
            report.enqueued.append(msg.key)

    def _evidence(
        self,
        inc: Incident,
        at: datetime,
        active: Sequence[Finding],
        frames: Mapping[str, Frame] | None,
    ) -> Evidence:
        version = self._gathers.get(inc.id, 0) + 1
        self._gathers[inc.id] = version
        if self.gatherer is None:
            return Evidence(version, gathered_at=at, missing="no evidence sources")
        try:
            got = self.gatherer.gather(inc, at, frames, active)
        except Exception as exc:  # evidence is help, never a reason to lose the incident
            log.exception("evidence for %s could not be gathered", inc.id)
            return Evidence(version, gathered_at=at, missing=f"failed: {exc}")
        ev = replace(got.evidence, version=version)
        if got.chart is not None and self.chart_dir is not None:
            try:
                path = save_chart(self.chart_dir, inc.id, version, got.chart)
                ev = replace(ev, chart=ChartSection(True, path=str(path)))
            except OSError as exc:
                ev = replace(ev, chart=ChartSection(False, missing=f"could not be written: {exc}"))
        return ev

    def _runbook(self, inc: Incident) -> tuple[str | None, RunbookSection]:
        """The runbook the incident was paged with, matched once on the finding that opened
        it: later findings (a recovering slice reads as issuer declines as a PSP outage
        ends; another detector joins) never swap it. After a restart it is the stored one."""
        pinned = self._pinned.get(inc.id)
        if pinned is None:
            pinned = self._pinned[inc.id] = self._match_runbook(inc)
        return pinned

    def _match_runbook(self, inc: Incident) -> tuple[str | None, RunbookSection]:
        lead = inc.first or lead_finding(inc)
        details = dict(lead.details)
        if inc.data_problem:
            details.setdefault("kind", "data_problem")
        m = match(
            self.runbooks,
            inc.detector,
            inc.dimensions,
            details,
            pinned=self.pinned_runbooks.get(inc.detector),
        )
        if m.runbook is None:
            return None, RunbookSection(None, reason=m.reason)
        rb = m.runbook
        # Every step by heading, escalation and queries, filled in for the incident's slice.
        return rb.id, rb.for_incident(
            inc.dimensions, base_url=self.runbook_base_url, reason=m.reason
        )


__all__ = ["IncidentPipeline", "StepReport"]
