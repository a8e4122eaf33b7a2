"""Postmortem drafts: the facts of one incident, and the Markdown draft people finish.

Pure functions over what the store keeps (the incident with its evidence, its timeline and
its audit log) and the time. :func:`postmortem_facts` computes the figures (duration, time to
detect, acknowledge, mitigate and resolve, failed payments, excess, amount at risk, who and
what was affected), each with the queries and windows that produced it (``Citation``), and
lists evidence-based *hypotheses* for people to confirm. It never makes a number up: what the
evidence lacks is "unknown", with the reason. :func:`render_postmortem` renders the facts
through a Jinja2 template (``templates/postmortem.md.j2`` or a replacement) in a sandbox.

Markdown safety. Every value a template prints (``{{ ... }}``) passes the environment's
``finalize`` hook: it is redacted, then escaped for Markdown, so a log line can neither forge
a link nor open a heading, a list, a table or a code block. Text this module built itself
and trusts is marked :class:`Raw` and printed as it is (escaped table cells, fenced queries,
a figure with its appendix references, macro output). The whole draft is redacted again at
the end.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, TypeVar

from jinja2 import BaseLoader, StrictUndefined, TemplateError, TemplateNotFound, TemplateSyntaxError
from jinja2.runtime import Context, Macro
from jinja2.sandbox import ImmutableSandboxedEnvironment

from paytriage.core.redact import redact as redact_text
from paytriage.detectors import REGISTRY
from paytriage.domain.evidence import (
    BreakdownSection,
    ChangeItem,
    ChangesSection,
    Evidence,
    FindingItem,
    ImpactSection,
    LogsSection,
    PatternItem,
    TopValue,
)
from paytriage.domain.findings import QueryRef, slice_text
from paytriage.evidence.impact import (
    format_count,
    format_measure,
    format_money,
    format_percent,
    format_window,
)
from paytriage.store import Entry, Postmortem, StoredIncident
from paytriage.store.store import AuditEntry

DEFAULT_TEMPLATE = Path(__file__).resolve().parents[2] / "templates" / "postmortem.md.j2"
"""The template shipped in the repository (``templates/postmortem.md.j2``)."""

BOT = "paytriage"
STORE = "store"
"""The ``source`` of a citation that is a record of the incident store, not a query."""

QUERY_LANGUAGES = {"prometheus": "promql", "opensearch": "json"}
SOURCE_NAMES = {
    "prometheus": "Prometheus (PromQL)",
    "opensearch": "OpenSearch",
    STORE: "Incident store record",
}
DIMENSION_LABELS = {
    "merchant": "Merchants",
    "country": "Countries",
    "psp": "PSPs",
    "method": "Payment methods",
}
"""The dimensions the impact section always reports on, in this order (others follow)."""
NOT_AFFECTED = frozenset({"reason"})  # a decline reason is a symptom, not who was affected


def redact(text: str) -> str:
    """``paytriage.core.redact.redact``: cards, CVVs, e-mails, tokens, secrets, IBANs."""
    return redact_text(text)


class PostmortemError(Exception):
    """The draft could not be rendered: the message names the template and, when known, the
    line (a syntax error, an undefined variable, a sandbox violation, an unreadable file)."""

    def __init__(self, template: str, problem: str, line: int | None = None) -> None:
        self.template = template
        self.line = line
        self.problem = problem
        where = f"{template}, line {line}" if line is not None else template
        super().__init__(f"postmortem template {where}: {problem}")


# -- Markdown safety ------------------------------------------------------------------------


class Raw(str):
    """Markdown this module built and trusts: printed by templates without escaping.

    Only code creates it; ``str`` operations on it (``+``, ``~``, ``upper``...) give plain
    strings again, which are escaped when printed.
    """

    __slots__ = ()


_MD_SPECIAL = frozenset("\\`*_{}[]<>#+-!|~")
_NEWLINES = re.compile(r"\r\n|\r|\n|\u2028|\u2029|\x0b|\x0c|\x85")
_ORDERED_ITEM = re.compile(r"^(\d{1,9})([.)])")


def escape_markdown(text: str) -> str:
    """``text`` as Markdown that shows exactly ``text`` and starts nothing.

    Backslash, backtick and ``* _ { } [ ] < > # + - ! | ~`` are backslash-escaped everywhere.
    On each line, surrounding whitespace is dropped (indentation would make a code block, two
    trailing spaces a line break) and a leading ``1.``/``1)`` (ordered list) or ``=`` (setext
    heading) is escaped; blank lines are dropped, so a value never ends the paragraph, list
    item or table it is printed in.
    """
    lines = []
    for line in _NEWLINES.split(text):
        line = line.strip()
        if not line:
            continue
        escaped = "".join("\\" + c if c in _MD_SPECIAL else c for c in line)
        escaped = _ORDERED_ITEM.sub(r"\1\\\2", escaped)
        if escaped.startswith("="):
            escaped = "\\" + escaped
        lines.append(escaped)
    return "\n".join(lines)


def _plain(value: object) -> str:
    """A value as the text people read (before redaction and escaping)."""
    if value is None:
        return "unknown"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, timedelta):
        return format_window(value)
    return str(value)


def md(value: object) -> Raw:
    """Any value made safe for Markdown: redacted, then escaped (see ``escape_markdown``);
    a figure or hypothesis shows its text and its appendix references."""
    if isinstance(value, Raw):
        return value
    if isinstance(value, Figure | Hypothesis):
        return value.markdown()
    return Raw(escape_markdown(redact(_plain(value))))


def table_cell(value: object) -> Raw:
    """A value for a table cell: escaped like :func:`md` (pipes included), line breaks as
    ``<br>``, never empty."""
    return Raw(md(value).replace("\n", "<br>") or " ")


def fenced(text: object, language: str = "") -> Raw:
    """``text`` (redacted) as a fenced code block whose fence is longer than any run of
    backticks inside, so nothing in it can close the block early."""
    body = "\n".join(_NEWLINES.split(redact(_plain(text)))).strip("\n")
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    fence = "`" * max(3, longest + 1)
    lang = language if re.fullmatch(r"[A-Za-z0-9_+-]*", language) else ""
    return Raw(f"{fence}{lang}\n{body}\n{fence}")


def inline_code(text: object) -> Raw:
    """``text`` (redacted, on one line) as a code span delimited by more backticks than any
    run inside. Not for table cells (a ``|`` would still split the cell): use ``cell``."""
    body = " ".join(_NEWLINES.split(redact(_plain(text))))
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    ticks = "`" * (longest + 1)
    if body.startswith(("`", " ")) or body.endswith(("`", " ")):
        body = f" {body} "
    return Raw(f"{ticks}{body}{ticks}")


def format_time(at: datetime | None) -> str:
    """``2026-11-16 09:05 UTC``; "unknown" for None."""
    if at is None:
        return "unknown"
    return f"{_utc(at):%Y-%m-%d %H:%M} UTC"


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _finalize(value: object) -> str:
    """What ``{{ ... }}`` prints: trusted Markdown as it is, anything else escaped."""
    return str(md(value))


# -- facts ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Citation:
    """A figure (``label``: ``value_text``) and one query or record behind it, with the window
    it covered. ``source`` is ``prometheus``, ``opensearch`` or ``store`` (a record of the
    incident store; ``query`` then says which, ``end`` when)."""

    label: str
    value_text: str
    source: str
    query: str
    start: datetime | None
    end: datetime | None

    @property
    def is_query(self) -> bool:
        return self.source != STORE

    @property
    def language(self) -> str:
        return QUERY_LANGUAGES.get(self.source, "")

    @property
    def source_name(self) -> str:
        return SOURCE_NAMES.get(self.source, self.source)

    @property
    def window(self) -> Raw:
        """``2026-11-16 08:57 UTC → 2026-11-16 09:10 UTC (13 min)``, or what is known (only
        times: Markdown as it is)."""
        if self.start is not None and self.end is not None:
            return Raw(
                f"{format_time(self.start)} → {format_time(self.end)} "
                f"({format_window(self.end - self.start)})"
            )
        if self.end is not None:
            return Raw(f"at {format_time(self.end)}")
        if self.start is not None:
            return Raw(f"from {format_time(self.start)}")
        return Raw("window not recorded")


class _Src(NamedTuple):
    """A query (or store record) and its window, before it backs a figure."""

    source: str
    query: str
    start: datetime | None
    end: datetime | None


Group = tuple[_Src, ...]
"""Queries read together (an evidence section's): one appendix entry."""


def _refs_markdown(refs: Sequence[str]) -> str:
    return f" [{', '.join(refs)}]" if refs else ""


@dataclass(frozen=True)
class Figure:
    """A number (or a statement built on numbers) in the draft.

    ``text`` is plain text ("1,820 of 6,000 attempts in 13 min", or "unknown (why)");
    ``value`` the number when there is one; ``refs`` the appendix entries holding its
    ``citations`` ("E2"), empty when nothing backs it (unknown, or a plain fact such as the
    incident's own slice). A template printing a figure gets its escaped text and ``[E2]``.
    """

    key: str
    label: str
    text: str
    value: float | None = None
    citations: tuple[Citation, ...] = ()
    refs: tuple[str, ...] = ()

    @property
    def known(self) -> bool:
        return not self.text.startswith("unknown")

    def markdown(self) -> Raw:
        return Raw(escape_markdown(redact(self.text)) + _refs_markdown(self.refs))


@dataclass(frozen=True)
class Hypothesis:
    """What the evidence suggests, for people to confirm or reject: never a conclusion."""

    kind: str  # "the likeliest change", "the top rising log pattern", ...
    label: str
    text: str
    citations: tuple[Citation, ...] = ()
    refs: tuple[str, ...] = ()

    def markdown(self) -> Raw:
        return Raw(escape_markdown(redact(self.text)) + _refs_markdown(self.refs))


@dataclass(frozen=True)
class Backed:
    """A figure an appendix entry backs."""

    label: str
    text: str


@dataclass(frozen=True)
class AppendixEntry:
    """One group of queries (or a store record) and every figure it backs."""

    ref: str
    citations: tuple[Citation, ...]  # one per query, labelled with the first figure citing it
    backs: tuple[Backed, ...]


@dataclass(frozen=True)
class TimelineRow:
    at: datetime
    actor: str
    kind: str
    text: str


@dataclass(frozen=True)
class ActionItem:
    """An action item the draft proposes, with its type: ``repair`` (undo the damage, e.g.
    a money follow-up), ``investigate``, ``prevent``, ``detect`` or ``mitigate``. Owners and
    due dates are for people to set."""

    text: str
    type: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class FollowUp:
    """A money follow-up: what to reconcile, retry or tell someone, chosen by detector."""

    detector: str
    title: str
    detail: str


@dataclass(frozen=True)
class RunbookNote:
    id: str | None
    title: str | None
    link: str | None
    reason: str | None
    steps: tuple[str, ...] = ()

    @property
    def markdown_link(self) -> Raw:
        """``[title](https://...)`` for a web link, else the escaped title and location."""
        title = md(self.title or self.id or "runbook")
        if self.link and re.fullmatch(r"https?://[^\s<>()\[\]`\\]+", self.link):
            return Raw(f"[{title}]({redact(self.link)})")
        return Raw(f"{title} ({md(self.link)})") if self.link else title


@dataclass(frozen=True)
class EvidenceNotes:
    """What the evidence says, section by section. ``missing`` maps a section ("breakdown",
    "logs", "changes") to why it is not there."""

    window: tuple[datetime, datetime] | None
    gathered_at: datetime | None
    findings: tuple[Figure, ...] = ()
    breakdown: tuple[Figure, ...] = ()
    log_patterns: tuple[Figure, ...] = ()
    error_codes: tuple[Figure, ...] = ()
    changes: tuple[Figure, ...] = ()
    concurrent: tuple[str, ...] = ()
    chart: str = "missing"
    runbook: RunbookNote | None = None
    missing: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PostmortemFacts:
    """Everything a postmortem draft states, from the store; nothing guessed.

    Times are UTC. ``duration`` runs from the onset (else the detection) to the resolution
    (else ``now``, and ``ongoing``). Time to detect is onset → detection; to acknowledge,
    detection → first acknowledgement; to mitigate and to resolve, onset (else detection) →
    first mitigation / resolution; None when the store does not have them. ``figures`` holds
    the headline figures by key (``duration``, ``failed``, ``excess``, ``amount``, ``onset``,
    ``detected``, ``time_to_detect``, ``time_to_acknowledge``, ``time_to_mitigate``,
    ``time_to_resolve``), ``affected`` one figure per dimension ("merchant", "country",
    "psp", "method", then any other of the incident's); every backed figure cites its
    queries in ``appendix``.
    """

    incident_id: str
    title: str
    detector: str
    detectors: tuple[str, ...]
    severity: str
    state: str
    where: str
    dimensions: dict[str, str]
    data_problem: bool
    reopened: int
    now: datetime
    onset: datetime | None
    onset_how: str
    opened_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    mitigated_at: datetime | None
    mitigated_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    ongoing: bool
    duration: timedelta
    time_to_detect: timedelta | None
    time_to_acknowledge: timedelta | None
    time_to_mitigate: timedelta | None
    time_to_resolve: timedelta | None
    failed: float | None
    attempts: float | None
    excess: float | None
    amount_at_risk: float | None
    currency: str | None
    impact_note: str | None
    affected_values: dict[str, tuple[str, ...]]
    figures: dict[str, Figure]
    affected: dict[str, Figure]
    evidence: EvidenceNotes
    hypotheses: tuple[Hypothesis, ...]
    follow_ups: tuple[FollowUp, ...]
    action_items: tuple[ActionItem, ...]
    timeline: tuple[TimelineRow, ...]
    people: tuple[str, ...]
    appendix: tuple[AppendixEntry, ...]

    @property
    def psps(self) -> tuple[str, ...]:
        return self.affected_values.get("psp", ())

    @property
    def countries(self) -> tuple[str, ...]:
        return self.affected_values.get("country", ())

    @property
    def methods(self) -> tuple[str, ...]:
        return self.affected_values.get("method", ())

    @property
    def merchants(self) -> tuple[str, ...]:
        return self.affected_values.get("merchant", ())

    @property
    def citations(self) -> list[Citation]:
        """Every citation of every figure and hypothesis, in the order of the draft."""
        return [c for item in _cited(self) for c in item.citations]


def _cited(facts: PostmortemFacts) -> list[Figure | Hypothesis]:
    ev = facts.evidence
    return [
        *facts.figures.values(),
        *facts.affected.values(),
        *ev.findings,
        *ev.breakdown,
        *ev.log_patterns,
        *ev.error_codes,
        *ev.changes,
        *facts.hypotheses,
    ]


# -- reading what the store keeps -------------------------------------------------------------


def _num(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _when(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return _utc(value)
    if isinstance(value, str) and value:
        try:
            return _utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            return None
    return None


def _map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


_S = TypeVar("_S", BreakdownSection, ImpactSection, LogsSection, ChangesSection)  # a section
_NO_FINDING = FindingItem(detector="", dimensions={}, title="")
"""The lead finding of an incident that has none on record: nothing known."""


def _group(queries: Iterable[QueryRef]) -> Group:
    """The queries of an evidence section or a finding, read together (one appendix entry)."""
    out = [
        _Src(q.source or "unknown", q.query, _utc_or_none(q.start), _utc_or_none(q.end))
        for q in queries
        if q.query
    ]
    return tuple(dict.fromkeys(out))


def where(dimensions: Mapping[str, str]) -> str:
    return slice_text(dimensions)


def _count(value: object) -> str:
    return format_count(_num(value))


def _measure(value: object, unit: str) -> str:
    return format_measure(_num(value), unit)


def _finding_text(f: FindingItem) -> str:
    text = (
        f"{f.title}: observed {_measure(f.observed, f.unit)}, expected "
        f"{_measure(f.expected, f.unit)}"
    )
    low, high = f.band
    if low is not None and high is not None:
        text += f" (usual range {_measure(low, f.unit)} to {_measure(high, f.unit)})"
    return text + (f", at {format_time(f.at)}" if f.at else "")


def _pattern_text(p: PatternItem) -> str:
    code = f" (error code {p.error_code})" if p.error_code else ""
    rise = "new" if not p.count_before else f"{_count(p.count_before)} before"
    sampled = ", estimated from a sample" if p.sampled else ""
    return f"“{p.template}”{code}: {_count(p.count_now)} now ({rise}{sampled})"


def _change_what(c: ChangeItem) -> str:
    what = " ".join(x for x in (c.kind, c.service, c.version) if x)
    names = f" (names {', '.join(c.mentions)})" if c.mentions else ""
    desc = f": {c.description}" if c.description else ""
    return f"{what or 'change'}{names}{desc}"


# -- computing the facts ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Times:
    onset: datetime | None
    opened: datetime
    ack_at: datetime | None
    ack_by: str | None
    mit_at: datetime | None
    mit_by: str | None
    resolved: datetime | None
    resolved_by: str | None

    @property
    def start(self) -> datetime:
        return self.onset or self.opened


class _Draft:
    """Builds the facts of one incident; each group of queries becomes an appendix entry
    (``E1``, ``E2``... in the order figures first cite them)."""

    def __init__(
        self,
        incident: StoredIncident,
        timeline: Sequence[Entry],
        audit: Sequence[AuditEntry],
        now: datetime,
    ) -> None:
        self.inc = incident
        self.timeline = sorted(timeline, key=lambda e: _utc(e.at))
        self.audit = sorted(
            (a for a in audit if a.incident_id == incident.id and a.allowed),
            key=lambda a: _utc(a.at),
        )
        self.now = _utc(now)
        self.ev: Evidence = incident.evidence
        # The incident's findings as the store keeps them (the evidence's shape, with the
        # detector's details): the evidence's own list is the fallback.
        members = [_map(_map(m).get("finding")) for m in incident.members.values()]
        self.findings = list(FindingItem.from_json_list(members))
        self.causes = [_map(f.get("details")).get("cause") for f in members]
        self._refs: dict[Group, str] = {}
        self._backs: dict[str, list[Backed]] = {}

    # -- figures and references

    def figure(
        self,
        key: str,
        label: str,
        text: str,
        groups: Iterable[Group] = (),
        value: float | None = None,
    ) -> Figure:
        groups = [g for g in groups if g]
        cites = tuple(Citation(label, text, *s) for g in groups for s in g)
        return Figure(key, label, text, value, cites, self._ref(groups, label, text))

    def unknown(self, key: str, label: str, why: str) -> Figure:
        return Figure(key, label, f"unknown ({why})")

    def hypothesis(self, kind: str, text: str, group: Group) -> Hypothesis:
        label = f"Hypothesis: {kind}"
        cites = tuple(Citation(label, text, *s) for s in group)
        return Hypothesis(kind, label, text, cites, self._ref([group], label, text))

    def _ref(self, groups: Iterable[Group], label: str, text: str) -> tuple[str, ...]:
        """The appendix references of ``groups`` (new groups get the next number), noting
        that they back the figure ``label``: ``text``."""
        refs = [self._refs.setdefault(g, f"E{len(self._refs) + 1}") for g in groups if g]
        for ref in dict.fromkeys(refs):
            self._backs.setdefault(ref, []).append(Backed(label, text))
        return tuple(dict.fromkeys(refs))

    def appendix(self) -> tuple[AppendixEntry, ...]:
        out = []
        for group, ref in self._refs.items():
            backs = self._backs[ref]
            cites = tuple(Citation(backs[0].label, backs[0].text, *s) for s in group)
            out.append(AppendixEntry(ref, cites, tuple(backs)))
        return tuple(out)

    def record(self, what: str, at: datetime) -> Group:
        return (_Src(STORE, f"incident {self.inc.id} {what}", None, at),)

    # -- reading the store

    def lead(self) -> tuple[FindingItem, object]:
        """The stored finding that names the incident (its detector, on its own slice) and
        its cause (the detector's ``details["cause"]``, None when unknown)."""
        for f, cause in zip(self.findings, self.causes, strict=True):
            if f.detector == self.inc.detector and f.dimensions == dict(self.inc.dimensions):
                return f, cause
        if self.findings:
            return self.findings[0], self.causes[0]
        return next(iter(self.ev.findings), _NO_FINDING), None

    def first(self, action: str) -> AuditEntry | None:
        return next((a for a in self.audit if a.action == action), None)

    def section(self, name: str, sec: _S | None) -> _S | str:
        """The evidence section ``name`` (``sec``) when it can be used, else why not (it is
        absent, or says it is ``missing``)."""
        if self.ev.empty:
            return "no evidence was gathered for this incident"
        if sec is None:
            if self.ev.missing:
                return f"evidence could not be gathered: {self.ev.missing}"
            if name in ("breakdown", "impact"):
                if self.inc.data_problem:
                    return "not estimated for a data problem (missing or stale metrics)"
                if (d := REGISTRY.get(self.inc.detector)) is None or d.ratio is None:
                    ratios = " and ".join(sorted(i for i, d in REGISTRY.items() if d.ratio))
                    return f"not estimated for {self.inc.detector} incidents, only {ratios}"
            return f"no {name} in the evidence"
        if isinstance(sec, LogsSection | ChangesSection) and sec.missing:
            return sec.missing
        return sec

    def window(self) -> tuple[datetime, datetime] | None:
        """The window the evidence was last gathered over."""
        w = self.ev.window
        return None if w is None else (_utc(w[0]), _utc(w[1]))

    def times(self) -> _Times:
        inc = self.inc
        ack, mit = self.first("acknowledge"), self.first("mitigate")
        resolved = _utc(inc.resolved_at) if inc.resolved_at else None
        # who resolved it last: a person's action at that time, else the findings cleared
        res = next(
            (a for a in self.audit if a.action == "resolve" and _utc(a.at) == resolved), None
        )
        return _Times(
            onset=_utc(inc.onset) if inc.onset else None,
            opened=_utc(inc.opened_at),
            ack_at=_utc(ack.at) if ack else _utc_or_none(inc.acknowledged_at),
            ack_by=ack.actor if ack else inc.acknowledged_by,
            mit_at=_utc(mit.at) if mit else _utc_or_none(inc.mitigated_at),
            mit_by=mit.actor if mit else None,
            resolved=resolved,
            resolved_by=res.actor if res else (BOT if resolved else None),
        )

    # -- the facts

    def build(self) -> PostmortemFacts:
        inc = self.inc
        lead, cause = self.lead()
        t = self.times()
        duration = max((t.resolved or self.now) - t.start, timedelta(0))
        figures: dict[str, Figure] = {}
        figures["duration"] = self.duration(t, duration, _group(lead.queries))
        impact = self.impact(figures)
        affected, affected_values = self.affected()
        figures.update(self.detection(t, _group(lead.queries)))
        evidence = self.evidence_notes()
        detectors = tuple(
            dict.fromkeys([inc.detector, *(f.detector for f in self.findings if f.detector)])
        )
        follow_ups = self.follow_ups(detectors, lead, cause)
        hypotheses = self.hypotheses(lead, cause)
        rows = self.timeline_rows(t.onset)
        return PostmortemFacts(
            incident_id=inc.ref,
            title=inc.title,
            detector=inc.detector,
            detectors=detectors,
            severity=inc.severity.value,
            state=inc.state.value,
            where=where(inc.dimensions),
            dimensions=dict(inc.dimensions),
            data_problem=inc.data_problem,
            reopened=inc.reopened,
            now=self.now,
            onset=t.onset,
            onset_how=self.onset_how() if t.onset else "",
            opened_at=t.opened,
            acknowledged_at=t.ack_at,
            acknowledged_by=t.ack_by,
            mitigated_at=t.mit_at,
            mitigated_by=t.mit_by,
            resolved_at=t.resolved,
            resolved_by=t.resolved_by,
            ongoing=t.resolved is None,
            duration=duration,
            time_to_detect=_since(t.onset, t.opened),
            time_to_acknowledge=_since(t.opened, t.ack_at),
            time_to_mitigate=_since(t.start, t.mit_at),
            time_to_resolve=_since(t.start, t.resolved),
            failed=impact.get("failed"),
            attempts=impact.get("attempts"),
            excess=impact.get("excess"),
            amount_at_risk=impact.get("amount"),
            currency=impact.get("currency"),
            impact_note=impact.get("note"),
            affected_values=affected_values,
            figures=figures,
            affected=affected,
            evidence=evidence,
            hypotheses=hypotheses,
            follow_ups=follow_ups,
            action_items=self.action_items(follow_ups, hypotheses),
            timeline=rows,
            people=self.people(rows),
            appendix=self.appendix(),  # last: every figure is made
        )

    def onset_how(self) -> str:
        how = self.ev.onset.how if self.ev.onset is not None else ""
        return how or "change point on the detector's signal"

    def duration(self, t: _Times, duration: timedelta, signal: Group) -> Figure:
        start = (
            f"the onset at {format_time(t.onset)}"
            if t.onset
            else f"detection at {format_time(t.opened)} (onset unknown)"
        )
        if t.resolved:
            end, end_src = f"the resolution at {format_time(t.resolved)}", self.resolution(t)
        else:
            end = f"now, {format_time(self.now)} (still {self.inc.state.value})"
            end_src = (_Src(STORE, "not resolved yet: the time of this draft", None, self.now),)
        start_src = signal if t.onset else self.record("opened (first raised)", t.opened)
        text = f"{format_window(duration)}, from {start} to {end}"
        return self.figure(
            "duration", "Duration", text, [start_src, end_src], duration.total_seconds()
        )

    def resolution(self, t: _Times) -> Group:
        assert t.resolved is not None
        who = f"by {t.resolved_by}" if t.resolved_by != BOT else "(every finding cleared)"
        return self.record(f"resolved {who}", t.resolved)

    def detection(self, t: _Times, signal: Group) -> dict[str, Figure]:
        """Onset, detection and the times to detect, acknowledge, mitigate and resolve."""
        opened = self.record("opened (first raised)", t.opened)
        start = signal if t.onset else opened
        out = [
            self.figure("onset", "Onset", f"{format_time(t.onset)} ({self.onset_how()})", [signal])
            if t.onset and signal
            else self.unknown("onset", "Onset", "no change point was estimated"),
            self.figure("detected", "Detected", format_time(t.opened), [opened]),
        ]
        ttd = _since(t.onset, t.opened)
        out.append(
            self.figure("time_to_detect", "Time to detect", format_window(ttd), [signal, opened])
            if ttd is not None and signal
            else self.unknown("time_to_detect", "Time to detect", "the onset is unknown")
        )
        tta = _since(t.opened, t.ack_at)
        out.append(
            self.figure(
                "time_to_acknowledge",
                "Time to acknowledge",
                f"{format_window(tta)} (by {t.ack_by or 'unknown'})",
                [opened, self.record(f"acknowledged by {t.ack_by}", t.ack_at)],
            )
            if tta is not None and t.ack_at
            else self.unknown("time_to_acknowledge", "Time to acknowledge", "never acknowledged")
        )
        ttm = _since(t.start, t.mit_at)
        out.append(
            self.figure(
                "time_to_mitigate",
                "Time to mitigate",
                format_window(ttm) + (f" (by {t.mit_by})" if t.mit_by else ""),
                [start, self.record(f"mitigated by {t.mit_by or 'unknown'}", t.mit_at)],
            )
            if ttm is not None and t.mit_at
            else self.unknown("time_to_mitigate", "Time to mitigate", "nobody marked it mitigated")
        )
        ttr = _since(t.start, t.resolved)
        out.append(
            self.figure(
                "time_to_resolve",
                "Time to resolve",
                format_window(ttr),
                [start, self.resolution(t)],
            )
            if ttr is not None
            else self.unknown("time_to_resolve", "Time to resolve", "not resolved yet")
        )
        return {f.key: f for f in out}

    def impact(self, figures: dict[str, Figure]) -> dict[str, Any]:
        """The impact figures (into ``figures``) and their values."""
        labels = {
            "failed": "Failed payments",
            "excess": "Failed above the usual level",
            "amount": "Amount at risk",
        }
        sec = self.section("impact", self.ev.impact)
        if isinstance(sec, str):
            figures.update({k: self.unknown(k, label, sec) for k, label in labels.items()})
            return {}
        src = _group(sec.queries)
        out: dict[str, Any] = {}
        window = self.window()
        within = ""
        if window is not None:
            within = f" in {format_window(window[1] - window[0])}"
            last = _utc(self.inc.resolved_at) if self.inc.resolved_at else self.now
            if last - window[1] > timedelta(minutes=1):
                out["note"] = (
                    f"The impact figures cover the evidence window {format_time(window[0])} → "
                    f"{format_time(window[1])}, the last time evidence was gathered; the "
                    f"incident went on until {format_time(last)}, so they are lower bounds."
                )
        failed, attempts = sec.failed, sec.attempts
        excess, amount = sec.excess, sec.amount_so_far
        currency = sec.currency
        out.update(failed=failed, attempts=attempts, excess=excess)
        if failed is None and sec.lines:  # a detector's own terms: lost traffic, late webhooks
            text = "; ".join(x.rstrip(".") for x in sec.lines)
            figures["cost"] = self.figure("cost", "What it cost", text, [src], None)
        if failed is None:
            figures["failed"] = self.unknown("failed", labels["failed"], "no data")
        else:
            of = f" of {format_count(attempts)} attempts" if attempts is not None else ""
            text = f"{format_count(failed)}{of}{within}"
            figures["failed"] = self.figure("failed", labels["failed"], text, [src], failed)
        if excess is None:
            figures["excess"] = self.unknown(
                "excess", labels["excess"], "no baseline to compare with"
            )
        else:
            baseline = self.ev.breakdown.baseline if self.ev.breakdown is not None else ""
            against = f" (baseline: {baseline})" if baseline else ""
            text = f"{format_count(excess)}{against}"
            figures["excess"] = self.figure("excess", labels["excess"], text, [src], excess)
        if not currency:
            figures["amount"] = self.unknown(
                "amount", labels["amount"], "no average ticket configured"
            )
        elif amount is None:
            figures["amount"] = self.unknown(
                "amount", labels["amount"], "the excess of failed payments is unknown"
            )
        else:
            out.update(amount=amount, currency=currency)
            text = (
                f"about {format_money(amount, currency)} (failed above the usual level × the "
                "configured average ticket)"
            )
            figures["amount"] = self.figure("amount", labels["amount"], text, [src], amount)
        return out

    def affected(self) -> tuple[dict[str, Figure], dict[str, tuple[str, ...]]]:
        """Per dimension, the values affected: the incident's slice, the slices of its other
        findings, and the values the breakdown found significant."""
        b = self.section("breakdown", self.ev.breakdown)
        b_why = b if isinstance(b, str) else None
        by_dim = {d.dimension: d for d in b.dimensions} if not isinstance(b, str) else {}
        slices: dict[str, dict[str, None]] = {k: {v: None} for k, v in self.inc.dimensions.items()}
        for f in self.findings:
            for k, v in f.dimensions.items():
                slices.setdefault(k, {})[v] = None
        names = [*DIMENSION_LABELS]
        names += sorted(set(slices) - set(names) - NOT_AFFECTED)
        figures: dict[str, Figure] = {}
        values: dict[str, tuple[str, ...]] = {}
        for dim in names:
            label = f"{DIMENSION_LABELS.get(dim, dim)} affected"
            own = list(slices.get(dim, {}))
            parts = [f"{', '.join(own)} (the incident's slice)"] if own else []
            d = by_dim.get(dim)
            found: list[str] = []
            src: Group = ()
            if d is not None and d.missing:
                parts.append(f"the breakdown by {dim} is unavailable: {d.missing}")
            elif d is not None:
                src = tuple(dict.fromkeys(s for t in d.top for s in _group(t.queries)))
                found = [
                    t.value or f"(no {dim} label)"
                    for t in d.top
                    if t.significant and t.value not in own
                ]
                more = d.standing_out - len(d.top) if d.standing_out > len(d.top) else 0
                listed = ", ".join(found) + (f" and {more} more" if more else "")
                parts.append(
                    f"{listed} (significant in the breakdown by {dim})"
                    if found
                    else f"none stood out in the breakdown by {dim}"
                )
            elif not own:
                why = f"no {dim} breakdown in the evidence" if b_why is None else b_why
                parts.append(f"unknown ({why})")
            values[dim] = (*own, *found)
            if not own and (d is None or d.missing):
                figures[dim] = Figure(
                    dim, label, parts[0] if d is None else f"unknown ({parts[0]})"
                )
            else:
                figures[dim] = self.figure(dim, label, "; ".join(parts), [src])
        return figures, values

    def evidence_notes(self) -> EvidenceNotes:
        ev = self.ev
        missing: dict[str, str] = {}
        findings = tuple(
            self.figure(
                "finding",
                f"{f.detector or '?'} on {where(f.dimensions)}",
                _finding_text(f),
                [_group(f.queries)],
            )
            for f in (self.findings or ev.findings)
        )
        breakdown: list[Figure] = []
        b = self.section("breakdown", ev.breakdown)
        if isinstance(b, str):
            missing["breakdown"] = b
        else:
            if b.lines:
                breakdown.append(
                    self.figure("breakdown", "Breakdown", b.lines[0], [_group(b.queries)])
                )
            for d in b.dimensions:
                label = f"By {d.dimension or '?'}"
                if d.missing:
                    breakdown.append(self.unknown("breakdown", label, f"unavailable: {d.missing}"))
                for top in d.top:
                    figure = self.figure("breakdown", label, top.text, [_group(top.queries)])
                    breakdown.append(figure)
            for m in b.missing:
                breakdown.append(self.unknown("breakdown", "Breakdown", f"missing: {m}"))
        patterns: list[Figure] = []
        codes: list[Figure] = []
        logs = self.section("logs", ev.logs)
        if isinstance(logs, str):
            missing["logs"] = logs
        else:
            src = _group(logs.queries)
            for p in logs.patterns[:5]:
                patterns.append(self.figure("log_pattern", "Log pattern", _pattern_text(p), [src]))
            for c in logs.error_codes[:5]:
                text = f"{c.code}: {_count(c.count_now)} now, {_count(c.count_before)} before"
                codes.append(self.figure("error_code", "Error code", text, [src]))
        changes: list[Figure] = []
        ch = self.section("changes", ev.changes)
        if isinstance(ch, str):
            missing["changes"] = ch
        else:
            src = _group(ch.queries)
            for item in ch.items[:5]:
                text = f"{_change_what(item)} ({item.when})"
                changes.append(self.figure("change", "Change", text, [src]))
        return EvidenceNotes(
            window=self.window(),
            gathered_at=_utc_or_none(ev.gathered_at),
            findings=findings,
            breakdown=tuple(breakdown),
            log_patterns=tuple(patterns),
            error_codes=tuple(codes),
            changes=tuple(changes),
            concurrent=tuple(
                f"{c.detector or '?'} on {where(c.dimensions)}: {c.title}"
                + (" (a related slice)" if c.related else "")
                for c in ev.concurrent
            ),
            chart=self.chart(),
            runbook=self.runbook(),
            missing=missing,
        )

    def chart(self) -> str:
        chart = self.ev.chart
        if chart is None:
            return "missing (no chart in the evidence)"
        if chart.rendered:
            return f"rendered: {chart.path}" if chart.path else "rendered, but not saved to a file"
        return f"missing ({chart.missing or 'no chart in the evidence'})"

    def runbook(self) -> RunbookNote | None:
        rb = self.ev.runbook
        if rb is None:
            return None
        return RunbookNote(
            id=rb.id or None,
            title=rb.title or None,
            link=rb.link or None,
            reason=rb.reason or None,
            steps=rb.steps,
        )

    def hypotheses(self, lead: FindingItem, cause: object) -> tuple[Hypothesis, ...]:
        """The likeliest change near the onset, the top rising log pattern and error code, the
        dominant breakdown value and the kind of failure: each for people to confirm."""
        out = []
        ch = self.section("changes", self.ev.changes)
        if not isinstance(ch, str) and ch.items:
            likeliest = ch.items[0]  # evidence.changes ranks them, before or after onset
            text = f"A change {likeliest.when} may have caused it: {_change_what(likeliest)}."
            out.append(self.hypothesis("the likeliest change", text, _group(ch.queries)))
        logs = self.section("logs", self.ev.logs)
        if not isinstance(logs, str):
            src = _group(logs.queries)
            patterns = logs.patterns
            if patterns:
                text = (
                    "The log pattern that rose most may show the cause: "
                    f"{_pattern_text(patterns[0])}."
                )
                out.append(self.hypothesis("the top rising log pattern", text, src))
            codes = logs.error_codes
            code = codes[0].code if codes else ""
            if code and not (patterns and patterns[0].error_code == code):
                text = (
                    f"The error code that rose most may show the cause: {code} "
                    f"({_count(codes[0].count_now)} now, "
                    f"{_count(codes[0].count_before)} before)."
                )
                out.append(self.hypothesis("the top rising error code", text, src))
        dominant = self.dominant()
        if dominant is not None:
            share, dim, top = dominant
            text = (
                f"The problem may be specific to {dim}={top.value}: it carries "
                f"{format_percent(share)} of the excess failures ({top.text})."
            )
            out.append(self.hypothesis("the dominant breakdown value", text, _group(top.queries)))
        declared = REGISTRY.get(lead.detector)
        kind = declared.causes.get(str(cause)) if declared is not None else None
        if kind is not None:
            out.append(self.hypothesis("the kind of failure", kind, _group(lead.queries)))
        return tuple(out)

    def dominant(self) -> tuple[float, str, TopValue] | None:
        """The significant breakdown value carrying the largest share of the excess."""
        b = self.section("breakdown", self.ev.breakdown)
        best: tuple[float, str, TopValue] | None = None
        for d in b.dimensions if not isinstance(b, str) else ():
            for top in d.top:
                share = top.share_of_excess
                # Specific: it rose well beyond the others (not "card" when every method
                # rose alike and card only carries the most volume).
                specific = top.specific or (top.significant and not d.values)  # older rows
                if specific and share is not None and (best is None or share > best[0]):
                    best = (share, d.dimension, top)
        return best

    def follow_ups(
        self, detectors: Sequence[str], lead: FindingItem, cause: object
    ) -> tuple[FollowUp, ...]:
        out: dict[str, FollowUp] = {}
        for det in detectors:
            # the lead finding's cause (issuer declines or technical errors) picks them
            declared = REGISTRY.get(det)
            of_det = cause if lead.detector == det else None
            for title, detail in declared.follow_ups_for(of_det) if declared else ():
                text = detail.format(where=where(self.inc.dimensions))
                out.setdefault(title, FollowUp(det, title, text))
        return tuple(out.values())

    def action_items(
        self, follow_ups: Sequence[FollowUp], hypotheses: Sequence[Hypothesis]
    ) -> tuple[ActionItem, ...]:
        items = [ActionItem(f"{f.title} (money follow-up)", "repair") for f in follow_ups]
        if hypotheses:
            items.append(
                ActionItem(
                    "Confirm or reject each hypothesis under root cause and trigger",
                    "investigate",
                )
            )
        return tuple(items)

    def people(self, rows: Sequence[TimelineRow]) -> tuple[str, ...]:
        """Who acted, in order of first action (the bot and detectors left out)."""
        actors = sorted(
            [(r.at, r.actor) for r in rows] + [(_utc(a.at), a.actor) for a in self.audit]
        )
        return tuple(
            dict.fromkeys(a for _, a in actors if a and not a.startswith((BOT, "detector:")))
        )

    def timeline_rows(self, onset: datetime | None) -> tuple[TimelineRow, ...]:
        rows = [TimelineRow(_utc(e.at), e.actor, e.kind, e.text) for e in self.timeline]
        if onset is not None:
            rows.append(
                TimelineRow(onset, f"{BOT} (estimate)", "onset", f"onset ({self.onset_how()})")
            )
        return tuple(sorted(rows, key=lambda r: r.at))


def _utc_or_none(at: datetime | None) -> datetime | None:
    return None if at is None else _utc(at)


def _since(start: datetime | None, end: datetime | None) -> timedelta | None:
    if start is None or end is None:
        return None
    return max(end - start, timedelta(0))


def postmortem_facts(
    incident: StoredIncident,
    timeline: Sequence[Entry],
    audit: Sequence[AuditEntry],
    now: datetime,
) -> PostmortemFacts:
    """The facts of ``incident`` for its postmortem, from the store's records and ``now``."""
    return _Draft(incident, timeline, audit, now).build()


# -- rendering ----------------------------------------------------------------------------------


class _OneTemplate(BaseLoader):
    """A loader that knows one template (no includes or imports of other files)."""

    def __init__(self, name: str, source: str, filename: str) -> None:
        self.name, self.source, self.filename = name, source, filename

    def get_source(self, environment: Any, template: str) -> tuple[str, str, Callable[[], bool]]:
        if template != self.name:
            raise TemplateNotFound(template)
        return self.source, self.filename, lambda: True


class _Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox, with a macro's output (template text and values ``finalize`` already
    escaped) marked as trusted, so printing it does not escape it twice."""

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        out = super().call(context, obj, *args, **kwargs)
        return Raw(out) if isinstance(obj, Macro) and isinstance(out, str) else out


def _duration(value: object) -> Raw:
    """A timedelta (or seconds) for people: "1 h 30 min"; "unknown" for anything else."""
    if isinstance(value, timedelta):
        return Raw(format_window(value))
    seconds = _num(value)
    return Raw("unknown" if seconds is None else format_window(timedelta(seconds=seconds)))


def environment() -> ImmutableSandboxedEnvironment:
    """The environment postmortem templates run in: sandboxed (data structures read-only),
    strict about undefined names, every printed value escaped by ``finalize``. Filters:
    ``cell`` (a table cell), ``code(language)`` (a fenced block), ``inline`` (a code span),
    ``time`` (a datetime or ISO string), ``duration`` (a timedelta or seconds), ``count``,
    ``percent`` (a ratio)."""
    env = _Sandbox(
        undefined=StrictUndefined,
        finalize=_finalize,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        cell=table_cell,
        code=fenced,
        inline=inline_code,
        time=lambda at: Raw(format_time(_when(at))),
        duration=_duration,
        count=lambda x: Raw(format_count(_num(x))),
        percent=lambda x: Raw(format_percent(_num(x))),
    )
    return env


def _template_line(exc: BaseException, filename: str) -> int | None:
    """The template line an error was raised on (Jinja rewrites the traceback so template
    frames carry the template's file name and line)."""
    line = None
    tb: TracebackType | None = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def render_postmortem(
    incident: StoredIncident,
    timeline: Sequence[Entry],
    audit: Sequence[AuditEntry],
    now: datetime,
    *,
    template: str | Path | None = None,
) -> str:
    """The Markdown postmortem draft of ``incident``, from ``template`` (a file; default
    ``templates/postmortem.md.j2``), redacted.

    The template receives ``facts`` (:class:`PostmortemFacts`), ``incident`` (the
    ``StoredIncident``) and ``now``, with the filters of :func:`environment`. Raises
    :class:`PostmortemError` naming the template and line when the file cannot be read, does
    not compile, or fails while rendering (an undefined name, a sandbox violation...).
    """
    path = Path(template) if template is not None else DEFAULT_TEMPLATE
    name = f"templates/{DEFAULT_TEMPLATE.name}" if template is None else str(template)
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PostmortemError(name, f"cannot be read: {exc}") from exc
    facts = postmortem_facts(incident, timeline, audit, now)
    env = environment()
    env.loader = _OneTemplate(name, source, str(path))
    try:
        text = env.get_template(name).render(facts=facts, incident=incident, now=_utc(now))
    except TemplateSyntaxError as exc:
        raise PostmortemError(name, exc.message or str(exc), exc.lineno) from exc
    except TemplateError as exc:
        raise PostmortemError(
            name, exc.message or str(exc), _template_line(exc, str(path))
        ) from exc
    except Exception as exc:  # the template's own mistake: 1/0, a bad call, a wrong type
        line = _template_line(exc, str(path))
        raise PostmortemError(name, f"{type(exc).__name__}: {exc}", line) from exc
    return redact(text)


__all__ = [
    "DEFAULT_TEMPLATE",
    "AppendixEntry",
    "Backed",
    "Citation",
    "EvidenceNotes",
    "Figure",
    "FollowUp",
    "Hypothesis",
    "PostmortemError",
    "PostmortemFacts",
    "Raw",
    "RunbookNote",
    "TimelineRow",
    "environment",
    "escape_markdown",
    "export_postmortem",
    "fenced",
    "inline_code",
    "md",
    "postmortem_facts",
    "redact",
    "render_postmortem",
    "table_cell",
]


def export_postmortem(pm: Postmortem, directory: Path) -> Path:
    """Write an approved version to ``directory`` as ``<incident>-v<version>.md``."""
    if pm.status != "approved":
        raise PostmortemError("export", f"version {pm.version} is {pm.status}, not approved")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{pm.incident_id}-v{pm.version}.md"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(pm.body, encoding="utf-8")
    tmp.replace(path)
    return path
