"""Log evidence: the error patterns and error codes that rose in an incident's window.

The core is pure: :func:`mine_patterns` / :func:`rising_patterns` mine templates with drain3
over the messages of the incident window and of the window before it and compare their
rates; :func:`compare_codes` does the same for ``error_code`` terms buckets. The IO edge,
:func:`gather_logs`, reads both windows from a :class:`~paytriage.sources.base.LogSource` with
structured filters only (field names from configuration, exact values taken from the
incident's dimensions), never with query text.

Every message is redacted before drain3 sees it, so a card number or an e-mail address can
never become a template token, and every template and example line is redacted again on
the way out. Variable tokens (ids, numbers, hex, IPs) are masked with drain3's masking
instructions so that one kind of error gives one template.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from paytriage.core.redact import redact as default_redact
from paytriage.domain.findings import QueryRef
from paytriage.sources.base import Bucket, Filters, LogSource, SourceError

if TYPE_CHECKING:
    from paytriage.config.models import LogFields

Redactor = Callable[[str], str]

ERROR_LEVELS: tuple[str, ...] = ("ERROR", "WARN")

REFERENCE_DIMENSION_FIELDS: Mapping[str, str] = {
    "psp": "psp",
    "country": "country",
    "method": "method",
    "event_type": "event_type",
}
"""Incident dimension -> keyword field in the log index (the reference schema,
docs/telemetry.md)."""

_LOG_FIELD_DEFAULTS: Mapping[str, str] = {
    "timestamp": "@timestamp",
    "message": "message",
    "level": "level",
    "service": "service",
    "error_code": "error_code",
}

_NOT_DIMENSIONS = frozenset({"timestamp", "message", "level"})  # roles, not slices

# drain3 masking: variable tokens become <ID>, <UUID>, <HEX>, <IP>, <NUM>, in this order.
_NOT_WORD_BEFORE = r"(?<![A-Za-z0-9_])"
_NOT_WORD_AFTER = r"(?![A-Za-z0-9_])"
MASKS: tuple[tuple[str, str], ...] = (
    (
        _NOT_WORD_BEFORE
        + r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
        + _NOT_WORD_AFTER,
        "UUID",
    ),
    # prefixed ids: pay_8Xk2..., evt_..., re_..., cus_... (a digit, or 10+ characters)
    (
        _NOT_WORD_BEFORE
        + r"[A-Za-z]{1,8}_(?:(?=[A-Za-z]*\d)[A-Za-z0-9]{4,}|[A-Za-z0-9]{10,})"
        + _NOT_WORD_AFTER,
        "ID",
    ),
    (r"(?<![A-Za-z0-9])(?=[a-f]*\d)[0-9a-fA-F]{12,}(?![A-Za-z0-9])", "HEX"),
    (r"(?<![0-9.])\d{1,3}(?:\.\d{1,3}){3}(?![0-9.])", "IP"),
    # numbers, also with a unit glued on: 29884ms -> <NUM>ms, 2s -> <NUM>s, 75% -> <NUM>%
    (
        r"(?<![A-Za-z0-9_.])[-+]?\d+(?:\.\d+)?(?=(?:ms|us|ns|s|m|h|d|%|[kKMG]?B)?"
        + r"(?![A-Za-z0-9_]))",
        "NUM",
    ),
)

DEFAULT_SIM_TH = 0.5
DEFAULT_MAX_MESSAGES = 2000
DEFAULT_MIN_COUNT = 3
DEFAULT_MIN_RISE = 2.0
DEFAULT_DOMINANT_SHARE = 0.6


# -- data ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class LogLine:
    """One log message as read from the source (raw: it may carry secrets)."""

    message: str
    error_code: str | None = None


@dataclass(frozen=True)
class LogPattern:
    """One mined template with its counts in both windows.

    ``rise`` is the ratio of its rate now to its rate before (windows of different lengths
    are compared per second); ``None`` means it is new (not seen before). Counts are
    estimates scaled up from the fetched sample when ``sampled``.
    """

    template: str
    error_code: str | None
    count_now: int
    count_before: int
    rise: float | None
    example: str
    score: float
    rising: bool
    sampled: bool = False
    queries: tuple[QueryRef, ...] = ()

    @property
    def new(self) -> bool:
        return self.count_before == 0 and self.count_now > 0


@dataclass(frozen=True)
class CodeCount:
    """One ``error_code`` terms bucket, now against before (exact counts from the terms)."""

    code: str
    count_now: int
    count_before: int
    rise: float | None
    score: float
    rising: bool
    queries: tuple[QueryRef, ...] = ()

    @property
    def new(self) -> bool:
        return self.count_before == 0 and self.count_now > 0


@dataclass(frozen=True)
class LogEvidence:
    """What the logs say about an incident window, or why they could not be read."""

    start: datetime
    end: datetime
    before_start: datetime
    before_end: datetime
    index: str
    filters: Mapping[str, str | tuple[str, ...]]
    patterns: tuple[LogPattern, ...] = ()  # rising ones, highest rise x count first
    error_codes: tuple[CodeCount, ...] = ()  # every code in either window, rising first
    messages_now: int = 0  # fetched and mined
    messages_before: int = 0
    total_now: int = 0  # matching documents
    total_before: int = 0
    ignored_dimensions: tuple[str, ...] = ()
    queries: tuple[QueryRef, ...] = ()
    missing: str | None = None

    @property
    def rising_codes(self) -> tuple[CodeCount, ...]:
        return tuple(c for c in self.error_codes if c.rising)


# -- pure core -----------------------------------------------------------------------------
def _rise(
    count_now: float, count_before: float, now_seconds: float, before_seconds: float
) -> tuple[float | None, float]:
    """(rate ratio or None when new, smoothed ratio used for ranking and the threshold)."""
    expected = count_before * now_seconds / before_seconds
    rise = (
        None if count_before == 0 else (count_now / now_seconds) / (count_before / before_seconds)
    )
    return rise, (count_now + 1.0) / (expected + 1.0)


def _check_seconds(now_seconds: float, before_seconds: float) -> None:
    if now_seconds <= 0 or before_seconds <= 0:
        raise ValueError("window lengths must be positive")


def _scale(fetched: int, total: int | None) -> float:
    if total is None or fetched <= 0 or total <= fetched:
        return 1.0
    return total / fetched


def new_miner(sim_th: float = DEFAULT_SIM_TH) -> Any:
    """An in-memory drain3 TemplateMiner (no persistence) with the variable-token masks."""
    from drain3 import TemplateMiner
    from drain3.masking import MaskingInstruction
    from drain3.template_miner_config import TemplateMinerConfig

    cfg = TemplateMinerConfig()
    cfg.drain_sim_th = sim_th
    cfg.drain_depth = 4
    cfg.drain_max_clusters = 1000
    cfg.masking_instructions = [MaskingInstruction(p, name) for p, name in MASKS]
    cfg.parametrize_numeric_tokens = True
    cfg.profiling_enabled = False
    return TemplateMiner(persistence_handler=None, config=cfg)


def _as_line(m: LogLine | str) -> LogLine:
    return m if isinstance(m, LogLine) else LogLine(str(m))


def mine_patterns(
    now: Sequence[LogLine | str],
    before: Sequence[LogLine | str],
    *,
    now_seconds: float = 1.0,
    before_seconds: float = 1.0,
    now_total: int | None = None,
    before_total: int | None = None,
    min_count: int = DEFAULT_MIN_COUNT,
    min_rise: float = DEFAULT_MIN_RISE,
    dominant_share: float = DEFAULT_DOMINANT_SHARE,
    sim_th: float = DEFAULT_SIM_TH,
    queries: tuple[QueryRef, ...] = (),
    redact: Redactor | None = None,
) -> list[LogPattern]:
    """Every template seen in either window, highest rise x count first.

    ``now``/``before`` are the messages of the incident window and of the window before it
    (newest first, as a source returns them: the first one of a template is its example);
    ``*_seconds`` the windows' lengths; ``*_total`` how many documents matched when only a
    sample was fetched (counts are then scaled up). A template is ``rising`` when its count
    now is at least ``min_count`` and ``(now + 1) / (expected + 1) >= min_rise``, where
    ``expected`` is its count before scaled to the length of the incident window.
    """
    _check_seconds(now_seconds, before_seconds)
    red = redact or default_redact
    miner = new_miner(sim_th)
    now_lines = [_as_line(m) for m in now]
    before_lines = [_as_line(m) for m in before]
    # the window before first: templates then generalise over both windows the same way
    before_ids = [miner.add_log_message(red(ln.message))["cluster_id"] for ln in before_lines]
    now_redacted = [red(ln.message) for ln in now_lines]
    now_ids = [miner.add_log_message(text)["cluster_id"] for text in now_redacted]

    n_now: Counter[int] = Counter(now_ids)
    n_before: Counter[int] = Counter(before_ids)
    codes: dict[int, Counter[str]] = {}
    example: dict[int, str] = {}
    for cid, ln, text in zip(now_ids, now_lines, now_redacted, strict=True):
        codes.setdefault(cid, Counter())[ln.error_code or ""] += 1
        example.setdefault(cid, text)
    for cid, ln in zip(before_ids, before_lines, strict=True):
        if cid not in example:
            example[cid] = red(ln.message)
        if n_now[cid] == 0:
            codes.setdefault(cid, Counter())[ln.error_code or ""] += 1

    scale_now = _scale(len(now_lines), now_total)
    scale_before = _scale(len(before_lines), before_total)
    sampled = scale_now > 1.0 or scale_before > 1.0
    templates = {c.cluster_id: c.get_template() for c in miner.drain.clusters}
    out = []
    for cid, template in templates.items():
        c_now = round(n_now[cid] * scale_now)
        c_before = round(n_before[cid] * scale_before)
        if c_now == 0 and c_before == 0:
            continue
        rise, smoothed = _rise(c_now, c_before, now_seconds, before_seconds)
        code = _dominant(codes.get(cid, Counter()), dominant_share)
        out.append(
            LogPattern(
                template=red(template),
                error_code=code,
                count_now=c_now,
                count_before=c_before,
                rise=rise,
                example=red(example[cid]),
                score=smoothed * c_now,
                # when sampled, one line scaled up is not enough to call a rise
                rising=c_now >= min_count
                and n_now[cid] >= min(min_count, 2)
                and smoothed >= min_rise,
                sampled=sampled,
                queries=queries,
            )
        )
    out.sort(key=lambda p: (-p.score, -p.count_now, p.template))
    return out


def rising_patterns(
    now: Sequence[LogLine | str],
    before: Sequence[LogLine | str],
    *,
    limit: int | None = 10,
    **kwargs: Any,
) -> list[LogPattern]:
    """The templates that rose in the incident window, highest rise x count first.

    Takes the arguments of :func:`mine_patterns`; a template as frequent before as now never
    appears here.
    """
    rising = [p for p in mine_patterns(now, before, **kwargs) if p.rising]
    return rising if limit is None else rising[:limit]


def _dominant(codes: Counter[str], share: float) -> str | None:
    total = sum(codes.values())
    if not total:
        return None
    code, n = codes.most_common(1)[0]
    return code if code and n / total >= share else None


def compare_codes(
    now: Sequence[Bucket],
    before: Sequence[Bucket],
    *,
    now_seconds: float = 1.0,
    before_seconds: float = 1.0,
    min_count: int = DEFAULT_MIN_COUNT,
    min_rise: float = DEFAULT_MIN_RISE,
    queries: tuple[QueryRef, ...] = (),
) -> list[CodeCount]:
    """Terms buckets of the incident window against the window before: every key of either,
    rising ones first, then by rise x count (same rule as :func:`mine_patterns`)."""
    _check_seconds(now_seconds, before_seconds)
    now_n: Counter[str] = Counter()
    before_n: Counter[str] = Counter()
    for b in now:
        now_n[str(b.key)] += b.count
    for b in before:
        before_n[str(b.key)] += b.count
    out = []
    for key in set(now_n) | set(before_n):
        c_now, c_before = now_n[key], before_n[key]
        rise, smoothed = _rise(c_now, c_before, now_seconds, before_seconds)
        out.append(
            CodeCount(
                code=key,
                count_now=c_now,
                count_before=c_before,
                rise=rise,
                score=smoothed * c_now,
                rising=c_now >= min_count and smoothed >= min_rise,
                queries=queries,
            )
        )
    out.sort(key=lambda c: (not c.rising, -c.score, -c.count_now, c.count_before, c.code))
    return out


def _field(fields: Any, name: str) -> str | None:
    if isinstance(fields, Mapping):
        value = fields.get(name)
    else:
        value = getattr(fields, name, None)
    return value if isinstance(value, str) and value else None


def log_filters(
    fields: LogFields | Mapping[str, str],
    dimensions: Mapping[str, str],
    levels: Sequence[str] = ERROR_LEVELS,
    dimension_fields: Mapping[str, str] | None = None,
) -> tuple[dict[str, str | tuple[str, ...]], tuple[str, ...]]:
    """The exact-match filters for an incident's logs, and the dimensions that have no field.

    A dimension maps to the field ``fields`` names for it (a ``LogFields`` or a mapping), else
    to ``dimension_fields`` (default: the reference schema's ``psp``, ``country``, ``method``,
    ``event_type``). Values are used as exact terms, never parsed.
    """
    dim_fields = REFERENCE_DIMENSION_FIELDS if dimension_fields is None else dimension_fields
    level_field = _field(fields, "level") or _LOG_FIELD_DEFAULTS["level"]
    filters: dict[str, str | tuple[str, ...]] = {}
    if levels:
        filters[level_field] = tuple(str(v) for v in levels)
    ignored = []
    for dim in sorted(dimensions):
        value = dimensions[dim]
        fld = None if dim in _NOT_DIMENSIONS else _field(fields, dim) or dim_fields.get(dim)
        if not fld or not isinstance(value, str) or not value:
            ignored.append(dim)
            continue
        filters[fld] = value
    return filters, tuple(ignored)


def describe_query(op: str, index: str, filters: Filters, **extra: Any) -> str:
    """A readable, exact description of a structured query (its time window is in the ref)."""
    flt = {k: (v if isinstance(v, str) else list(v)) for k, v in filters.items()}
    return json.dumps(
        {"op": op, "index": index, "filters": flt, **extra}, sort_keys=True, separators=(",", ":")
    )


# -- IO edge -------------------------------------------------------------------------------
def gather_logs(
    source: LogSource,
    index: str,
    fields: LogFields | Mapping[str, str],
    dimensions: Mapping[str, str],
    start: datetime,
    end: datetime,
    before: timedelta | None = None,
    max_messages: int = DEFAULT_MAX_MESSAGES,
    *,
    levels: Sequence[str] = ERROR_LEVELS,
    dimension_fields: Mapping[str, str] | None = None,
    min_count: int = DEFAULT_MIN_COUNT,
    min_rise: float = DEFAULT_MIN_RISE,
    limit: int | None = 10,
    codes_size: int = 50,
    redact: Redactor | None = None,
) -> LogEvidence:
    """Read ERROR/WARN logs of the incident's slice in [start, end) and in the window before
    (``before`` long, default as long as the incident window, ending at ``start``), and
    return the templates and error codes that rose. A failing source gives evidence with
    ``missing`` set, never an exception.

    ``fields`` names the message, level and error-code fields (a ``LogFields`` or a mapping
    with the same keys, which may also name a field per dimension). Up to ``max_messages``
    messages per window are mined, the newest first; beyond that, template counts are
    estimates scaled to the matching totals (``sampled``), while error-code counts come from
    terms aggregations and stay exact.
    """
    if end <= start:
        raise ValueError("end must be after start")
    if max_messages < 1:
        raise ValueError("max_messages must be at least 1")
    red = redact or default_redact
    span = before if before is not None else end - start
    if span <= timedelta(0):
        raise ValueError("before must be positive")
    b_start, b_end = start - span, start
    filters, ignored = log_filters(fields, dimensions, levels, dimension_fields)
    msg_field = _field(fields, "message") or _LOG_FIELD_DEFAULTS["message"]
    code_field = _field(fields, "error_code") or _LOG_FIELD_DEFAULTS["error_code"]
    sort_field = _field(fields, "timestamp") or _LOG_FIELD_DEFAULTS["timestamp"]

    def search_ref(a: datetime, b: datetime) -> QueryRef:
        q = describe_query("search", index, filters, size=max_messages, sort=f"{sort_field} desc")
        return QueryRef("opensearch", q, a, b)

    def terms_ref(a: datetime, b: datetime) -> QueryRef:
        q = describe_query("terms", index, filters, field=code_field, size=codes_size)
        return QueryRef("opensearch", q, a, b)

    s_now, s_before = search_ref(start, end), search_ref(b_start, b_end)
    t_now, t_before = terms_ref(start, end), terms_ref(b_start, b_end)
    evidence = LogEvidence(
        start=start,
        end=end,
        before_start=b_start,
        before_end=b_end,
        index=index,
        filters=filters,
        ignored_dimensions=ignored,
        queries=(s_now, s_before, t_now, t_before),
    )
    try:
        res_now = source.search(index, start, end, filters, size=max_messages)
        res_before = source.search(index, b_start, b_end, filters, size=max_messages)
        codes_now = source.terms(index, code_field, start, end, filters, size=codes_size)
        codes_before = source.terms(index, code_field, b_start, b_end, filters, size=codes_size)
    except SourceError as exc:
        return replace(
            evidence,
            missing=f"logs unavailable: {exc.source} {exc.kind.value} error: {red(exc.detail)}",
        )

    def lines(hits: Sequence[Mapping[str, Any]]) -> list[LogLine]:
        out = []
        for h in hits:
            msg = h.get(msg_field)
            if isinstance(msg, str) and msg:
                code = h.get(code_field)
                out.append(LogLine(msg, str(code) if code not in (None, "") else None))
        return out

    now_lines, before_lines = lines(res_now.hits), lines(res_before.hits)
    now_s = (end - start).total_seconds()
    before_s = span.total_seconds()
    patterns = rising_patterns(
        now_lines,
        before_lines,
        limit=limit,
        now_seconds=now_s,
        before_seconds=before_s,
        now_total=res_now.total,
        before_total=res_before.total,
        min_count=min_count,
        min_rise=min_rise,
        queries=(s_now, s_before),
        redact=red,
    )
    codes = compare_codes(
        codes_now,
        codes_before,
        now_seconds=now_s,
        before_seconds=before_s,
        min_count=min_count,
        min_rise=min_rise,
        queries=(t_now, t_before),
    )
    return replace(
        evidence,
        patterns=tuple(patterns),
        error_codes=tuple(codes),
        messages_now=len(now_lines),
        messages_before=len(before_lines),
        total_now=res_now.total,
        total_before=res_before.total,
    )


__all__ = [
    "ERROR_LEVELS",
    "MASKS",
    "REFERENCE_DIMENSION_FIELDS",
    "CodeCount",
    "LogEvidence",
    "LogLine",
    "LogPattern",
    "compare_codes",
    "describe_query",
    "gather_logs",
    "log_filters",
    "mine_patterns",
    "new_miner",
    "rising_patterns",
]
