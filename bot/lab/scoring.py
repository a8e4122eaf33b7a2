"""Score incidents against labelled problems: recall, precision, false pages, time to detect,
and how closely resolution follows recovery.

Pure functions over dataclasses, no IO but ``load_labels``. ``paytriage backtest`` writes the
incidents a replay of the detectors (or the static alerting rules) would have opened, as
dicts::

    {"id", "detector", "opened_at", "resolved_at", "severity", "dimensions", "title",
     "impact_ended_at", "reopened"}

(``impact_ended_at`` and ``reopened`` are optional: the static rules have neither.)

``score`` matches them to the scenarios of a labels file (``paytriage simulate`` writes
``labels.json``) and ``format_scores`` puts several scores side by side with the targets.

Matching (the constants are below):

- an incident *can* be caused by a scenario when it was opened from MATCH_BEFORE before the
  scenario's start to MATCH_AFTER after its end (both ends included), and its dimensions
  are related to the scenario's (``dims_related``) or its detector is one the scenario is
  expected to fire;
- it is assigned to at most one such scenario: a non-harmless one before a harmless one,
  then one that expects its detector and has equal dimensions, then one with related
  dimensions, then the one that started nearest to it (then the first listed);
- an incident assigned to a non-harmless scenario is a true page (the first one detects the
  scenario, later ones are duplicates); one assigned to a harmless scenario or to none is a
  false page.

Resolution (each true page against the end of its scenario, the labels' ``end``):

- *problem end to impact ended*: ``impact_ended_at - end``, when the signal was back in its
  band (the detectors know it when the finding clears);
- *problem end to resolved*: ``resolved_at - end``, when the incident (and its page)
  resolved; a page still open at the end of the period is counted as ``unresolved``;
- *flaps*: an incident re-opened after it resolved (``reopened``: the same detector and
  slice raised again within ``incidents.reopen_within``), or a new incident of the same
  detector and slice opened within ``FLAP_WITHIN`` of one resolving. The benchmark never
  hits one slice twice within a few hours, so each is a page that resolved while the
  problem was still on.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from paytriage.domain.incidents import related

__all__ = [
    "FLAP_WITHIN",
    "MATCH_AFTER",
    "MATCH_BEFORE",
    "TARGETS",
    "FalsePage",
    "Flap",
    "LabelledScenario",
    "LabelsError",
    "ScenarioResult",
    "Score",
    "dims_related",
    "format_misses",
    "format_scores",
    "load_labels",
    "parse_labels",
    "score",
]

#: An incident opened up to this long before a scenario starts may still be its detection:
#: the simulator ramps some scenarios in, and a static rule or a clock may run a little early.
MATCH_BEFORE = timedelta(minutes=5)

#: An incident opened up to this long after a scenario ends may still be caused by it:
#: persistence (``for``), long windows (burn rates over an hour) and the backlog a scenario
#: leaves behind make detections late, and a re-opened incident is a duplicate, not a false
#: page.
MATCH_AFTER = timedelta(minutes=15)

#: A new incident of the same detector and slice opened this soon after one resolved is a
#: flap (as is any re-opened incident): the page resolved while the problem was still on.
FLAP_WITHIN = timedelta(hours=1)

#: The targets of the benchmark, as shown in the "target" column of ``format_scores``.
TARGETS: dict[str, float] = {
    "recall": 0.95,  # at least
    "precision": 0.95,  # at least
    "false_pages_per_day": 0.3,  # at most
    "median_ttd_seconds": 180.0,  # at most
    "attribution": 0.90,  # at least
    "duplicates": 0,  # at most
    "median_onset_error_seconds": 60.0,  # at most: |estimated onset - problem start|
    "max_onset_error_seconds": 600.0,  # at most
    "median_impact_end_seconds": 180.0,  # at most: problem end to impact ended
    "median_resolve_seconds": 600.0,  # at most: problem end to resolved
    "max_resolve_seconds": 1800.0,  # at most
    "flaps": 0,  # at most
}

_DAY = timedelta(days=1)
_TIME_EXAMPLE = "2026-11-16T09:04:00Z"


class LabelsError(ValueError):
    """A labels file that cannot be used; the message names the scenario and the key."""


@dataclass(frozen=True)
class LabelledScenario:
    """One injected scenario: a real problem to detect, or a harmless event not to page on."""

    id: str
    kind: str
    start: datetime
    end: datetime
    dims: Mapping[str, str] = field(default_factory=dict)
    harmless: bool = False
    expected_detectors: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class ScenarioResult:
    """How one scenario was detected.

    ``detected``, ``ttd_seconds`` and ``attributed`` concern non-harmless scenarios only
    (False, None, None for a harmless one); ``incident_ids`` are the incidents assigned to
    the scenario in the order they were opened (for a harmless scenario: its false pages).
    ``impact_ended_seconds`` and ``resolved_seconds`` run from the scenario's end to the
    latest of its incidents' (None when not detected, when an incident has no such time or
    is still open).
    """

    id: str
    kind: str
    start: datetime
    end: datetime
    dims: Mapping[str, str]
    harmless: bool
    detected: bool
    ttd_seconds: float | None
    attributed: bool | None
    incident_ids: tuple[str, ...]
    impact_ended_seconds: float | None = None
    resolved_seconds: float | None = None
    onset_error_seconds: float | None = None  # the first page's onset minus the start

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "start": _iso(self.start),
            "end": _iso(self.end),
            "dims": dict(self.dims),
            "harmless": self.harmless,
            "detected": self.detected,
            "ttd_seconds": self.ttd_seconds,
            "attributed": self.attributed,
            "incident_ids": list(self.incident_ids),
            "impact_ended_seconds": self.impact_ended_seconds,
            "resolved_seconds": self.resolved_seconds,
            "onset_error_seconds": self.onset_error_seconds,
        }


@dataclass(frozen=True)
class FalsePage:
    """An incident that no injected problem explains; ``why`` says what it was opened during."""

    id: str
    detector: str
    opened_at: datetime
    dims: Mapping[str, str]
    why: str
    scenario_id: str | None = None  # the harmless scenario it fired on, if any

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "detector": self.detector,
            "opened_at": _iso(self.opened_at),
            "dims": dict(self.dims),
            "why": self.why,
            "scenario_id": self.scenario_id,
        }


@dataclass(frozen=True)
class Flap:
    """An incident that resolved while its problem was still on: re-opened ``reopened``
    times, or followed by ``next_id`` on the same detector and slice within ``FLAP_WITHIN``."""

    id: str
    detector: str
    dims: Mapping[str, str]
    reopened: int = 0
    next_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "detector": self.detector,
            "dims": dict(self.dims),
            "reopened": self.reopened,
            "next_id": self.next_id,
        }


@dataclass(frozen=True)
class Score:
    """The benchmark figures of one set of incidents (see ``score``).

    The resolution figures run from each true page's scenario end: ``*_impact_end_*`` to
    its ``impact_ended_at``, ``*_resolve_*`` to its ``resolved_at`` (None without any);
    ``unresolved`` true pages were still open at the end of the period.
    """

    name: str
    start: datetime
    end: datetime
    days: float
    incidents: int
    expected: int
    detected: int
    recall: float
    precision: float
    false_pages: int
    false_pages_per_day: float
    median_ttd_seconds: float | None
    attribution: float | None
    duplicates: int
    scenarios: tuple[ScenarioResult, ...]
    false_incidents: tuple[FalsePage, ...]
    median_impact_end_seconds: float | None = None
    max_impact_end_seconds: float | None = None
    median_onset_error_seconds: float | None = None  # |onset - start|, over the true pages
    max_onset_error_seconds: float | None = None
    median_resolve_seconds: float | None = None
    max_resolve_seconds: float | None = None
    unresolved: int = 0
    flaps: tuple[Flap, ...] = ()

    @property
    def missed(self) -> tuple[ScenarioResult, ...]:
        """The non-harmless scenarios no incident detected."""
        return tuple(r for r in self.scenarios if not r.harmless and not r.detected)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "start": _iso(self.start),
            "end": _iso(self.end),
            "days": self.days,
            "incidents": self.incidents,
            "expected": self.expected,
            "detected": self.detected,
            "recall": self.recall,
            "precision": self.precision,
            "false_pages": self.false_pages,
            "false_pages_per_day": self.false_pages_per_day,
            "median_ttd_seconds": self.median_ttd_seconds,
            "attribution": self.attribution,
            "duplicates": self.duplicates,
            "scenarios": [r.as_dict() for r in self.scenarios],
            "false_incidents": [f.as_dict() for f in self.false_incidents],
            "median_impact_end_seconds": self.median_impact_end_seconds,
            "max_impact_end_seconds": self.max_impact_end_seconds,
            "median_onset_error_seconds": self.median_onset_error_seconds,
            "max_onset_error_seconds": self.max_onset_error_seconds,
            "median_resolve_seconds": self.median_resolve_seconds,
            "max_resolve_seconds": self.max_resolve_seconds,
            "unresolved": self.unresolved,
            "flap_count": self.flap_count,
            "flaps": [f.as_dict() for f in self.flaps],
        }

    @property
    def flap_count(self) -> int:
        """Times a page resolved while its problem was still on (each re-opening counts)."""
        return sum(f.reopened + (f.next_id is not None) for f in self.flaps)


# --- labels -------------------------------------------------------------------------------


def load_labels(path: Path) -> list[LabelledScenario]:
    """Read the scenarios of a labels file; raises LabelsError naming the file and the key."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelsError(f"{path}: cannot read the labels: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LabelsError(
            f"{path}: not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    try:
        return parse_labels(data)
    except LabelsError as exc:
        raise LabelsError(f"{path}: {exc}") from None


def parse_labels(data: Mapping[str, Any]) -> list[LabelledScenario]:
    """The scenarios of parsed labels, in their order.

    Each scenario needs ``id``, ``kind``, ``start``, ``end`` (or ``duration_seconds``) and
    ``dims``; ``harmless`` defaults to ``expected_detectors == []`` when that is given, else
    False. Times are ISO 8601 (``Z`` accepted; no offset means UTC). Anything else in the
    file is ignored. Raises LabelsError naming the scenario (index and id) and the key.
    """
    if not isinstance(data, Mapping):
        raise LabelsError(f"labels must be a JSON object, not {_type(data)}")
    if "scenarios" not in data:
        raise LabelsError("missing key 'scenarios'")
    raw = data["scenarios"]
    if not isinstance(raw, list):
        raise LabelsError(f"key 'scenarios': must be a list, not {_type(raw)}")
    scenarios: list[LabelledScenario] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        s = _scenario(i, item)
        if s.id in seen:
            raise LabelsError(f"scenarios[{i}] (id {s.id!r}): key 'id': duplicate id")
        seen.add(s.id)
        scenarios.append(s)
    return scenarios


def _scenario(i: int, raw: object) -> LabelledScenario:
    where = f"scenarios[{i}]"
    if not isinstance(raw, Mapping):
        raise LabelsError(f"{where}: must be an object, not {_type(raw)}")
    if isinstance(raw.get("id"), str) and raw["id"]:
        where = f"{where} (id {raw['id']!r})"

    def bad(key: str, problem: str) -> LabelsError:
        return LabelsError(f"{where}: key {key!r}: {problem}")

    for key in ("id", "kind", "start", "dims"):
        if raw.get(key) is None:
            raise LabelsError(f"{where}: missing key {key!r}")
    if raw.get("end") is None and raw.get("duration_seconds") is None:
        raise LabelsError(f"{where}: missing key 'end' (or 'duration_seconds')")
    for key in ("id", "kind"):
        if not isinstance(raw[key], str) or not raw[key].strip():
            raise bad(key, f"must be a non-empty string, not {raw[key]!r}")
    try:
        start = _time(raw["start"])
    except ValueError as exc:
        raise bad("start", str(exc)) from None
    if raw.get("end") is not None:
        try:
            end = _time(raw["end"])
        except ValueError as exc:
            raise bad("end", str(exc)) from None
        end_key = "end"
    else:
        seconds = raw["duration_seconds"]
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not math.isfinite(seconds)
        ):
            raise bad("duration_seconds", f"must be a number of seconds, not {seconds!r}")
        end = start + timedelta(seconds=seconds)
        end_key = "duration_seconds"
    if end < start:
        raise bad(end_key, f"the scenario ends ({_iso(end)}) before it starts ({_iso(start)})")
    try:
        dims = _dims(raw["dims"])
    except ValueError as exc:
        raise bad("dims", str(exc)) from None
    expected: tuple[str, ...] = ()
    has_expected = raw.get("expected_detectors") is not None
    if has_expected:
        names = raw["expected_detectors"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise bad("expected_detectors", f"must be a list of detector names, not {names!r}")
        expected = tuple(names)
    harmless = raw.get("harmless")
    if harmless is None:
        harmless = has_expected and not expected
    elif not isinstance(harmless, bool):
        raise bad("harmless", f"must be true or false, not {harmless!r}")
    description = raw.get("description")
    return LabelledScenario(
        id=raw["id"],
        kind=raw["kind"],
        start=start,
        end=end,
        dims=dims,
        harmless=harmless,
        expected_detectors=expected,
        description=description if isinstance(description, str) else "",
    )


def _dims(raw: object) -> dict[str, str]:
    if not isinstance(raw, Mapping):
        raise ValueError(f"must be an object of dimension names to values, not {_type(raw)}")
    dims: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or isinstance(value, bool) or value is None:
            raise ValueError(f"bad dimension {key!r}: {value!r}")
        if not isinstance(value, str | int | float):
            raise ValueError(f"dimension {key!r} must have a string value, not {_type(value)}")
        dims[key] = str(value)
    return dims


def _time(value: object) -> datetime:
    """A timezone-aware datetime from a datetime or an ISO 8601 string (naive means UTC)."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"bad time {value!r}: expected ISO 8601, e.g. {_TIME_EXAMPLE}"
            ) from None
    else:
        raise ValueError(f"bad time {value!r}: expected an ISO 8601 string, e.g. {_TIME_EXAMPLE}")
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


# --- matching -----------------------------------------------------------------------------


dims_related = related  # one slice contains the other; {} relates to all (incident grouping)


@dataclass(frozen=True)
class _Incident:
    id: str
    detector: str
    opened_at: datetime
    dims: Mapping[str, str]
    resolved_at: datetime | None = None
    impact_ended_at: datetime | None = None
    reopened: int = 0
    onset: datetime | None = None


def _incident(i: int, raw: object) -> _Incident:
    where = f"incidents[{i}]"
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: must be an object, not {_type(raw)}")
    if raw.get("id") is not None:
        where = f"{where} (id {raw['id']!r})"
    for key in ("id", "detector", "opened_at"):
        if raw.get(key) is None:
            raise ValueError(f"{where}: missing key {key!r}")
    try:
        opened_at = _time(raw["opened_at"])
    except ValueError as exc:
        raise ValueError(f"{where}: key 'opened_at': {exc}") from None
    try:
        dims = _dims(raw.get("dimensions") or {})
    except ValueError as exc:
        raise ValueError(f"{where}: key 'dimensions': {exc}") from None
    times: dict[str, datetime | None] = {}
    for key in ("resolved_at", "impact_ended_at", "onset"):
        try:
            times[key] = None if raw.get(key) is None else _time(raw[key])
        except ValueError as exc:
            raise ValueError(f"{where}: key {key!r}: {exc}") from None
    reopened = raw.get("reopened") or 0
    if isinstance(reopened, bool) or not isinstance(reopened, int) or reopened < 0:
        raise ValueError(f"{where}: key 'reopened': must be a count, not {reopened!r}")
    return _Incident(
        str(raw["id"]),
        str(raw["detector"]),
        opened_at,
        dims,
        resolved_at=times["resolved_at"],
        impact_ended_at=times["impact_ended_at"],
        reopened=reopened,
        onset=times["onset"],
    )


def dims_intersect(a: Mapping[str, str], b: Mapping[str, str]) -> bool:
    """Whether two slices share traffic: no dimension they both name differs.

    ``{method: card}`` and ``{country: BR}`` intersect (card payments in Brazil), so a
    country's failure-rate page during a card outage is a symptom of it (a duplicate page),
    not a false page; ``{psp: stripe}`` and ``{psp: adyen}`` do not.
    """
    return all(a[k] == b[k] for k in a.keys() & b.keys())


def _can_cause(s: LabelledScenario, inc: _Incident) -> bool:
    if not s.start - MATCH_BEFORE <= inc.opened_at <= s.end + MATCH_AFTER:
        return False
    return inc.detector in s.expected_detectors or dims_intersect(inc.dims, s.dims)


def _preference(s: LabelledScenario, inc: _Incident) -> tuple[bool, bool, bool, timedelta]:
    """Sort key of the scenarios an incident can be assigned to (smallest first)."""
    expected_and_equal = inc.detector in s.expected_detectors and dict(inc.dims) == dict(s.dims)
    return (
        s.harmless,
        not expected_and_equal,
        not dims_related(inc.dims, s.dims),
        abs(inc.opened_at - s.start),
    )


def _assign(incidents: Sequence[_Incident], scenarios: Sequence[LabelledScenario]) -> list[int]:
    """For each incident, the index of the scenario it is assigned to, or -1."""
    out = []
    for inc in incidents:
        candidates = [(j, s) for j, s in enumerate(scenarios) if _can_cause(s, inc)]
        if not candidates:
            out.append(-1)
            continue
        best = min(candidates, key=lambda c: (*_preference(c[1], inc), c[0]))
        out.append(best[0])
    return out


# --- scoring ------------------------------------------------------------------------------


def score(
    incidents: Sequence[Mapping[str, Any]],
    scenarios: Sequence[LabelledScenario],
    start: datetime,
    end: datetime,
    name: str = "paytriage",
) -> Score:
    """Score ``incidents`` against the scenarios that start in [start, end).

    Scenarios starting elsewhere are ignored altogether (an incident they caused counts as a
    false page, so pass the period the incidents were replayed over). Raises ValueError
    naming the incident and key on a malformed incident, or when end is not after start.
    """
    start, end = _time(start), _time(end)
    if end <= start:
        raise ValueError(f"the period must end after it starts: {_iso(start)} .. {_iso(end)}")
    days = (end - start) / _DAY
    parsed = [_incident(i, raw) for i, raw in enumerate(incidents)]
    in_range = sorted(
        (s for s in scenarios if start <= s.start < end), key=lambda s: (s.start, s.end)
    )
    assigned = _assign(parsed, in_range)

    by_scenario: list[list[_Incident]] = [[] for _ in in_range]
    false_pages: list[FalsePage] = []
    for inc, j in zip(parsed, assigned, strict=True):
        if j >= 0:
            by_scenario[j].append(inc)
        if j < 0 or in_range[j].harmless:
            harmless = in_range[j] if j >= 0 else None
            false_pages.append(
                FalsePage(
                    id=inc.id,
                    detector=inc.detector,
                    opened_at=inc.opened_at,
                    dims=inc.dims,
                    why=_why(harmless),
                    scenario_id=harmless.id if harmless else None,
                )
            )
    false_pages.sort(key=lambda f: (f.opened_at, f.id))

    results: list[ScenarioResult] = []
    ttds: list[float] = []
    impact_lags: list[float] = []
    resolve_lags: list[float] = []
    onset_errors: list[float] = []
    unresolved = 0
    attributed = duplicates = 0
    for s, matched in zip(in_range, by_scenario, strict=True):
        matched.sort(key=lambda inc: (inc.opened_at, inc.id))
        detected = not s.harmless and bool(matched)
        ttd: float | None = None
        exact: bool | None = None
        impact: float | None = None
        resolved: float | None = None
        onset_error: float | None = None
        if detected:
            first = matched[0]
            if first.onset is not None:
                onset_error = (first.onset - s.start).total_seconds()
                onset_errors.append(abs(onset_error))
            ttd = max(0.0, (first.opened_at - s.start).total_seconds())
            exact = dict(first.dims) == dict(s.dims)
            ttds.append(ttd)
            attributed += exact
            duplicates += len(matched) - 1
            lags_i = [_since(inc.impact_ended_at, s.end) for inc in matched]
            lags_r = [_since(inc.resolved_at, s.end) for inc in matched]
            impact_lags.extend(x for x in lags_i if x is not None)
            resolve_lags.extend(x for x in lags_r if x is not None)
            unresolved += sum(inc.resolved_at is None for inc in matched)
            impact = None if None in lags_i else max(x for x in lags_i if x is not None)
            resolved = None if None in lags_r else max(x for x in lags_r if x is not None)
        results.append(
            ScenarioResult(
                id=s.id,
                kind=s.kind,
                start=s.start,
                end=s.end,
                dims=dict(s.dims),
                harmless=s.harmless,
                detected=detected,
                ttd_seconds=ttd,
                attributed=exact,
                incident_ids=tuple(inc.id for inc in matched),
                impact_ended_seconds=impact,
                resolved_seconds=resolved,
                onset_error_seconds=onset_error,
            )
        )

    expected = sum(not s.harmless for s in in_range)
    detected_count = len(ttds)
    true_pages = len(parsed) - len(false_pages)
    return Score(
        name=name,
        start=start,
        end=end,
        days=days,
        incidents=len(parsed),
        expected=expected,
        detected=detected_count,
        recall=detected_count / expected if expected else 1.0,
        precision=true_pages / len(parsed) if parsed else 1.0,
        false_pages=len(false_pages),
        false_pages_per_day=len(false_pages) / days,
        median_ttd_seconds=statistics.median(ttds) if ttds else None,
        attribution=attributed / detected_count if detected_count else None,
        duplicates=duplicates,
        scenarios=tuple(results),
        false_incidents=tuple(false_pages),
        median_impact_end_seconds=statistics.median(impact_lags) if impact_lags else None,
        max_impact_end_seconds=max(impact_lags) if impact_lags else None,
        median_onset_error_seconds=statistics.median(onset_errors) if onset_errors else None,
        max_onset_error_seconds=max(onset_errors) if onset_errors else None,
        median_resolve_seconds=statistics.median(resolve_lags) if resolve_lags else None,
        max_resolve_seconds=max(resolve_lags) if resolve_lags else None,
        unresolved=unresolved,
        flaps=_flaps(parsed),
    )


def _since(t: datetime | None, end: datetime) -> float | None:
    return None if t is None else (t - end).total_seconds()


def _flaps(incidents: Sequence[_Incident]) -> tuple[Flap, ...]:
    """Incidents re-opened after resolving, or followed on the same detector and slice by a
    new incident within ``FLAP_WITHIN`` of resolving; in the order they were opened."""
    ordered = sorted(incidents, key=lambda inc: (inc.opened_at, inc.id))
    out = []
    for k, inc in enumerate(ordered):
        nxt = None
        if inc.resolved_at is not None:
            nxt = next(
                (
                    later
                    for later in ordered[k + 1 :]
                    if later.detector == inc.detector
                    and dict(later.dims) == dict(inc.dims)
                    and inc.resolved_at <= later.opened_at <= inc.resolved_at + FLAP_WITHIN
                ),
                None,
            )
        if inc.reopened or nxt is not None:
            out.append(Flap(inc.id, inc.detector, inc.dims, inc.reopened, nxt.id if nxt else None))
    return tuple(out)


def _why(harmless: LabelledScenario | None) -> str:
    if harmless is None:
        return "no injected problem"
    kind = "" if harmless.kind in harmless.id else f" ({harmless.kind})"
    return f"during harmless {harmless.id}{kind}"


# --- text ---------------------------------------------------------------------------------


def format_scores(scores: Sequence[Score]) -> str:
    """A plain-text table: one row per figure, one column per score, then the target."""
    rows: list[list[str]] = [["", *(s.name for s in scores), "target"]]
    rows.append(
        [
            "recall",
            *(f"{s.recall:.2f} ({s.detected}/{s.expected})" for s in scores),
            f">= {TARGETS['recall']:.2f}",
        ]
    )
    rows.append(
        [
            "precision",
            *(f"{s.precision:.2f} ({s.incidents - s.false_pages}/{s.incidents})" for s in scores),
            f">= {TARGETS['precision']:.2f}",
        ]
    )
    rows.append(
        [
            "false pages/day",
            *(f"{s.false_pages_per_day:.2f} ({s.false_pages} in {s.days:.3g} d)" for s in scores),
            f"<= {TARGETS['false_pages_per_day']:g}",
        ]
    )
    rows.append(
        [
            "median TTD",
            *(_minutes(s.median_ttd_seconds) for s in scores),
            f"<= {TARGETS['median_ttd_seconds'] / 60:g} min",
        ]
    )
    rows.append(
        [
            "attribution",
            *(_percent(s.attribution) for s in scores),
            f">= {_percent(TARGETS['attribution'])}",
        ]
    )
    rows.append(["duplicates", *(str(s.duplicates) for s in scores), f"{TARGETS['duplicates']:g}"])
    rows.append(
        [
            "onset error, median",
            *(_minutes(s.median_onset_error_seconds) for s in scores),
            f"<= {TARGETS['median_onset_error_seconds'] / 60:g} min",
        ]
    )
    rows.append(
        [
            "onset error, max",
            *(_minutes(s.max_onset_error_seconds) for s in scores),
            f"<= {TARGETS['max_onset_error_seconds'] / 60:g} min",
        ]
    )
    # From the end of each problem (labels' end), over the true pages.
    rows.append(
        [
            "end to impact ended, median",
            *(_minutes(s.median_impact_end_seconds) for s in scores),
            f"<= {TARGETS['median_impact_end_seconds'] / 60:g} min",
        ]
    )
    rows.append(
        [
            "end to impact ended, max",
            *(_minutes(s.max_impact_end_seconds) for s in scores),
            "",
        ]
    )
    rows.append(
        [
            "end to resolved, median",
            *(_minutes(s.median_resolve_seconds) for s in scores),
            f"<= {TARGETS['median_resolve_seconds'] / 60:g} min",
        ]
    )
    rows.append(
        [
            "end to resolved, max",
            *(
                _minutes(s.max_resolve_seconds)
                + (f" ({s.unresolved} still open)" if s.unresolved else "")
                for s in scores
            ),
            f"<= {TARGETS['max_resolve_seconds'] / 60:g} min",
        ]
    )
    rows.append(["flaps", *(str(s.flap_count) for s in scores), f"{TARGETS['flaps']:g}"])
    rows.append(["incidents", *(str(s.incidents) for s in scores), ""])
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    lines = [
        "   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    return "\n".join(lines) + "\n"


def format_misses(s: Score) -> str:
    """What a human should look at: missed problems, wrongly attributed ones, false pages."""
    lines = [
        f"{s.name}: {s.expected - s.detected} of {s.expected} problems missed, "
        f"{s.false_pages} false pages"
    ]
    for r in s.missed:
        lines.append(
            f"  missed     {r.id}  {r.kind}  {_dims_text(r.dims)}  from {_iso(r.start)}"
            f" to {_iso(r.end)}"
        )
    for r in s.scenarios:
        if r.detected and not r.attributed:
            lines.append(
                f"  wrong dims {r.id}  {r.kind}  {_dims_text(r.dims)}: first incident"
                f" {r.incident_ids[0]} does not name exactly these dimensions"
            )
    for f in s.false_incidents:
        lines.append(
            f"  false page {f.id}  {f.detector}  {_dims_text(f.dims)}  opened"
            f" {_iso(f.opened_at)}: {f.why}"
        )
    for r in s.scenarios:
        late = r.resolved_seconds
        if r.detected and late is not None and late > TARGETS["max_resolve_seconds"]:
            lines.append(
                f"  late       {r.id}  {r.kind}  {_dims_text(r.dims)}: resolved"
                f" {_minutes(late)} after it ended ({_iso(r.end)})"
            )
    for fl in s.flaps:
        again = "; ".join(
            ([f"re-opened {fl.reopened} time(s)"] if fl.reopened else [])
            + (
                [f"followed by {fl.next_id} within {_minutes(FLAP_WITHIN.total_seconds())}"]
                if fl.next_id
                else []
            )
        )
        lines.append(f"  flap       {fl.id}  {fl.detector}  {_dims_text(fl.dims)}: {again}")
    return "\n".join(lines) + "\n"


def _minutes(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds / 60:.1f} min"


def _percent(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{ratio * 100:.0f} %"


def _dims_text(dims: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in dims.items()) or "platform-wide"


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _type(value: object) -> str:
    return "null" if value is None else type(value).__name__
