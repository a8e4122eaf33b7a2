"""Static Prometheus alerting rules, replayed over a past range with Prometheus' own semantics.

A team compares paytriage with the rules it runs today (``paytriage backtest --compare-rules
rules.yml``). This module reads a standard rules file (``groups: [{name, interval?, rules:
[{alert, expr, for?, keep_firing_for?, labels?, annotations?}]}]``) and replays each alerting
rule as Prometheus' rule manager would have evaluated it:

- Each rule's ``expr`` is fetched with **one range query** over the whole period
  (:func:`paytriage.detection.fetch.range_chunked`); a range query evaluates the expression at every
  step exactly as an instant query at that time would, so the evaluation instants are the
  step grid ``start, start + step, ... <= end``. The group's ``interval`` is read but the
  grid is the caller's ``step`` (a difference is reported in :attr:`RulesResult.notes`).
  A group's ``query_offset`` shifts the queried times back, as Prometheus does.
- Per label set (the series' labels without ``__name__``, plus the rule's labels, plus
  ``alertname``) the state machine of Prometheus' ``rules/alerting.go`` runs over the grid
  (:func:`alert_periods`): present -> pending with ``ActiveAt`` at the first present instant;
  firing at the first instant ``t`` with ``t - ActiveAt >= for``; absent -> gone (a pending
  alert silently, a firing one resolved at that instant) unless ``keep_firing_for`` keeps a
  firing alert alive. As in Prometheus, the ``keep_firing_for`` clock starts at the first
  evaluation where the condition is absent (``KeepFiringSince``), so the alert resolves at the
  first absent evaluation at least ``keep_firing_for`` after that one; a present evaluation
  resets the clock. A NaN sample is present (Prometheus returns it, and it alerts).
- Every firing period becomes one incident dict in the backtest schema (see
  :func:`evaluate`). Pending-only alerts produce nothing.

**Recording rules are skipped, with a warning** (:attr:`RuleList.skipped`, carried into
:attr:`RulesResult.skipped`), not computed. This is deliberate: against the production
Prometheus that ran them, the recorded series are in its TSDB and an alert reading them
replays faithfully; computing them here could only approximate that. Against a Prometheus
that never ran the recording rule (such as the test stack), an alert whose ``expr``
references the recorded metric simply finds nothing and never fires; the warning names
those alerts so the silence is not mistaken for a quiet period. The same holds for
``ALERTS`` / ``ALERTS_FOR_STATE``, which only exist where Prometheus wrote them.

Not reproduced: a group's ``limit`` (noted, not applied), templating beyond the simple
substitutions of :func:`render_template`, and PromQL syntax checks (run ``promtool check
rules``; a query the server rejects is reported per rule in :attr:`RulesResult.errors`).
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from paytriage.core.types import LABEL_NAME, format_duration
from paytriage.detection.fetch import range_chunked
from paytriage.sources.base import MetricsSource, Series, SourceError

log = logging.getLogger(__name__)

DEFAULT_DIMENSIONS = ("psp", "country", "method")
DEFAULT_SEVERITY = "warning"
_EPS = 1e-6  # seconds: float slack when comparing grid times with durations

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
# Prometheus' model.ParseDuration: integers, units in this order, "0" alone allowed.
_PROM_DURATION = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$"
)
_PROM_UNITS = (365 * 86400.0, 7 * 86400.0, 86400.0, 3600.0, 60.0, 1.0, 0.001)


class RulesError(ValueError):
    """A rules file that cannot be used. ``problems`` lists each one, naming group, rule, key."""

    def __init__(self, problems: Sequence[str], origin: str | None = None) -> None:
        self.problems = list(problems)
        self.origin = origin
        head = f"{origin}: " if origin else ""
        if len(self.problems) == 1:
            text = head + self.problems[0]
        else:
            text = f"{head}{len(self.problems)} problems:\n" + "\n".join(
                f"  {p}" for p in self.problems
            )
        super().__init__(text)


# --- the file format (validated with pydantic) -----------------------------------------------


def prom_duration(value: Any) -> timedelta:
    """A duration as Prometheus' rule files accept it: ``30s``, ``5m``, ``1h30m``, ``0``.

    Stricter than :func:`paytriage.core.types.parse_duration` on purpose: a bare number other
    than 0, a fraction or units out of order are rejected, as ``promtool`` rejects them.
    """
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"bad duration {value!r}: write a number and a unit, like 30s, 5m, 1h")
    text = str(value).strip()
    if text == "0":
        return timedelta(0)
    m = _PROM_DURATION.fullmatch(text)
    if not text or m is None:
        hint = " (Prometheus needs a unit)" if text.isdigit() else ""
        raise ValueError(
            f"bad duration {value!r}{hint}: write whole numbers with units y w d h m s ms "
            "in that order, like 30s, 5m, 1h30m"
        )
    seconds = sum(int(g) * u for g, u in zip(m.groups(), _PROM_UNITS, strict=True) if g)
    return timedelta(seconds=seconds)


def _scalar_text(value: Any) -> Any:
    """YAML scalars become strings, as Go's YAML decoder does for string fields."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def _label_name(value: Any) -> Any:
    if isinstance(value, str) and not LABEL_NAME.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*)")
    return value


def _none_to_empty(value: Any) -> Any:
    return {} if value is None else value


Text = Annotated[str, BeforeValidator(_scalar_text)]
PromDuration = Annotated[timedelta, BeforeValidator(prom_duration)]
LabelName = Annotated[str, BeforeValidator(_label_name)]
LabelMap = Annotated[dict[LabelName, Text], BeforeValidator(_none_to_empty)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _RuleModel(_Model):
    alert: Text | None = None
    record: Text | None = None
    expr: Text
    for_: PromDuration = Field(default=timedelta(0), alias="for")
    keep_firing_for: PromDuration = timedelta(0)
    labels: LabelMap = Field(default_factory=dict)
    annotations: LabelMap = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> _RuleModel:
        if self.alert and self.record:
            raise ValueError("only one of 'alert' and 'record' may be set")
        if not self.alert and not self.record:
            raise ValueError("one of 'alert' or 'record' must be set")
        if not self.expr.strip():
            raise ValueError("'expr' must not be empty")
        if "__name__" in self.labels:
            raise ValueError("'labels': '__name__' cannot be set by a rule")
        if self.record:
            if not _METRIC_NAME.fullmatch(self.record):
                raise ValueError(f"'record': {self.record!r} is not a valid metric name")
            named = {
                "for_": "for",
                "keep_firing_for": "keep_firing_for",
                "annotations": "annotations",
            }
            bad = [key for attr, key in named.items() if attr in self.model_fields_set]
            if bad:
                raise ValueError(
                    f"{', '.join(repr(b) for b in bad)} not allowed in a recording rule"
                )
        return self


class _GroupModel(_Model):
    name: Text = Field(min_length=1)
    interval: PromDuration | None = None
    query_offset: PromDuration | None = None
    limit: int | None = Field(default=None, ge=0)
    labels: LabelMap = Field(default_factory=dict)
    rules: Annotated[list[_RuleModel], BeforeValidator(lambda v: [] if v is None else v)] = Field(
        default_factory=list
    )


class _FileModel(_Model):
    groups: Annotated[list[_GroupModel], BeforeValidator(lambda v: [] if v is None else v)] = Field(
        default_factory=list
    )


# --- parsed rules ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertRule:
    """One alerting rule, ready to evaluate. ``labels`` has the group's labels merged in."""

    name: str  # the alert name (``alertname``)
    expr: str
    group: str
    index: int  # position in the group's ``rules``
    for_: timedelta = timedelta(0)
    keep_firing_for: timedelta = timedelta(0)
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    interval: timedelta | None = None  # the group's, for reference; the grid is the step
    query_offset: timedelta = timedelta(0)

    @property
    def where(self) -> str:
        return f"group {self.group!r}, rules[{self.index}]"


class RuleList(list[AlertRule]):
    """The alerting rules of a file, with warnings about what was skipped or not applied."""

    def __init__(
        self,
        rules: Sequence[AlertRule] = (),
        skipped: Sequence[str] = (),
        notes: Sequence[str] = (),
    ) -> None:
        super().__init__(rules)
        self.skipped = list(skipped)  # recording rules, one message each
        self.notes = list(notes)  # settings read but not applied (a group's limit)


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys, as Prometheus' YAML decoder does."""


def _mapping_no_duplicates(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_no_duplicates)


def load_rules(path: Path) -> RuleList:
    """Read and validate a Prometheus rules file. Raises :class:`RulesError`."""
    origin = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError([f"cannot read the file: {exc.strerror or exc}"], origin) from exc
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise RulesError([f"not valid YAML{where}: {problem}"], origin) from exc
    return parse_rules(data, origin=origin)


def parse_rules(data: Any, origin: str | None = None) -> RuleList:
    """Validate the parsed YAML of a rules file into alerting rules.

    Recording rules are skipped with a warning in :attr:`RuleList.skipped` (see the module
    docstring for why). Every problem is reported at once in one :class:`RulesError`, each
    naming the group (name and index), the rule (name and index) and the key.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise RulesError(["the file must be a mapping with a 'groups' list"], origin)
    try:
        model = _FileModel.model_validate(data)
    except ValidationError as exc:
        raise RulesError([_describe(err, data) for err in exc.errors()], origin) from exc

    problems: list[str] = []
    names = Counter(g.name for g in model.groups)
    for name, count in names.items():
        if count > 1:
            problems.append(
                f"group {name!r}: the name is used by {count} groups; it must be unique"
            )
    if problems:
        raise RulesError(problems, origin)

    rules: list[AlertRule] = []
    recorded: dict[str, str] = {}  # metric name -> where
    notes: list[str] = []
    for gi, g in enumerate(model.groups):
        if g.limit:
            notes.append(
                f"group {g.name!r} (groups[{gi}]): limit {g.limit} is not applied in the backtest"
            )
        for ri, r in enumerate(g.rules):
            if r.record:
                recorded[r.record] = f"group {g.name!r}, rules[{ri}]"
                continue
            assert r.alert is not None
            rules.append(
                AlertRule(
                    name=r.alert,
                    expr=r.expr.strip(),
                    group=g.name,
                    index=ri,
                    for_=r.for_,
                    keep_firing_for=r.keep_firing_for,
                    labels={**g.labels, **r.labels},
                    annotations=dict(r.annotations),
                    interval=g.interval,
                    query_offset=g.query_offset or timedelta(0),
                )
            )
    skipped = []
    for metric, where in recorded.items():
        token = re.compile(rf"(?<![A-Za-z0-9_:]){re.escape(metric)}(?![A-Za-z0-9_:])")
        users = sorted({r.name for r in rules if token.search(r.expr)})
        msg = f"recording rule {metric!r} ({where}) skipped: the backtest does not compute it"
        if users:
            msg += (
                f"; {', '.join(users)} read it and only see what this Prometheus recorded "
                "at the time (nothing, if it never ran the rule)"
            )
        skipped.append(msg)
        log.warning("%s", msg)
    return RuleList(rules, skipped, notes)


def _describe(err: Mapping[str, Any], data: Any) -> str:
    """One pydantic error as ``group 'g' (groups[0]), rule 'R' (rules[2]), key 'for': ...``."""
    loc = list(err.get("loc", ()))
    parts: list[str] = []
    group: Any = None
    if len(loc) >= 2 and loc[0] == "groups" and isinstance(loc[1], int):
        gi = loc[1]
        group = _item(data, "groups", gi)
        name = group.get("name") if isinstance(group, Mapping) else None
        parts.append(f"group {name!r} (groups[{gi}])" if name else f"groups[{gi}]")
        loc = loc[2:]
        if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
            ri = loc[1]
            rule = _item(group, "rules", ri)
            rname = None
            if isinstance(rule, Mapping):
                rname = rule.get("alert") or rule.get("record")
            parts.append(f"rule {rname!r} (rules[{ri}])" if rname else f"rules[{ri}]")
            loc = loc[2:]
    msg = str(err.get("msg", "invalid"))
    msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    kind = err.get("type")
    if loc and loc[-1] == "[key]":  # a bad key inside labels/annotations
        loc = loc[:-1]
    key = ".".join(str(x) for x in loc)
    if kind == "extra_forbidden":
        allowed = _allowed_keys(len(parts))
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        msg = f"unknown key{hint}; allowed: {', '.join(allowed)}"
    elif kind == "missing":
        msg = "required key is missing"
    if key:
        parts.append(f"key {key!r}")
    return ", ".join(parts) + ": " + msg if parts else msg


def _item(container: Any, key: str, index: int) -> Any:
    seq = container.get(key) if isinstance(container, Mapping) else None
    if isinstance(seq, list) and 0 <= index < len(seq):
        return seq[index]
    return None


def _allowed_keys(depth: int) -> list[str]:
    model: type[BaseModel] = (_FileModel, _GroupModel, _RuleModel)[min(depth, 2)]
    return [f.alias or name for name, f in model.model_fields.items()]


# --- templates -------------------------------------------------------------------------------

_TEMPLATE = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}", re.S)
_LABEL_REF = re.compile(r"^(?:\$labels|\.Labels)\.([A-Za-z_][A-Za-z0-9_]*)$")
_VALUE_REF = ("$value", ".Value")
_PRINTF = re.compile(r'^printf\s+"((?:[^"\\]|\\.)*)"(?:\s+(\S+))?$')
_FLOAT_VERB = re.compile(r"%[-+ 0#]*\d*(?:\.\d+)?[eEfFgG]")


def go_float(v: float) -> str:
    """A float roughly as Go's ``%v`` prints it (what ``{{ $value }}`` shows)."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == int(v) and abs(v) < 1e21:
        return str(int(v))
    return repr(v)


def _g4(v: float) -> str:
    if math.isnan(v) or math.isinf(v):
        return go_float(v)
    return f"{v:.4g}"


def humanize(v: float) -> str:
    """Prometheus' ``humanize``: SI prefixes, 4 significant digits."""
    if v == 0 or math.isnan(v) or math.isinf(v):
        return _g4(v)
    prefix = ""
    if abs(v) >= 1:
        for p in ("k", "M", "G", "T", "P", "E", "Z", "Y"):
            if abs(v) < 1000:
                break
            prefix, v = p, v / 1000
    else:
        for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
            if abs(v) >= 1:
                break
            prefix, v = p, v * 1000
    return f"{_g4(v)}{prefix}"


def humanize_duration(v: float) -> str:
    """Prometheus' ``humanizeDuration``: ``1h 2m 3s``, ``4.5s``, ``250ms``."""
    if math.isnan(v) or math.isinf(v):
        return _g4(v)
    if v == 0:
        return "0s"
    if abs(v) >= 1:
        sign = "-" if v < 0 else ""
        v = abs(v)
        total = int(v)
        s, m, h, d = total % 60, total // 60 % 60, total // 3600 % 24, total // 86400
        if d:
            return f"{sign}{d}d {h}h {m}m {s}s"
        if h:
            return f"{sign}{h}h {m}m {s}s"
        if m:
            return f"{sign}{m}m {s}s"
        return f"{sign}{_g4(v)}s"
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(v) >= 1:
            break
        prefix, v = p, v * 1000
    return f"{_g4(v)}{prefix}s"


def _printf(fmt: str, v: float) -> str | None:
    verbs = _FLOAT_VERB.findall(fmt)
    if len(verbs) != 1 or fmt.replace("%%", "").count("%") != 1:
        return None
    return fmt % v


_PIPES = {
    "humanize": humanize,
    "humanizePercentage": lambda v: f"{_g4(v * 100)}%",
    "humanizeDuration": humanize_duration,
}


def render_template(text: str, labels: Mapping[str, str], value: float | None) -> str:
    """Substitute the simple template forms rule files use; leave anything else as written.

    Understood: ``{{ $labels.x }}`` / ``{{ .Labels.x }}`` (a missing label is empty, as with
    Prometheus' ``missingkey=zero``), ``{{ $value }}`` / ``{{ .Value }}``, the pipes
    ``humanize``, ``humanizePercentage``, ``humanizeDuration``, ``toUpper``, ``toLower``,
    ``title`` and ``printf "%.2f" $value`` (or ``$value | printf "%.2f"``). With ``value``
    None (rule labels are rendered once per series), ``$value`` is left as written.
    """

    def one(m: re.Match[str]) -> str:
        stages = [s.strip() for s in m.group(1).split("|")]
        head = stages[0]
        out: str | float
        pm = _PRINTF.fullmatch(head)
        if pm and pm.group(2) in _VALUE_REF and value is not None:
            done = _printf(pm.group(1), value)
            if done is None:
                return m.group(0)
            out = done
        elif head in _VALUE_REF:
            if value is None:
                return m.group(0)
            out = value
        elif (lm := _LABEL_REF.fullmatch(head)) is not None:
            out = labels.get(lm.group(1), "")
        else:
            return m.group(0)
        for stage in stages[1:]:
            pm = _PRINTF.fullmatch(stage)
            if isinstance(out, float) and stage in _PIPES:
                out = _PIPES[stage](out)
            elif isinstance(out, float) and pm and pm.group(2) is None:
                done = _printf(pm.group(1), out)
                if done is None:
                    return m.group(0)
                out = done
            elif isinstance(out, str) and stage in ("toUpper", "toLower", "title"):
                out = {"toUpper": out.upper(), "toLower": out.lower(), "title": out.title()}[stage]
            else:
                return m.group(0)
        return go_float(out) if isinstance(out, float) else out

    return _TEMPLATE.sub(one, text)


# --- the state machine -----------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """One alert that fired: when it became pending, fired, and resolved (None: still firing)."""

    active_at: float
    fired_at: float
    resolved_at: float | None


def alert_periods(
    times: Sequence[float] | np.ndarray,
    present: Sequence[bool] | np.ndarray,
    for_: timedelta,
    keep_firing_for: timedelta = timedelta(0),
) -> list[Period]:
    """Prometheus' alerting state machine for one label set over evaluation instants.

    ``times`` are the evaluation instants (seconds, increasing); ``present[i]`` says whether
    the expression returned this label set at ``times[i]``. Mirrors ``AlertingRule.Eval``:

    - present while inactive -> pending, ``active_at = t``; the same evaluation fires it when
      ``t - active_at >= for`` (so ``for: 0`` fires at once);
    - absent while pending -> dropped (nothing is reported);
    - absent while firing -> resolved at ``t``, unless ``keep_firing_for`` > 0 and
      ``t - keep_firing_since < keep_firing_for``, where ``keep_firing_since`` is the first
      absent evaluation of this stretch (reset when the expression returns again);
    - still firing after the last instant -> ``resolved_at`` None.
    """
    if len(times) != len(present):
        raise ValueError("times and present must have the same length")
    hold = for_.total_seconds()
    keep = keep_firing_for.total_seconds()
    out: list[Period] = []
    state = "inactive"
    active_at = fired_at = 0.0
    keep_since: float | None = None
    for t_raw, p in zip(times, present, strict=True):
        t = float(t_raw)
        if p:
            if state == "inactive":
                state, active_at = "pending", t
            keep_since = None
        elif state == "inactive":
            continue
        elif state == "pending":
            state = "inactive"
            continue
        else:  # firing, absent
            if keep_since is None:
                keep_since = t
            if keep > 0 and t - keep_since < keep - _EPS:
                continue
            out.append(Period(active_at, fired_at, t))
            state, keep_since = "inactive", None
            continue
        if state == "pending" and t - active_at >= hold - _EPS:
            state, fired_at = "firing", t
    if state == "firing":
        out.append(Period(active_at, fired_at, None))
    return out


# --- evaluation against a source -------------------------------------------------------------


@dataclass
class RulesResult:
    """What the rules would have raised: incidents, per-rule errors, skipped rules, notes."""

    alerts: list[dict[str, Any]]
    errors: dict[str, str]  # rule name -> why it could not be evaluated
    skipped: list[str]  # recording rules not computed (see the module docstring)
    notes: list[str] = field(default_factory=list)  # settings not reproduced exactly


def iso(ts: float) -> str:
    """Unix seconds as ISO 8601 UTC with a ``Z``."""
    dt = datetime.fromtimestamp(ts, UTC)
    if dt.microsecond == 0:
        return dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    return dt.isoformat().replace("+00:00", "Z")


def alert_id(alertname: str, labels: Mapping[str, str], fired_at: float) -> str:
    """Stable id of one firing period: alert name, sorted labels and the fired time."""
    key = "\x1f".join([alertname, *(f"{k}={v}" for k, v in sorted(labels.items())), iso(fired_at)])
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def evaluate(
    source: MetricsSource,
    rules: Sequence[AlertRule],
    start: datetime,
    end: datetime,
    step: timedelta,
    dimensions: Sequence[str] = DEFAULT_DIMENSIONS,
) -> RulesResult:
    """Replay ``rules`` over ``[start, end]`` on the step grid, as Prometheus would have.

    One range query per rule. A rule whose query fails (:class:`SourceError`) is reported in
    ``errors`` under its alert name (with group and index when the name is shared) and the
    others carry on. Each firing period is one dict:

    ``id`` (stable: alert name + sorted alert labels + fired time), ``detector`` (the alert
    name), ``opened_at`` (when it fired, ISO 8601 UTC ``Z``), ``resolved_at`` (ISO, or None
    when still firing at ``end``), ``severity`` (the rule's ``severity`` label, else
    "warning"), ``dimensions`` (the series' labels restricted to ``dimensions``) and
    ``title`` (the ``summary`` annotation rendered with the series' labels and the value at
    the firing instant, else the alert name and the dimensions). Sorted by ``opened_at``.
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    if step <= timedelta(0):
        raise ValueError("step must be positive")
    if end < start:
        raise ValueError("end must not be before start")
    n = (end - start) // step + 1
    grid_end = start + step * (n - 1)
    step_s = step.total_seconds()
    times = start.timestamp() + np.arange(n) * step_s

    skipped = list(getattr(rules, "skipped", []))
    notes = list(getattr(rules, "notes", []))
    seen_groups: set[str] = set()
    for rule in rules:
        if rule.group in seen_groups:
            continue
        seen_groups.add(rule.group)
        if rule.interval is not None and abs(rule.interval.total_seconds() - step_s) > _EPS:
            notes.append(
                f"group {rule.group!r} runs every {format_duration(rule.interval)}; "
                f"replayed every {format_duration(step)}, so 'for' is counted on that grid"
            )

    shared = Counter(r.name for r in rules)
    alerts: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    for rule in rules:
        key = rule.name if shared[rule.name] == 1 else f"{rule.name} ({rule.where})"
        off = rule.query_offset
        try:
            series = range_chunked(source, rule.expr, start - off, grid_end - off, step)
        except SourceError as exc:
            errors[key] = str(exc)
            log.warning("rule %s could not be evaluated: %s", key, exc)
            continue
        try:
            alerts.extend(
                _rule_alerts(rule, series, times, (start - off).timestamp(), step_s, dimensions)
            )
        except _EvalError as exc:
            errors[key] = str(exc)
            log.warning("rule %s could not be evaluated: %s", key, exc)
    alerts.sort(key=lambda a: (a["opened_at"], a["detector"], a["id"]))
    return RulesResult(alerts, errors, skipped, notes)


class _EvalError(Exception):
    pass


def _rule_alerts(
    rule: AlertRule,
    series: Sequence[Series],
    times: np.ndarray,
    query_start: float,
    step_s: float,
    dimensions: Sequence[str],
) -> list[dict[str, Any]]:
    n = len(times)
    tracks: dict[tuple[tuple[str, str], ...], tuple[dict[str, str], dict[str, str], Any, Any]] = {}
    for s in series:
        sample_labels = dict(s.labels)
        base = {k: v for k, v in sample_labels.items() if k != "__name__"}
        rule_labels = {k: render_template(v, sample_labels, None) for k, v in rule.labels.items()}
        ident = {**base, **rule_labels, "alertname": rule.name}
        key = tuple(sorted(ident.items()))
        ts = np.asarray(s.timestamps, dtype=float)
        idx = np.rint((ts - query_start) / step_s).astype(np.int64)
        ok = (idx >= 0) & (idx < n)
        if key in tracks:
            _, _, present, values = tracks[key]
            if present[idx[ok]].any():
                clash = float(times[idx[ok][present[idx[ok]]][0]])
                raise _EvalError(
                    f"at {iso(clash)} two series have the same labels {dict(key)} once "
                    "__name__ is dropped and the rule's labels applied; Prometheus fails "
                    "this rule's evaluation then"
                )
        else:
            present, values = np.zeros(n, dtype=bool), np.full(n, np.nan)
            tracks[key] = (sample_labels, rule_labels, present, values)
        present[idx[ok]] = True
        values[idx[ok]] = np.asarray(s.values, dtype=float)[ok]

    out = []
    for key, (sample_labels, rule_labels, present, values) in tracks.items():
        for p in alert_periods(times, present, rule.for_, rule.keep_firing_for):
            i = round((p.fired_at - float(times[0])) / step_s)
            value = float(values[i])
            dims = {d: sample_labels[d] for d in dimensions if d in sample_labels}
            summary = rule.annotations.get("summary")
            if summary:
                title = render_template(summary, sample_labels, value)
            else:
                title = " ".join([rule.name, *(f"{k}={v}" for k, v in dims.items())])
            out.append(
                {
                    "id": alert_id(rule.name, dict(key), p.fired_at),
                    "detector": rule.name,
                    "opened_at": iso(p.fired_at),
                    "resolved_at": None if p.resolved_at is None else iso(p.resolved_at),
                    "severity": rule_labels.get("severity") or DEFAULT_SEVERITY,
                    "dimensions": dims,
                    "title": title,
                }
            )
    return out
