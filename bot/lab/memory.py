"""In-memory data sources: ``paytriage demo`` runs the whole pipeline with no servers.

``InMemoryMetrics`` is a small PromQL engine over series held in memory. Queries are parsed
with ``promql-parser`` and evaluated with numpy, vectorised over the evaluation times, so a
day-long range query costs about as much as an instant one. It answers as the Prometheus the
integration tests run (2.42) does: closed ranges ``[t - range, t]``, a 5-minute lookback for
instant selectors (also closed), ``rate``/``increase`` extrapolated as ``extrapolatedRate``
does (counter resets, the zero point of a counter, fewer than two samples give nothing),
``histogram_quantile`` as ``bucketQuantile``, the metric name dropped where Prometheus drops
it, duplicate label sets refused. What it does not implement raises a ``SourceError``
(``ErrorKind.query``) naming the construct: never a silent wrong answer.

``InMemoryLogs`` holds documents per index and answers the three calls of
:class:`paytriage.sources.base.LogSource` as
:class:`paytriage.sources.opensearch.OpenSearchSource` gets
them answered by OpenSearch: index patterns, the half-open time range, exact-match filters on
mapped field types, newest/oldest first, exact totals, terms buckets by count then key, and
epoch-aligned ``fixed_interval`` histograms with empty buckets over the requested bounds.

``from_simulation(data, ...)`` builds both from ``paytriage.lab.simulate.generate`` output, with the
values as ``paytriage simulate`` writes them (so the answers equal a loaded real stack's).
"""

from __future__ import annotations

import copy
import fnmatch
import math
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import promql_parser as pp

from paytriage.core.types import format_duration
from paytriage.sources.base import Bucket, ErrorKind, Filters, SearchResult, Series, SourceError

if TYPE_CHECKING:
    from paytriage.lab.simulate import SimulatedData
    from paytriage.lab.simulate.model import Family

Labels = tuple[tuple[str, str], ...]
"""A label set, sorted by name; ``__name__`` included where the series has one."""

NAME = "__name__"
LOOKBACK = timedelta(minutes=5)
MAX_POINTS = 11_000  # Prometheus refuses range queries with more points per series
MAX_WINDOW_CELLS = 400_000_000  # series x steps x samples per window for *_over_time
MAX_SEARCH_SIZE = 10_000  # OpenSearch's default index.max_result_window

RawSeries = tuple[Mapping[str, str], Any, Any]
"""(labels with ``__name__``, unix-second timestamps, values; NaN = no sample)."""


# --- values flowing through the evaluator ------------------------------------------------------


@dataclass
class _Vec:
    """An instant vector at every evaluation time: one row per label set."""

    labels: list[Labels]
    values: np.ndarray  # (S, K) float64
    present: np.ndarray  # (S, K) bool: the row has a sample at that step
    stamps: np.ndarray | None = None  # (S, K) int64 ms of the sample (selectors only)


@dataclass
class _Scalar:
    values: np.ndarray  # (K,)


@dataclass
class _Str:
    value: str


@dataclass
class _Matrix:
    """A range selector: evaluated by the function that takes it."""

    rows: np.ndarray
    range_ms: int
    offset_ms: int
    selector: pp.VectorSelector


_Value = _Vec | _Scalar | _Str | _Matrix


def _drop_name(labels: Labels) -> Labels:
    return tuple(kv for kv in labels if kv[0] != NAME)


def _ms(td: timedelta) -> int:
    return (td.days * 86_400 + td.seconds) * 1000 + td.microseconds // 1000


# --- the series store -----------------------------------------------------------------------


class _Store:
    """Every series on one sorted time axis: ``values[s, j]`` at ``times[j]`` (NaN = none)."""

    def __init__(self, series: Iterable[RawSeries]) -> None:
        merged: dict[Labels, list[tuple[np.ndarray, np.ndarray]]] = {}
        for labels, ts, vs in series:
            key = tuple(sorted((str(k), str(v)) for k, v in labels.items() if v != ""))
            if not any(k == NAME for k, _ in key):
                raise ValueError(f"series {dict(key)} has no {NAME} label")
            t = np.rint(np.asarray(ts, dtype=np.float64) * 1000.0).astype(np.int64)
            v = np.asarray(vs, dtype=np.float64)
            if t.shape != v.shape or t.ndim != 1:
                raise ValueError(f"series {dict(key)}: timestamps and values differ in shape")
            merged.setdefault(key, []).append((t, v))
        self.labels: list[Labels] = sorted(merged)
        stamps = [t[~np.isnan(v)] for parts in merged.values() for t, v in parts]
        times = np.unique(np.concatenate(stamps)) if stamps else np.zeros(0, np.int64)
        self.empty = not len(times)
        # An empty store still has one (sample-less) time, so that no index is out of range.
        self.times: np.ndarray = times if len(times) else np.zeros(1, np.int64)
        n = len(self.times)
        self.values: np.ndarray = np.full((len(self.labels), n), np.nan)
        for row, key in enumerate(self.labels):
            for t, v in merged[key]:
                ok = ~np.isnan(v)
                self.values[row, np.searchsorted(self.times, t[ok])] = v[ok]
        self.by_name: dict[str, list[int]] = {}
        for row, key in enumerate(self.labels):
            self.by_name.setdefault(dict(key)[NAME], []).append(row)
        self._lock = threading.Lock()
        self._aux: dict[str, np.ndarray] = {}
        self._selections: dict[tuple[Any, ...], np.ndarray] = {}

    @property
    def n(self) -> int:
        return len(self.times)

    def aux(self, what: str) -> np.ndarray:
        """Per-series prefix arrays over the time axis, computed once (all shape (S, N+1)):

        - ``cnt``: samples before index j; ``prev``: the last sample index before j (-1);
        - ``next``: the first sample index at or after j (N when none);
        - ``reset``/``resets``/``changes``: prefix sums, over samples before j, of the value
          a counter reset adds, of resets and of value changes (each against the previous
          sample of the series).
        """
        with self._lock:
            if what not in self._aux:
                self._compute(what)
            return self._aux[what]

    def _compute(self, what: str) -> None:
        s, n = self.values.shape
        valid = ~np.isnan(self.values)
        idx = np.arange(n)
        if what == "cnt":
            self._aux[what] = np.concatenate(
                [np.zeros((s, 1), np.int64), np.cumsum(valid, axis=1)], axis=1
            )
        elif what == "prev":
            last = np.maximum.accumulate(np.where(valid, idx, -1), axis=1)
            self._aux[what] = np.concatenate([np.full((s, 1), -1, np.int64), last], axis=1)
        elif what == "next":
            rev = np.where(valid, idx, n)[:, ::-1]
            first = np.minimum.accumulate(rev, axis=1)[:, ::-1]
            self._aux[what] = np.concatenate([first, np.full((s, 1), n, np.int64)], axis=1)
        else:
            prev = self.aux_unlocked("prev")[:, :n]  # last sample before each index
            has_prev = valid & (prev >= 0)
            pv = np.take_along_axis(self.values, np.maximum(prev, 0), axis=1)
            cur = self.values
            if what == "reset":
                step = np.where(has_prev & (cur < pv), pv, 0.0)
            elif what == "resets":
                step = (has_prev & (cur < pv)).astype(np.int64)
            elif what == "changes":
                step = (has_prev & (cur != pv)).astype(np.int64)
            else:  # pragma: no cover - internal names only
                raise KeyError(what)
            self._aux[what] = np.concatenate(
                [np.zeros((s, 1), step.dtype), np.cumsum(step, axis=1)], axis=1
            )

    def aux_unlocked(self, what: str) -> np.ndarray:
        if what not in self._aux:
            self._compute(what)
        return self._aux[what]

    def select(self, sel: pp.VectorSelector, fail: Callable[[str], SourceError]) -> np.ndarray:
        matchers = [(m.name, _op_name(m.op), m.value) for m in sel.matchers.matchers]
        key = (sel.name, tuple(matchers))
        with self._lock:
            hit = self._selections.get(key)
        if hit is not None:
            return hit
        tests: list[Callable[[str], bool]] = []
        for _, op, value in matchers:
            tests.append(_matcher(op, value, fail))
        rows = self.by_name.get(sel.name, []) if sel.name else range(len(self.labels))
        out = []
        for row in rows:
            lab = dict(self.labels[row])
            if all(t(lab.get(name, "")) for (name, _, _), t in zip(matchers, tests, strict=True)):
                out.append(row)
        arr = np.asarray(out, dtype=np.int64)
        with self._lock:
            self._selections[key] = arr
        return arr


def _op_name(op: pp.MatchOp) -> str:
    for name in ("Equal", "NotEqual", "Re", "NotRe"):
        if op == getattr(pp.MatchOp, name):
            return name
    return str(op)


def _matcher(op: str, value: str, fail: Callable[[str], SourceError]) -> Callable[[str], bool]:
    if op == "Equal":
        return lambda v: v == value
    if op == "NotEqual":
        return lambda v: v != value
    try:
        rx = re.compile(f"(?:{value})")
    except re.error as exc:
        raise fail(f"bad regular expression {value!r}: {exc}") from None
    if op == "Re":
        return lambda v: rx.fullmatch(v) is not None
    if op == "NotRe":
        return lambda v: rx.fullmatch(v) is None
    raise fail(f"unsupported label matcher operator {op}")


# --- the evaluator --------------------------------------------------------------------------

_ARITH: dict[str, Callable[[Any, Any], Any]] = {
    "+": np.add,
    "-": np.subtract,
    "*": np.multiply,
    "/": np.divide,
    "^": np.power,
    "%": np.fmod,
    "atan2": np.arctan2,
}
_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "==": np.equal,
    "!=": np.not_equal,
    ">": np.greater,
    "<": np.less,
    ">=": np.greater_equal,
    "<=": np.less_equal,
}
_DROPS_NAME = frozenset({"+", "-", "*", "/", "^", "%"})  # Prometheus 2.x: not atan2
_SET_OPS = frozenset({"and", "or", "unless"})

_RATE_FUNCS = {  # name: (is_counter, is_rate)
    "rate": (True, True),
    "increase": (True, False),
    "delta": (False, False),
}
_OVER_TIME = frozenset(
    {
        "avg_over_time",
        "sum_over_time",
        "min_over_time",
        "max_over_time",
        "count_over_time",
        "last_over_time",
        "present_over_time",
        "stddev_over_time",
        "stdvar_over_time",
        "quantile_over_time",
    }
)


def _go_round(x: np.ndarray) -> np.ndarray:
    return np.floor(x + 0.5)


def _go_max(a: Any, b: Any) -> Any:
    """Go's math.Max: +Inf wins over NaN, else NaN wins."""
    out = np.maximum(a, b)
    return np.where(np.isposinf(a) | np.isposinf(b), np.inf, out)


def _go_min(a: Any, b: Any) -> Any:
    out = np.minimum(a, b)
    return np.where(np.isneginf(a) | np.isneginf(b), -np.inf, out)


def _sgn(x: np.ndarray) -> np.ndarray:
    return np.where(x < 0, -1.0, np.where(x > 0, 1.0, x))


_MATH: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "abs": np.abs,
    "ceil": np.ceil,
    "floor": np.floor,
    "exp": np.exp,
    "ln": np.log,
    "log2": np.log2,
    "log10": np.log10,
    "sqrt": np.sqrt,
    "sgn": _sgn,
}


class _Eval:
    """One query at the evaluation times ``ts`` (int64 ms)."""

    def __init__(self, store: _Store, source: str, query: str, ts: np.ndarray, lookback: int):
        self.store = store
        self.source = source
        self.query = query
        self.ts = ts
        self.k = len(ts)
        self.lookback = lookback

    # -- errors --------------------------------------------------------------------------
    def fail(self, detail: str) -> SourceError:
        """The error to raise: Prometheus would refuse the query (HTTP 400/422)."""
        return SourceError(self.source, ErrorKind.query, self.query, detail)

    def unsupported(self, what: str) -> SourceError:
        return self.fail(f"not supported by the in-memory PromQL engine: {what}")

    # -- dispatch ------------------------------------------------------------------------
    def eval(self, node: Any) -> _Value:
        if isinstance(node, pp.ParenExpr):
            return self.eval(node.expr)
        if isinstance(node, pp.NumberLiteral):
            return _Scalar(np.full(self.k, float(node.val)))
        if isinstance(node, pp.StringLiteral):
            return _Str(node.val)
        if isinstance(node, pp.VectorSelector):
            return self.vector_selector(node)
        if isinstance(node, pp.MatrixSelector):
            return self.matrix_selector(node)
        if isinstance(node, pp.UnaryExpr):
            return self.negate(self.eval(node.expr))
        if isinstance(node, pp.BinaryExpr):
            return self.binary(node)
        if isinstance(node, pp.AggregateExpr):
            return self.aggregate(node)
        if isinstance(node, pp.Call):
            return self.call(node)
        if isinstance(node, pp.SubqueryExpr):
            raise self.unsupported("subqueries (expr[range:step])")
        raise self.unsupported(type(node).__name__)

    def vec(self, node: Any) -> _Vec:
        v = self.eval(node)
        if not isinstance(v, _Vec):
            raise self.fail(f"expected an instant vector, got {type(v).__name__} in {node}")
        return v

    def scalar(self, node: Any) -> np.ndarray:
        v = self.eval(node)
        if not isinstance(v, _Scalar):
            raise self.fail(f"expected a scalar, got {type(v).__name__} in {node}")
        return v.values

    # -- selectors -----------------------------------------------------------------------
    def _check_selector(self, sel: pp.VectorSelector) -> int:
        if sel.at is not None:
            raise self.unsupported("the @ modifier")
        if sel.matchers.or_matchers:
            raise self.unsupported("'or' between label matchers")
        off = _ms(sel.offset) if sel.offset is not None else 0
        if off < 0:
            raise self.unsupported("negative offsets")
        return off

    def vector_selector(self, sel: pp.VectorSelector) -> _Vec:
        off = self._check_selector(sel)
        rows = self.store.select(sel, self.fail)
        st = self.store
        ref = self.ts - off
        hi = np.searchsorted(st.times, ref, side="right")
        last = st.aux("prev")[np.ix_(rows, hi)]
        ok = last >= 0
        lc = np.where(ok, last, 0)
        stamps = st.times[lc]
        ok &= stamps >= (ref - self.lookback)[None, :]
        values = st.values[rows[:, None], lc]
        return _Vec([st.labels[r] for r in rows], values, ok, stamps)

    def matrix_selector(self, ms: pp.MatrixSelector) -> _Matrix:
        sel = ms.vector_selector
        off = self._check_selector(sel)
        return _Matrix(self.store.select(sel, self.fail), _ms(ms.range), off, sel)

    def window(self, m: _Matrix) -> tuple[np.ndarray, ...]:
        """(first, last, count, lo, hi) of each row's samples in ``[t - range, t]``."""
        st = self.store
        ref = self.ts - m.offset_ms
        lo = np.searchsorted(st.times, ref - m.range_ms, side="left")
        hi = np.searchsorted(st.times, ref, side="right")
        first = st.aux("next")[np.ix_(m.rows, lo)]
        last = st.aux("prev")[np.ix_(m.rows, hi)]
        cnt = st.aux("cnt")
        n = cnt[np.ix_(m.rows, hi)] - cnt[np.ix_(m.rows, lo)]
        return first, last, n, lo, hi

    def _at(self, m: _Matrix, idx: np.ndarray, what: str = "values") -> np.ndarray:
        st = self.store
        safe = np.clip(idx, 0, st.n - 1)
        if what == "times":
            return st.times[safe]
        return st.values[m.rows[:, None], safe]

    def _matrix_result(self, m: _Matrix, values: np.ndarray, ok: np.ndarray, keep: bool) -> _Vec:
        labels = [self.store.labels[r] for r in m.rows]
        if not keep:
            labels = [_drop_name(lab) for lab in labels]
        return self.dedupe(_Vec(labels, values, ok), strict=True)

    # -- functions over ranges -----------------------------------------------------------
    def rate(self, m: _Matrix, is_counter: bool, is_rate: bool) -> _Vec:
        first, last, n, _, _ = self.window(m)
        ok = n >= 2
        fc, lc = np.where(ok, first, 0), np.where(ok, last, 0)
        vf, vl = self._at(m, fc), self._at(m, lc)
        tf, tl = self._at(m, fc, "times"), self._at(m, lc, "times")
        with np.errstate(all="ignore"):
            result = vl - vf
            if is_counter:
                reset = self.store.aux("reset")
                rows = m.rows[:, None]
                result = result + (reset[rows, lc + 1] - reset[rows, fc + 1])
            range_end = (self.ts - m.offset_ms)[None, :]
            range_start = range_end - m.range_ms
            to_start = (tf - range_start).astype(np.float64) / 1000
            to_end = (range_end - tl).astype(np.float64) / 1000
            sampled = (tl - tf).astype(np.float64) / 1000
            avg = sampled / np.maximum(n - 1, 1)
            if is_counter:
                to_zero = sampled * (vf / result)
                use = (result > 0) & (vf >= 0) & (to_zero < to_start)
                to_start = np.where(use, to_zero, to_start)
            threshold = avg * 1.1
            extrapolate = sampled + np.where(to_start < threshold, to_start, avg / 2)
            extrapolate = extrapolate + np.where(to_end < threshold, to_end, avg / 2)
            factor = extrapolate / sampled
            if is_rate:
                factor = factor / (m.range_ms / 1000)
            result = result * factor
        return self._matrix_result(m, result, ok, keep=False)

    def instant_rate(self, m: _Matrix, is_rate: bool) -> _Vec:
        _, last, n, _, _ = self.window(m)
        ok = n >= 2
        lc = np.where(ok, last, 0)
        prev = self.store.aux("prev")[m.rows[:, None], lc]  # the sample before the last
        pc = np.where(ok, prev, 0)
        vl, vp = self._at(m, lc), self._at(m, pc)
        dt = self._at(m, lc, "times") - self._at(m, pc, "times")
        with np.errstate(all="ignore"):
            if is_rate:
                result = np.where(vl < vp, vl, vl - vp) / (dt.astype(np.float64) / 1000)
            else:
                result = vl - vp
        return self._matrix_result(m, result, ok & (dt != 0), keep=False)

    def count_changes(self, m: _Matrix, what: str) -> _Vec:
        first, last, n, _, _ = self.window(m)
        ok = n >= 1
        fc, lc = np.where(ok, first, 0), np.where(ok, last, 0)
        pre = self.store.aux(what)
        rows = m.rows[:, None]
        result = (pre[rows, lc + 1] - pre[rows, fc + 1]).astype(np.float64)
        return self._matrix_result(m, result, ok, keep=False)

    def over_time(self, name: str, m: _Matrix, q: np.ndarray | None) -> _Vec:
        _, last, n, lo, hi = self.window(m)
        ok = n >= 1
        if name == "count_over_time":
            return self._matrix_result(m, n.astype(np.float64), ok, keep=False)
        if name == "present_over_time":
            return self._matrix_result(m, np.ones(n.shape), ok, keep=False)
        if name == "last_over_time":
            values = self._at(m, np.where(ok, last, 0))
            return self._matrix_result(m, values, ok, keep=True)
        width = int((hi - lo).max()) if len(lo) else 0
        s = len(m.rows)
        out = np.full((s, self.k), np.nan)
        if s and width:
            if s * self.k * width > MAX_WINDOW_CELLS:
                raise self.unsupported(
                    f"{name} over {s} series x {self.k} steps x {width} samples (too large)"
                )
            chunk = max(1, 4_000_000 // (s * width))
            offsets = np.arange(width)
            for a in range(0, self.k, chunk):
                b = min(self.k, a + chunk)
                idx = lo[a:b, None] + offsets[None, :]  # (k, w)
                inside = idx < hi[a:b, None]
                win = self.store.values[m.rows[:, None, None], np.clip(idx, 0, self.store.n - 1)]
                win = np.where(inside[None, :, :], win, np.nan)
                out[:, a:b] = self._reduce_window(name, win, None if q is None else q[a:b])
        return self._matrix_result(m, out, ok, keep=False)

    def _reduce_window(self, name: str, win: np.ndarray, q: np.ndarray | None) -> np.ndarray:
        """One *_over_time over windows (NaN = no sample), shape (S, k, width)."""
        valid = ~np.isnan(win)
        cnt = valid.sum(axis=2)
        with np.errstate(all="ignore"):
            if name == "min_over_time":
                return np.fmin.reduce(win, axis=2)
            if name == "max_over_time":
                return np.fmax.reduce(win, axis=2)
            total = np.where(valid, win, 0.0).sum(axis=2)
            if name == "sum_over_time":
                return total
            mean = total / cnt
            if name == "avg_over_time":
                return mean
            if name in ("stddev_over_time", "stdvar_over_time"):
                dev = np.where(valid, win - mean[..., None], 0.0)
                var = (dev * dev).sum(axis=2) / cnt
                return np.sqrt(var) if name == "stddev_over_time" else var
            assert q is not None
            # Prometheus sorts the window and interpolates at rank q * (n - 1).
            srt = np.sort(win, axis=2)  # NaN (no sample) last
            qq = np.broadcast_to(q[None, :], cnt.shape)
            rank = qq * (cnt - 1)
            lower = np.maximum(0, np.floor(rank))
            upper = np.minimum(cnt - 1, lower + 1)
            weight = rank - np.floor(rank)
            li = np.clip(np.nan_to_num(lower), 0, None).astype(np.int64)[..., None]
            ui = np.clip(np.nan_to_num(upper), 0, None).astype(np.int64)[..., None]
            lv = np.take_along_axis(srt, li, axis=2)[..., 0]
            uv = np.take_along_axis(srt, ui, axis=2)[..., 0]
            res = lv * (1 - weight) + uv * weight
            res = np.where(qq < 0, -np.inf, np.where(qq > 1, np.inf, res))
            return np.where(np.isnan(qq), np.nan, res)

    # -- calls ---------------------------------------------------------------------------
    def call(self, node: pp.Call) -> _Value:
        name = node.func.name
        args = list(node.args)
        if name == "time":
            return _Scalar(self.ts.astype(np.float64) / 1000)
        if name == "vector":
            return _Vec([()], self.scalar(args[0])[None, :].copy(), np.ones((1, self.k), bool))
        if name == "scalar":
            v = self.vec(args[0])
            one = v.present.sum(axis=0) == 1
            val = np.where(v.present, v.values, 0.0).sum(axis=0) if len(v.labels) else 0.0
            return _Scalar(np.where(one, val, np.nan))
        if name in _RATE_FUNCS:
            return self.rate(self.matrix_arg(args[0], name), *_RATE_FUNCS[name])
        if name in ("irate", "idelta"):
            return self.instant_rate(self.matrix_arg(args[0], name), name == "irate")
        if name in ("changes", "resets"):
            return self.count_changes(self.matrix_arg(args[0], name), name)
        if name in _OVER_TIME:
            if name == "quantile_over_time":
                q = self.scalar(args[0])
                return self.over_time(name, self.matrix_arg(args[1], name), q)
            return self.over_time(name, self.matrix_arg(args[0], name), None)
        if name == "timestamp":
            return self.timestamp(args[0])
        if name in ("absent", "absent_over_time"):
            return self.absent(name, args[0])
        if name == "histogram_quantile":
            return self.histogram_quantile(self.scalar(args[0]), self.vec(args[1]))
        if name in _MATH:
            v = self.vec(args[0])
            with np.errstate(all="ignore"):
                return self.map_values(v, _MATH[name](v.values))
        if name == "round":
            v = self.vec(args[0])
            to = self.scalar(args[1]) if len(args) > 1 else np.ones(self.k)
            with np.errstate(all="ignore"):
                inv = 1.0 / to
                return self.map_values(v, _go_round(v.values * inv[None, :]) / inv[None, :])
        if name in ("clamp_min", "clamp_max"):
            v = self.vec(args[0])
            bound = self.scalar(args[1])[None, :]
            fn = _go_max if name == "clamp_min" else _go_min
            return self.map_values(v, fn(bound, v.values))
        if name == "clamp":
            v = self.vec(args[0])
            lo, hi = self.scalar(args[1]), self.scalar(args[2])
            out = self.map_values(v, _go_max(lo[None, :], _go_min(hi[None, :], v.values)))
            out.present &= ~(hi < lo)[None, :]
            return out
        raise self.unsupported(f"the function {name}()")

    def matrix_arg(self, node: Any, fn: str) -> _Matrix:
        v = self.eval(node)
        if not isinstance(v, _Matrix):
            raise self.unsupported(f"{fn}() over anything but a range selector ({node})")
        return v

    def map_values(self, v: _Vec, values: np.ndarray) -> _Vec:
        return self.dedupe(_Vec([_drop_name(lab) for lab in v.labels], values, v.present.copy()))

    def timestamp(self, arg: Any) -> _Vec:
        inner = arg
        while isinstance(inner, pp.ParenExpr):
            inner = inner.expr
        v = self.vec(inner)
        if isinstance(inner, pp.VectorSelector) and v.stamps is not None:
            values = v.stamps.astype(np.float64) / 1000
        else:
            values = np.broadcast_to(self.ts.astype(np.float64) / 1000, v.values.shape).copy()
        return self.map_values(v, values)

    def absent(self, name: str, arg: Any) -> _Vec:
        value = self.eval(arg)
        if isinstance(value, _Matrix):
            _, _, n, _, _ = self.window(value)
            any_present = np.asarray((n > 0).any(axis=0), dtype=bool)
            sel: Any = value.selector
        elif isinstance(value, _Vec):
            any_present = np.asarray(value.present.any(axis=0), dtype=bool)
            sel = arg
        else:
            raise self.fail(f"{name}() needs a vector")
        labels: dict[str, str] = {}
        if isinstance(sel, pp.MatrixSelector):
            sel = sel.vector_selector
        if isinstance(sel, pp.VectorSelector):
            seen: set[str] = set()
            for m in sel.matchers.matchers:
                if m.name == NAME:
                    continue
                if m.op == pp.MatchOp.Equal and m.name not in seen:
                    labels[m.name] = m.value
                    seen.add(m.name)
                else:
                    labels.pop(m.name, None)
        key = tuple(sorted((k, v) for k, v in labels.items() if v != ""))
        return _Vec([key], np.ones((1, self.k)), ~any_present[None, :])

    def histogram_quantile(self, q: np.ndarray, v: _Vec) -> _Vec:
        groups: dict[Labels, list[tuple[float, int]]] = {}
        for row, lab in enumerate(v.labels):
            le = dict(lab).get("le")
            bound = _parse_go_float(le)
            if bound is None:
                continue  # no bucket label, or not a number: skipped as Prometheus does
            key = tuple(kv for kv in lab if kv[0] != "le")
            groups.setdefault(key, []).append((bound, row))
        out_labels: list[Labels] = []
        out_values: list[np.ndarray] = []
        out_present: list[np.ndarray] = []
        for key, buckets in groups.items():
            buckets.sort(key=lambda b: b[0])
            bounds = np.array([b for b, _ in buckets])
            rows = np.array([r for _, r in buckets])
            counts, present = v.values[rows], v.present[rows]
            values = np.full(self.k, np.nan)
            any_present = present.any(axis=0)
            patterns, inverse = np.unique(present.T, axis=0, return_inverse=True)
            inverse = np.asarray(inverse).reshape(-1)
            for p, row in enumerate(patterns):
                pattern = np.asarray(row, dtype=bool)
                cols = np.flatnonzero(inverse == p)
                if not pattern.any():
                    continue
                values[cols] = _bucket_quantile(q[cols], bounds[pattern], counts[pattern][:, cols])
            out_labels.append(_drop_name(key))
            out_values.append(values)
            out_present.append(any_present)
        if not out_labels:
            return _empty(self.k)
        return self.dedupe(_Vec(out_labels, np.array(out_values), np.array(out_present)))

    # -- unary, binary -------------------------------------------------------------------
    def negate(self, v: _Value) -> _Value:
        if isinstance(v, _Scalar):
            return _Scalar(-v.values)
        if isinstance(v, _Vec):
            return self.map_values(v, -v.values)
        raise self.fail("unary minus needs a scalar or an instant vector")

    def binary(self, node: pp.BinaryExpr) -> _Value:
        op = str(node.op)
        mod = node.modifier
        if mod is not None and (mod.fill_values.lhs is not None or mod.fill_values.rhs is not None):
            raise self.unsupported("fill() in vector matching")
        return_bool = bool(mod and mod.return_bool)
        if op not in _ARITH and op not in _COMPARE and op not in _SET_OPS:
            raise self.unsupported(f"the binary operator {op}")
        lhs, rhs = self.eval(node.lhs), self.eval(node.rhs)
        if isinstance(lhs, _Scalar) and isinstance(rhs, _Scalar):
            with np.errstate(all="ignore"):
                if op in _ARITH:
                    return _Scalar(_ARITH[op](lhs.values, rhs.values))
                if op in _COMPARE:
                    return _Scalar(_COMPARE[op](lhs.values, rhs.values).astype(np.float64))
            raise self.fail(f"{op} is not defined between scalars")
        if isinstance(lhs, _Vec) and isinstance(rhs, _Scalar):
            return self.vector_scalar(op, lhs, rhs.values, False, return_bool)
        if isinstance(lhs, _Scalar) and isinstance(rhs, _Vec):
            return self.vector_scalar(op, rhs, lhs.values, True, return_bool)
        if isinstance(lhs, _Vec) and isinstance(rhs, _Vec):
            if op in _SET_OPS:
                return self.set_op(op, lhs, rhs, mod)
            return self.vector_vector(op, lhs, rhs, mod, return_bool)
        raise self.fail(f"binary {op} between {type(lhs).__name__} and {type(rhs).__name__}")

    def vector_scalar(self, op: str, v: _Vec, s: np.ndarray, swap: bool, return_bool: bool) -> _Vec:
        if op in _SET_OPS:
            raise self.fail(f"set operator {op} not allowed between a vector and a scalar")
        a, b = (s[None, :], v.values) if swap else (v.values, s[None, :])
        with np.errstate(all="ignore"):
            if op in _ARITH:
                value = _ARITH[op](a, b)
                keep = np.ones(v.values.shape, bool)
            else:
                keep = _COMPARE[op](a, b)
                value = v.values
            if return_bool:
                value, keep = keep.astype(np.float64), np.ones(v.values.shape, bool)
        drop = op in _DROPS_NAME or return_bool
        labels = [_drop_name(lab) for lab in v.labels] if drop else list(v.labels)
        return self.dedupe(
            _Vec(labels, np.broadcast_to(value, v.values.shape).copy(), v.present & keep)
        )

    def _sig_fn(self, mod: pp.BinModifier | None) -> Callable[[Labels], Labels]:
        if mod is None or mod.matching is None:
            return _drop_name
        names = set(mod.matching.labels)
        if mod.matching.type == pp.LabelModifierType.Include:  # on(...)
            return lambda lab: tuple(kv for kv in lab if kv[0] in names)
        return lambda lab: tuple(kv for kv in lab if kv[0] not in names and kv[0] != NAME)

    def set_op(self, op: str, lhs: _Vec, rhs: _Vec, mod: pp.BinModifier | None) -> _Vec:
        sig = self._sig_fn(mod)
        lsig, rsig = [sig(x) for x in lhs.labels], [sig(x) for x in rhs.labels]
        if op == "or":
            seen = _sig_presence(lsig, lhs.present)
            rmask = np.array(
                [~seen.get(s, np.zeros(self.k, bool)) for s in rsig], dtype=bool
            ).reshape(len(rsig), self.k)
            out = _Vec(
                lhs.labels + rhs.labels,
                np.concatenate([lhs.values, rhs.values]),
                np.concatenate([lhs.present, rhs.present & rmask]),
            )
            return self.dedupe(out)
        seen = _sig_presence(rsig, rhs.present)
        other = np.array([seen.get(s, np.zeros(self.k, bool)) for s in lsig], dtype=bool).reshape(
            len(lsig), self.k
        )
        keep = other if op == "and" else ~other
        return _Vec(list(lhs.labels), lhs.values, lhs.present & keep)

    def vector_vector(
        self, op: str, lhs: _Vec, rhs: _Vec, mod: pp.BinModifier | None, return_bool: bool
    ) -> _Vec:
        card = "OneToOne"
        if mod is not None:
            for name in ("OneToOne", "ManyToOne", "OneToMany", "ManyToMany"):
                if mod.card == getattr(pp.VectorMatchCardinality, name):
                    card = name
        if card == "ManyToMany":
            raise self.fail(f"many-to-many matching is only for and/or/unless, not {op}")
        sig = self._sig_fn(mod)
        on = mod is not None and mod.matching is not None
        include_on = on and mod.matching.type == pp.LabelModifierType.Include  # type: ignore[union-attr]
        matching = set(mod.matching.labels) if on else set()  # type: ignore[union-attr]
        include = list(mod.group_labels or []) if mod is not None else []
        swap = card == "OneToMany"
        many, one = (rhs, lhs) if swap else (lhs, rhs)
        # Prometheus matches nothing (and checks nothing) at a step where a side is empty.
        both = lhs.present.any(axis=0) & rhs.present.any(axis=0)
        one_groups: dict[Labels, list[int]] = {}
        for r, lab in enumerate(one.labels):
            one_groups.setdefault(sig(lab), []).append(r)
        for s, rows in one_groups.items():
            if len(rows) > 1 and ((one.present[rows].sum(axis=0) > 1) & both).any():
                side = "left" if swap else "right"
                raise self.fail(
                    f"found duplicate series for the match group {dict(s)} on the {side} "
                    "hand-side of the operation; many-to-many matching not allowed: matching "
                    "labels must be unique on one side"
                )
        pairs_m, pairs_o, out_labels = [], [], []
        for m_row, lab in enumerate(many.labels):
            for o_row in one_groups.get(sig(lab), ()):
                pairs_m.append(m_row)
                pairs_o.append(o_row)
                out_labels.append(
                    _result_labels(lab, one.labels[o_row], op, card, include_on, matching, include)
                )
        if not pairs_m:
            return _empty(self.k)
        pm, po = np.array(pairs_m), np.array(pairs_o)
        vl, vr = many.values[pm], one.values[po]
        if swap:
            vl, vr = vr, vl
        with np.errstate(all="ignore"):
            if op in _ARITH:
                value, keep = _ARITH[op](vl, vr), np.ones(vl.shape, bool)
            else:
                keep = _COMPARE[op](vl, vr)
                value = vl
        present = many.present[pm] & one.present[po]
        if return_bool:
            value = keep.astype(np.float64)
            keep = np.ones(vl.shape, bool)
            out_labels = [_drop_name(lab) for lab in out_labels]
        present &= keep
        if card == "OneToOne":
            per_sig: dict[Labels, list[int]] = {}
            for i, m_row in enumerate(pairs_m):
                per_sig.setdefault(sig(many.labels[m_row]), []).append(i)
            for idx in per_sig.values():
                if len(idx) > 1 and (present[idx].sum(axis=0) > 1).any():
                    raise self.fail(
                        "multiple matches for labels: many-to-one matching must be explicit "
                        "(group_left/group_right)"
                    )
        return self.dedupe(_Vec(out_labels, np.array(value, dtype=np.float64), present))

    # -- aggregation ---------------------------------------------------------------------
    def aggregate(self, node: pp.AggregateExpr) -> _Vec:
        op = str(node.op)
        v = self.vec(node.expr)
        mod = node.modifier
        if mod is None:
            keys: list[Labels] = [() for _ in v.labels]
        else:
            names = set(mod.labels)
            if mod.type == pp.AggModifierType.By:
                keys = [tuple(kv for kv in lab if kv[0] in names) for lab in v.labels]
            else:
                names.add(NAME)
                keys = [tuple(kv for kv in lab if kv[0] not in names) for lab in v.labels]
        group_of: dict[Labels, int] = {}
        ids = np.array([group_of.setdefault(key, len(group_of)) for key in keys], dtype=np.int64)
        out_keys = list(group_of)
        if op in ("topk", "bottomk"):
            return self.top(op, v, ids, self.scalar(node.param))
        if not out_keys:
            return _empty(self.k)
        g = len(out_keys)
        present = v.present
        count = _group_reduce(np.add, present.astype(np.int64), ids, g, 0)
        out_present = count > 0
        with np.errstate(all="ignore"):
            if op == "sum":
                values = _group_reduce(np.add, np.where(present, v.values, 0.0), ids, g, 0.0)
            elif op == "avg":
                values = self.running(v, ids, g, "avg")
            elif op == "count":
                values = count.astype(np.float64)
            elif op == "group":
                values = np.ones((g, self.k))
            elif op in ("min", "max"):
                fn = np.fmin if op == "min" else np.fmax
                values = _group_reduce(fn, np.where(present, v.values, np.nan), ids, g, np.nan)
            elif op in ("stddev", "stdvar"):
                values = self.running(v, ids, g, op)
            elif op == "quantile":
                values = self.group_quantile(v, ids, g, self.scalar(node.param))
            else:
                raise self.unsupported(f"the aggregation {op}")
        return _Vec(out_keys, values, out_present)

    def running(self, v: _Vec, ids: np.ndarray, g: int, op: str) -> np.ndarray:
        """avg, stdvar, stddev as Prometheus 2.x accumulates them, series by series in
        input order (an incremental mean; Welford for the variance)."""
        count = np.zeros((g, self.k))
        mean = np.zeros((g, self.k))
        acc = np.zeros((g, self.k))
        for rows, gi in _layers(ids):
            p = v.present[rows]
            x = v.values[rows]
            c0, m0, a0 = count[gi], mean[gi], acc[gi]
            first = p & (c0 == 0)
            later = p & (c0 > 0)
            c = c0 + p
            if op == "avg":
                inf_mean = np.isinf(m0)
                same_inf = np.isinf(x) & ((m0 > 0) == (x > 0))
                finite_x = ~np.isinf(x) & ~np.isnan(x)
                skip = inf_mean & (same_inf | finite_x)
                m = np.where(later & ~skip, m0 + (x / c - m0 / c), m0)
                mean[gi] = np.where(first, x, m)
            else:
                delta = x - m0
                m = m0 + delta / np.where(later, c, 1)
                a = a0 + delta * (x - m)
                mean[gi] = np.where(first, x, np.where(later, m, m0))
                acc[gi] = np.where(first, 0.0, np.where(later, a, a0))
            count[gi] = c
        if op == "avg":
            return mean
        var = acc / count
        return np.sqrt(var) if op == "stddev" else var

    def group_quantile(self, v: _Vec, ids: np.ndarray, g: int, q: np.ndarray) -> np.ndarray:
        out = np.full((g, self.k), np.nan)
        for gi in range(g):
            rows = np.flatnonzero(ids == gi)
            vals, pres = v.values[rows], v.present[rows]
            isnan = np.isnan(vals) & pres
            key = np.where(pres, np.where(isnan, -np.inf, vals), np.inf)
            srt = np.sort(key, axis=0)
            n_nan = isnan.sum(axis=0)
            srt = np.where(np.arange(len(rows))[:, None] < n_nan[None, :], np.nan, srt)
            n = pres.sum(axis=0)
            rank = q * (n - 1)
            lower = np.maximum(0, np.floor(rank))
            upper = np.minimum(n - 1, lower + 1)
            weight = rank - np.floor(rank)
            li = np.clip(np.nan_to_num(lower), 0, len(rows) - 1).astype(np.int64)
            ui = np.clip(np.nan_to_num(upper), 0, len(rows) - 1).astype(np.int64)
            cols = np.arange(self.k)
            res = srt[li, cols] * (1 - weight) + srt[ui, cols] * weight
            res = np.where(q < 0, -np.inf, np.where(q > 1, np.inf, res))
            out[gi] = np.where(np.isnan(q), np.nan, res)
        return out

    def top(self, op: str, v: _Vec, ids: np.ndarray, k_param: np.ndarray) -> _Vec:
        """topk/bottomk. Where the k kept series are not unique (a tie at the boundary, NaN
        values) the choice is Prometheus': its heap walked over the series in input order."""
        if not len(v.labels):
            return _empty(self.k)
        top = op == "topk"
        with np.errstate(all="ignore"):
            kk = np.where(np.isfinite(k_param), np.clip(k_param, -1, 2**62), 0).astype(np.int64)
        selected = np.zeros(v.present.shape, bool)
        for gi in np.unique(ids):
            rows = np.flatnonzero(ids == gi)
            vals, pres = v.values[rows], v.present[rows]
            nan = pres & np.isnan(vals)
            # Largest first for topk (smallest for bottomk); absent rows last.
            score = np.where(pres & ~nan, -vals if top else vals, np.inf)
            order = np.argsort(score, axis=0, kind="stable")
            srt = np.take_along_axis(score, order, axis=0)
            n = pres.sum(axis=0)
            cols = np.arange(self.k)
            kth = srt[np.clip(kk - 1, 0, len(rows) - 1), cols]
            nxt = srt[np.clip(kk, 0, len(rows) - 1), cols]
            simple = ~nan.any(axis=0) & ((n <= kk) | (kth < nxt))
            rank = np.empty_like(order)
            np.put_along_axis(rank, order, np.arange(len(rows))[:, None].repeat(self.k, 1), 0)
            sel = (rank < kk[None, :]) & pres
            for col in np.flatnonzero(~simple & (kk >= 1) & (n > 0)):
                live = np.flatnonzero(pres[:, col])
                keep = _go_heap_top(vals[live, col], int(kk[col]), top)
                sel[:, col] = False
                sel[live[keep], col] = True
            selected[rows] = sel & (kk[None, :] >= 1)
        return _Vec(list(v.labels), v.values, selected)

    # -- duplicates ----------------------------------------------------------------------
    def dedupe(self, v: _Vec, strict: bool = False) -> _Vec:
        """Merge rows with the same labels; Prometheus refuses two at one step (``strict``:
        two with any output at all, as for functions over range selectors)."""
        where: dict[Labels, list[int]] = {}
        for row, lab in enumerate(v.labels):
            where.setdefault(lab, []).append(row)
        if len(where) == len(v.labels):
            return v
        labels, values, present = [], [], []
        for lab, rows in where.items():
            if len(rows) == 1:
                labels.append(lab)
                values.append(v.values[rows[0]])
                present.append(v.present[rows[0]])
                continue
            p = v.present[rows]
            live = p.any(axis=1)
            clash = live.sum() > 1 if strict else (p.sum(axis=0) > 1).any()
            if clash:
                raise self.fail("vector cannot contain metrics with the same labelset")
            vals = v.values[rows]
            idx = np.argmax(p, axis=0)
            labels.append(lab)
            values.append(vals[idx, np.arange(self.k)])
            present.append(p.any(axis=0))
        return _Vec(labels, np.array(values), np.array(present))


def _layers(ids: np.ndarray) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    """(rows, their groups): the first series of every group, then the second..."""
    if not len(ids):
        return
    order = np.argsort(ids, kind="stable")
    sids = ids[order]
    starts = np.flatnonzero(np.r_[True, sids[1:] != sids[:-1]])
    rank = np.arange(len(ids)) - np.repeat(starts, np.diff(np.r_[starts, len(ids)]))
    for j in range(int(rank.max()) + 1):
        at = rank == j
        yield order[at], sids[at]


def _go_heap_top(values: np.ndarray, k: int, top: bool) -> list[int]:
    """Which of ``values`` (in input order) Prometheus 2.x's topk/bottomk keeps: its
    container/heap walk, ties and NaN included."""

    def less(h: list[tuple[int, float]], i: int, j: int) -> bool:
        a, b = h[i][1], h[j][1]
        if math.isnan(a):
            return True
        return a < b if top else a > b

    def up(h: list[tuple[int, float]], j: int) -> None:
        while j > 0:
            i = (j - 1) // 2
            if not less(h, j, i):
                break
            h[i], h[j] = h[j], h[i]
            j = i

    def down(h: list[tuple[int, float]], i: int, n: int) -> None:
        while True:
            j = 2 * i + 1
            if j >= n:
                break
            if j + 1 < n and less(h, j + 1, j):
                j += 1
            if not less(h, j, i):
                break
            h[i], h[j] = h[j], h[i]
            i = j

    heap: list[tuple[int, float]] = []
    for i, x in enumerate(values.tolist()):
        if not heap:
            heap.append((i, x))
            continue
        root = heap[0][1]
        better = root < x if top else root > x
        if len(heap) < k or better or math.isnan(root):
            if len(heap) == k:
                if k == 1:
                    heap[0] = (i, x)
                    continue
                last = len(heap) - 1
                heap[0], heap[last] = heap[last], heap[0]
                down(heap, 0, last)
                heap.pop()
            heap.append((i, x))
            up(heap, len(heap) - 1)
    return [i for i, _ in heap]


def _empty(k: int) -> _Vec:
    return _Vec([], np.zeros((0, k)), np.zeros((0, k), bool))


def _sig_presence(sigs: list[Labels], present: np.ndarray) -> dict[Labels, np.ndarray]:
    out: dict[Labels, np.ndarray] = {}
    for s, p in zip(sigs, present, strict=True):
        out[s] = out[s] | p if s in out else p.copy()
    return out


def _group_reduce(ufunc: Any, data: np.ndarray, ids: np.ndarray, g: int, fill: Any) -> np.ndarray:
    """``ufunc`` over the rows of each group, in row order (as Prometheus adds them)."""
    k = data.shape[1]
    out = np.full((g, k), fill, dtype=data.dtype)
    if not len(ids):
        return out
    order = np.argsort(ids, kind="stable")
    sids = ids[order]
    starts = np.flatnonzero(np.r_[True, sids[1:] != sids[:-1]])
    out[sids[starts]] = ufunc.reduceat(data[order], starts, axis=0)
    return out


def _result_labels(
    many: Labels,
    one: Labels,
    op: str,
    card: str,
    on: bool,
    matching: set[str],
    include: list[str],
) -> Labels:
    """Prometheus' resultMetric: the 'many' side's labels, trimmed and with group_x labels."""
    lab = dict(many)
    if op in _DROPS_NAME:
        lab.pop(NAME, None)
    if card == "OneToOne":
        if on:
            lab = {k: v for k, v in lab.items() if k in matching}
        else:
            lab = {k: v for k, v in lab.items() if k not in matching}
    other = dict(one)
    for name in include:
        if other.get(name, ""):
            lab[name] = other[name]
        else:
            lab.pop(name, None)
    return tuple(sorted(lab.items()))


_GO_FLOAT = re.compile(
    r"[+-]?(inf|infinity|nan|(\d+\.?\d*|\.\d+)(e[+-]?\d+)?|0x[0-9a-f.]+(p[+-]?\d+)?)"
)


def _parse_go_float(text: str | None) -> float | None:
    """strconv.ParseFloat, as histogram_quantile reads ``le`` (None: skipped)."""
    if text is None or not _GO_FLOAT.fullmatch(text.lower()):
        return None
    try:
        return float.fromhex(text) if "0x" in text.lower() else float(text)
    except ValueError:
        return None


def _bucket_quantile(q: np.ndarray, bounds: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Prometheus' bucketQuantile for sorted ``bounds`` over columns of ``counts``."""
    k = counts.shape[1]
    out = np.full(k, np.nan)
    if np.isinf(bounds[-1]) and bounds[-1] > 0:
        # Coalesce buckets with the same upper bound (counts summed in order).
        ub, start = np.unique(bounds, return_index=True)
        if len(ub) != len(bounds):
            merged = np.zeros((len(ub), k))
            pos = np.searchsorted(ub, bounds)
            for i, p in enumerate(pos):
                merged[p] = merged[p] + counts[i] if i != start[p] else counts[i]
            counts, bounds = merged, ub
        else:
            counts = counts.copy()
        # ensureMonotonic
        top = np.full(k, -np.inf)
        for i in range(len(bounds)):
            c = counts[i]
            newtop = np.where(c > top, c, top)
            counts[i] = np.where(c < top, top, c)
            top = newtop
        nb = len(bounds)
        if nb >= 2:
            obs = counts[-1]
            with np.errstate(all="ignore"):
                rank = q * obs
                # sort.Search(nb - 1, counts[i] >= rank), the same binary search
                lo = np.zeros(k, np.int64)
                hi = np.full(k, nb - 1, np.int64)
                cols = np.arange(k)
                while (lo < hi).any():
                    active = lo < hi
                    h = (lo + hi) // 2
                    f = counts[np.minimum(h, nb - 1), cols] >= rank
                    lo = np.where(active & ~f, h + 1, lo)
                    hi = np.where(active & f, h, hi)
                b = lo
                prev = np.where(b > 0, counts[np.maximum(b - 1, 0), cols], 0.0)
                start_b = np.where(b > 0, bounds[np.maximum(b - 1, 0)], 0.0)
                end_b = bounds[np.minimum(b, nb - 1)]
                cnt = counts[np.minimum(b, nb - 1), cols] - prev
                r = rank - prev
                res = start_b + (end_b - start_b) * (r / cnt)
                res = np.where((b == 0) & (bounds[0] <= 0), bounds[0], res)
                res = np.where(b == nb - 1, bounds[nb - 2], res)
                out = np.where(obs == 0, np.nan, res)
    out = np.where(q > 1, np.inf, out)
    out = np.where(q < 0, -np.inf, out)
    return np.where(np.isnan(q), np.nan, out)


# --- InMemoryMetrics ----------------------------------------------------------------------------


def _ts(at: datetime) -> float:
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.timestamp()


def _instant_ms(at: datetime) -> int:
    """The evaluation time Prometheus makes of ``time=<float seconds>`` (parseTime, then
    milliseconds, each step truncating as Go does)."""
    frac, whole = math.modf(_ts(at))
    ns = int(math.floor(frac * 1000 + 0.5) / 1000 * 1e9)
    return int(whole) * 1000 + ns // 1_000_000


class InMemoryMetrics:
    """A :class:`paytriage.sources.base.MetricsSource` answering PromQL from series in memory.

    ``series``: (labels with ``__name__``, unix-second timestamps, values) with NaN where a
    series has no sample. ``clock`` gives "now" for ``query(at=None)`` (default: the time of
    the last sample).
    """

    name = "memory-prometheus"

    def __init__(
        self,
        series: Iterable[RawSeries],
        *,
        clock: Callable[[], datetime] | None = None,
        lookback: timedelta = LOOKBACK,
        name: str | None = None,
    ) -> None:
        self._store = _Store(series)
        self._lookback = _ms(lookback)
        if name is not None:
            self.name = name
        self._clock = clock or self._last_sample_time
        self._parsed: dict[str, Any] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_families(
        cls,
        blocks: Iterable[tuple[Sequence[Family], np.ndarray]],
        *,
        clock: Callable[[], datetime] | None = None,
        as_written: bool = True,
        name: str | None = None,
    ) -> InMemoryMetrics:
        """From simulator families, each block with its time axis. ``as_written``: values as
        the OpenMetrics file holds them (non-integers rounded to 6 decimals)."""
        series: list[RawSeries] = []
        for families, times in blocks:
            for fam in families:
                for smp in fam.samples:
                    values = _as_written(smp.values) if as_written else smp.values
                    series.append(({**smp.labels, NAME: smp.name}, times, values))
        return cls(series, clock=clock, name=name)

    def _last_sample_time(self) -> datetime:
        if self._store.empty:
            return datetime.now(UTC)
        return datetime.fromtimestamp(int(self._store.times[-1]) / 1000, UTC)

    @property
    def first_sample_time(self) -> datetime | None:
        """When the data starts (None when there is none)."""
        if self._store.empty:
            return None
        return datetime.fromtimestamp(int(self._store.times[0]) / 1000, UTC)

    @property
    def last_sample_time(self) -> datetime | None:
        """When the data ends (None when there is none)."""
        return None if self._store.empty else self._last_sample_time()

    def check(self) -> None:
        """Raise SourceError unless a trivial query answers (it always does)."""
        self.query("vector(1)")

    def close(self) -> None:
        """Nothing to release."""

    def _parse(self, promql: str) -> Any:
        with self._lock:
            hit = self._parsed.get(promql)
        if hit is not None:
            return hit
        try:
            ast = pp.parse(promql)
        except (ValueError, RuntimeError) as exc:
            raise SourceError(self.name, ErrorKind.query, promql, f"parse error: {exc}") from exc
        with self._lock:
            self._parsed[promql] = ast
        return ast

    def query(self, promql: str, at: datetime | None = None) -> list[Series]:
        ast = self._parse(promql)
        ts = np.array([_instant_ms(at if at is not None else self._clock())], dtype=np.int64)
        ev = _Eval(self._store, self.name, promql, ts, self._lookback)
        value = ev.eval(ast)
        t = ts.astype(np.float64) / 1000
        if isinstance(value, _Str):
            return [Series({}, t, np.array([math.nan]))]
        if isinstance(value, _Matrix):
            return self._raw_samples(ev, value)
        return _to_series(value, t)

    def query_range(
        self, promql: str, start: datetime, end: datetime, step: timedelta
    ) -> list[Series]:
        if end < start:
            raise ValueError("end must not be before start")
        step_s = step.total_seconds()
        if step_s <= 0:
            raise ValueError("step must be positive")
        ast = self._parse(promql)
        step_text = f"{step_s:g}s"  # as PrometheusSource sends it
        m = re.fullmatch(r"(\d+)s", step_text)
        if m is None:
            raise SourceError(
                self.name,
                ErrorKind.query,
                promql,
                f'invalid parameter "step": cannot parse "{step_text}" to a valid duration',
            )
        step_ms = int(m.group(1)) * 1000
        start_ms = round(start.timestamp()) * 1000  # prometheus-api-client sends whole seconds
        end_ms = round(end.timestamp()) * 1000
        if (end_ms - start_ms) // step_ms > MAX_POINTS:
            raise SourceError(
                self.name,
                ErrorKind.query,
                promql,
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing "
                "the query resolution (?step=XX)",
            )
        ts = np.arange(start_ms, end_ms + 1, step_ms, dtype=np.int64)
        ev = _Eval(self._store, self.name, promql, ts, self._lookback)
        value = ev.eval(ast)
        if isinstance(value, _Str | _Matrix):
            kind = "string" if isinstance(value, _Str) else "range vector"
            raise SourceError(
                self.name,
                ErrorKind.query,
                promql,
                f'invalid expression type "{kind}" for range query, must be Scalar or '
                "instant Vector",
            )
        return _to_series(value, ts.astype(np.float64) / 1000)

    def _raw_samples(self, ev: _Eval, m: _Matrix) -> list[Series]:
        first, last, n, _, _ = ev.window(m)
        out = []
        st = self._store
        for i, row in enumerate(m.rows):
            if n[i, 0] == 0:
                continue
            idx = np.arange(first[i, 0], last[i, 0] + 1)
            idx = idx[~np.isnan(st.values[row, idx])]
            out.append(Series(dict(st.labels[row]), st.times[idx] / 1000, st.values[row, idx]))
        return out


def _to_series(value: _Value, t: np.ndarray) -> list[Series]:
    if isinstance(value, _Scalar):
        return [Series({}, t.copy(), value.values.astype(np.float64))]
    assert isinstance(value, _Vec)
    out = []
    for row in sorted(range(len(value.labels)), key=lambda r: value.labels[r]):
        p = value.present[row]
        if p.any():
            out.append(Series(dict(value.labels[row]), t[p], value.values[row][p]))
    return out


def _as_written(values: np.ndarray) -> np.ndarray:
    """The values as paytriage.lab.simulate.output writes them: integers as they are, other numbers
    rounded to 6 decimals (Python's correctly rounded ``round``)."""
    v = np.asarray(values, dtype=np.float64).copy()
    with np.errstate(invalid="ignore"):
        odd = np.isfinite(v) & ((v != np.trunc(v)) | (np.abs(v) >= 1e15))
    idx = np.flatnonzero(odd)
    if len(idx):
        v[idx] = [round(float(x), 6) for x in v[idx]]
    return v


# --- InMemoryLogs -------------------------------------------------------------------------------

_NUMERIC = frozenset(
    {"long", "integer", "short", "byte", "double", "float", "half_float", "scaled_float"}
)
_INTEGRAL = frozenset({"long", "integer", "short", "byte"})
_TOKEN = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class _Field:
    """How a field is indexed: its type, where its values live in ``_source``."""

    type: str  # keyword | text | long ... | float ... | date | boolean | unmapped
    path: str  # the _source path of the values
    ignore_above: int | None = None


def _iso_ms(value: Any) -> int | None:
    """Epoch milliseconds of a date value (ISO string or epoch millis), floor to the ms."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return math.floor(value)
    if not isinstance(value, str):
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        try:
            return int(value)
        except ValueError:
            return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def _lookup(doc: Any, parts: Sequence[str]) -> list[Any]:
    """Every value at a dotted path: nested objects, dotted keys and arrays alike."""
    if not parts:
        if isinstance(doc, list):
            return [x for item in doc for x in _lookup(item, ())]
        return [] if doc is None else [doc]
    if isinstance(doc, list):
        return [x for item in doc for x in _lookup(item, parts)]
    if not isinstance(doc, dict):
        return []
    out: list[Any] = []
    for i in range(1, len(parts) + 1):
        key = ".".join(parts[:i])
        if key in doc:
            out.extend(_lookup(doc[key], parts[i:]))
    return out


def _keyword_text(v: Any) -> str | None:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return v
    return None


class _Index:
    def __init__(
        self, name: str, docs: Sequence[dict[str, Any]], props: Mapping[str, Any], ts_field: str
    ) -> None:
        self.name = name
        self.docs = list(docs)
        self.props = props
        stamps = []
        for d in self.docs:
            vals = [
                x for x in (_iso_ms(v) for v in _lookup(d, ts_field.split("."))) if x is not None
            ]
            stamps.append(min(vals) if vals else None)
        self.has_ts = np.array([s is not None for s in stamps], dtype=bool)
        self.ts = np.array([s if s is not None else 0 for s in stamps], dtype=np.int64)
        self._fields: dict[str, _Field] = {}

    def field(self, name: str) -> _Field:
        hit = self._fields.get(name)
        if hit is None:
            hit = self._fields[name] = self._resolve(name)
        return hit

    def _resolve(self, name: str) -> _Field:
        """Resolve a field name against the mapping (objects, multi-fields), else dynamic."""
        parts = name.split(".")
        props: Mapping[str, Any] = self.props
        for i, part in enumerate(parts):
            spec = props.get(part)
            if spec is None:
                break
            if "properties" in spec and i < len(parts) - 1:
                props = spec["properties"]
                continue
            rest = parts[i + 1 :]
            src = ".".join(parts[: i + 1])
            if not rest:
                return _Field(spec.get("type", "object"), src, spec.get("ignore_above"))
            sub = spec.get("fields", {}).get(".".join(rest))
            if sub is not None:
                return _Field(sub.get("type", "keyword"), src, sub.get("ignore_above"))
            break
        return self._dynamic(name)

    def _dynamic(self, name: str) -> _Field:
        """What dynamic mapping made of an unmapped field: strings are text with a
        ``.keyword`` (ignore_above 256), numbers long/float, booleans boolean."""
        parts = name.split(".")
        if parts[-1] == "keyword" and len(parts) > 1:
            return _Field("keyword", ".".join(parts[:-1]), 256)
        sample = next(
            (v for d in self.docs for v in _lookup(d, parts) if not isinstance(v, dict)), None
        )
        if sample is None:
            return _Field("unmapped", name)
        if isinstance(sample, bool):
            return _Field("boolean", name)
        if isinstance(sample, int):
            return _Field("long", name)
        if isinstance(sample, float):
            return _Field("float", name)
        if _iso_ms(sample) is not None and re.match(r"\d{4}-\d{2}-\d{2}", str(sample)):
            return _Field("date", name)
        return _Field("text", name)


def _terms_of(f: _Field, doc: dict[str, Any]) -> list[Any]:
    """The indexed terms of one document's field (what term queries and terms aggs see)."""
    vals = _lookup(doc, f.path.split("."))
    out: list[Any] = []
    for v in vals:
        if isinstance(v, dict):
            continue
        if f.type == "keyword":
            t = _keyword_text(v)
            if t is not None and (f.ignore_above is None or len(t) <= f.ignore_above):
                out.append(t)
        elif f.type in _NUMERIC:
            num = _number(v, f.type)
            if num is not None:
                out.append(num)
        elif f.type == "boolean":
            b = v if isinstance(v, bool) else {"true": True, "false": False}.get(str(v))
            if b is not None:
                out.append(b)
        elif f.type == "date":
            ms = _iso_ms(v)
            if ms is not None:
                out.append(ms)
        elif f.type == "text":
            out.extend(t.lower() for t in _TOKEN.findall(str(v)))
    return list(dict.fromkeys(out))


def _number(v: Any, kind: str) -> float | int | None:
    if isinstance(v, bool):
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    if kind in _INTEGRAL:
        return int(x) if math.isfinite(x) else None
    if kind == "float":
        return float(np.float32(x))
    if kind == "half_float":
        return float(np.float16(x))
    return x


class InMemoryLogs:
    """A :class:`paytriage.sources.base.LogSource` over documents held per index.

    ``indices``: index name -> documents (``_source`` dicts). ``templates``: index templates
    (``{"index_patterns": [...], "template": {"mappings": {"properties": ...}}}``) giving
    field types; unmapped fields are typed as OpenSearch's dynamic mapping would.
    """

    name = "memory-opensearch"

    def __init__(
        self,
        indices: Mapping[str, Sequence[dict[str, Any]]],
        templates: Sequence[Mapping[str, Any]] = (),
        *,
        timestamp_field: str = "@timestamp",
        name: str | None = None,
    ) -> None:
        self.timestamp_field = timestamp_field
        if name is not None:
            self.name = name
        self._indices: dict[str, _Index] = {}
        for index, docs in sorted(indices.items()):
            props: dict[str, Any] = {}
            for t in templates:
                if any(fnmatch.fnmatchcase(index, p) for p in t.get("index_patterns", ())):
                    mapping = t.get("template", {}).get("mappings", {})
                    props.update(mapping.get("properties", {}))
            self._indices[index] = _Index(index, docs, props, timestamp_field)

    def check(self) -> None:
        """Nothing can be down."""

    def close(self) -> None:
        """Nothing to release."""

    # -- helpers -------------------------------------------------------------------------
    def _targets(self, index: str) -> list[_Index]:
        pats = [p.strip() for p in index.split(",") if p.strip()]
        return [
            ix
            for name, ix in self._indices.items()
            if any(fnmatch.fnmatchcase(name, p) for p in pats)
        ]

    def _desc(self, op: str, index: str, **what: Any) -> str:
        return f"{op} {index} {what}"

    def _matching(
        self, index: str, start: datetime, end: datetime, filters: Filters | None
    ) -> list[tuple[_Index, int]]:
        if end < start:
            raise ValueError("end must not be before start")
        checks: list[tuple[str, list[str]]] = []
        for fld, value in (filters or {}).items():
            if not isinstance(fld, str) or not fld:
                raise ValueError(f"bad filter field {fld!r}")
            if isinstance(value, str):
                checks.append((fld, [value]))
            elif isinstance(value, Sequence):
                checks.append((fld, [str(v) for v in value]))
            else:
                raise ValueError(f"filter {fld!r}: value must be a string or a list of strings")
        lo, hi = _iso_ms(_iso(start)), _iso_ms(_iso(end))
        assert lo is not None and hi is not None
        out: list[tuple[_Index, int]] = []
        for ix in self._targets(index):
            in_range = np.flatnonzero(ix.has_ts & (ix.ts >= lo) & (ix.ts < hi))
            if not len(in_range):
                continue
            wanted = []
            for fld, values in checks:
                f = ix.field(fld)
                wanted.append((f, self._query_terms(f, values)))
            for i in in_range:
                doc = ix.docs[i]
                if all(
                    terms is not None and any(t in terms for t in _terms_of(f, doc))
                    for f, terms in wanted
                ):
                    out.append((ix, int(i)))
        return out

    def _query_terms(self, f: _Field, values: list[str]) -> set[Any] | None:
        """The terms a term/terms query on ``f`` looks for (None: matches nothing). A value
        the field's type cannot parse matches nothing: under a time filter OpenSearch answers
        such a query with the shards that could match, i.e. no documents."""
        if f.type in ("unmapped", "object"):
            return None
        if f.type in ("keyword", "text"):
            return set(values)  # term queries are not analysed
        out: set[Any] = set()
        for v in values:
            if f.type in _NUMERIC:
                try:
                    x = float(v)
                except ValueError:
                    continue
                if f.type in _INTEGRAL:
                    if math.isfinite(x) and x == int(x):
                        out.add(int(x))
                else:
                    num = _number(x, f.type)
                    if num is not None:
                        out.add(num)
            elif f.type == "boolean":
                if v in ("true", "false"):
                    out.add(v == "true")
            elif f.type == "date":
                ms = _iso_ms(v)
                if ms is not None:
                    out.add(ms)
        return out

    def _check_aggregatable(self, index: str, field: str, desc: str) -> None:
        """OpenSearch refuses a terms aggregation on a text field in any targeted index."""
        for ix in self._targets(index):
            if ix.field(field).type == "text":
                raise SourceError(
                    self.name,
                    ErrorKind.query,
                    desc,
                    "illegal_argument_exception: Text fields are not optimised for operations "
                    "that require per-document field data like aggregations and sorting, so "
                    "these operations are disabled by default. Please use a keyword field "
                    "instead.",
                    400,
                )

    def _buckets(self, hits: list[tuple[_Index, int]], field: str, size: int) -> list[Bucket]:
        counts: dict[Any, int] = {}
        for ix, i in hits:
            for term in _terms_of(ix.field(field), ix.docs[i]):
                counts[term] = counts.get(term, 0) + 1
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], _sort_key(kv[0])))
        return [Bucket(_key_text(k), c) for k, c in ranked[:size]]

    # -- LogSource -----------------------------------------------------------------------
    def search(
        self,
        index: str,
        start: datetime,
        end: datetime,
        filters: Filters | None = None,
        size: int = 100,
        newest_first: bool = True,
    ) -> SearchResult:
        hits = self._matching(index, start, end, filters)
        order = sorted(
            range(len(hits)),
            key=lambda n: -hits[n][0].ts[hits[n][1]] if newest_first else hits[n][0].ts[hits[n][1]],
        )
        take = max(0, min(size, MAX_SEARCH_SIZE))
        docs = [copy.deepcopy(hits[n][0].docs[hits[n][1]]) for n in order[:take]]
        return SearchResult(len(hits), docs)

    def terms(
        self,
        index: str,
        field: str,
        start: datetime,
        end: datetime,
        filters: Filters | None = None,
        size: int = 10,
    ) -> list[Bucket]:
        desc = self._desc("terms", index, field=field, filters=filters, size=size)
        hits = self._matching(index, start, end, filters)
        self._check_aggregatable(index, field, desc)
        return self._buckets(hits, field, max(1, min(size, 1000)))

    def date_histogram(
        self,
        index: str,
        start: datetime,
        end: datetime,
        interval: timedelta,
        filters: Filters | None = None,
        split_by: str | None = None,
    ) -> list[Bucket]:
        if interval.total_seconds() < 1:
            raise ValueError("interval must be at least 1s")
        text = format_duration(interval)  # what OpenSearchSource sends as fixed_interval
        desc = self._desc("date_histogram", index, interval=text, filters=filters, split=split_by)
        m = re.fullmatch(r"(\d+)([dhms])", text)
        if m is None:
            raise SourceError(
                self.name,
                ErrorKind.query,
                desc,
                f"illegal_argument_exception: failed to parse setting [date_histogram."
                f"fixedInterval] with value [{text}] as a time value",
                400,
            )
        step = (
            int(m.group(1)) * {"d": 86_400_000, "h": 3_600_000, "m": 60_000, "s": 1000}[m.group(2)]
        )
        hits = self._matching(index, start, end, filters)
        if split_by:
            self._check_aggregatable(index, split_by, desc)
        if not self._targets(index):
            return []  # no index: the reply has no aggregations at all
        lo = _iso_ms(_iso(start))
        hi = _iso_ms(_iso(end - timedelta(seconds=1)))
        assert lo is not None and hi is not None
        keys = [ix.ts[i] // step * step for ix, i in hits]
        first = min([lo // step * step, *keys])
        last = max([hi // step * step, *keys])
        if hi < lo and not keys:
            return []
        by_key: dict[int, list[tuple[_Index, int]]] = {}
        for key, hit in zip(keys, hits, strict=True):
            by_key.setdefault(int(key), []).append(hit)
        out = []
        for key in range(int(first), int(last) + 1, step):
            members = by_key.get(key, [])
            sub = tuple(self._buckets(members, split_by, 20)) if split_by else ()
            out.append(Bucket(key / 1000.0, len(members), sub))
        return out


def _iso(at: datetime) -> str:
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _sort_key(key: Any) -> tuple[int, Any]:
    if isinstance(key, bool):
        return (0, int(key))
    if isinstance(key, int | float):
        return (0, key)
    return (1, str(key))


def _key_text(key: Any) -> str:
    """The bucket key as OpenSearchSource makes it: ``str`` of the JSON key (a boolean
    field's key is 1 or 0; a float field's is its float32 value as a double)."""
    if isinstance(key, bool):
        return "1" if key else "0"
    return str(key)


# --- from the simulator -------------------------------------------------------------------------


def from_simulation(
    *data: SimulatedData,
    clock: Callable[[], datetime] | None = None,
) -> tuple[InMemoryMetrics, InMemoryLogs]:
    """Both sources over simulated data (several datasets: different times, as
    ``scripts/stack load`` takes them), holding what ``paytriage simulate`` writes."""
    from paytriage.lab.simulate.output import CHANGES_TEMPLATE, LOGS_TEMPLATE, _index_for

    if not data:
        raise ValueError("from_simulation needs at least one SimulatedData")
    metrics = InMemoryMetrics.from_families(
        [(d.families, d.traffic.times) for d in data], clock=clock
    )
    indices: dict[str, list[dict[str, Any]]] = {}
    for d in data:
        for doc in d.logs:
            indices.setdefault(_index_for(doc, "payments-logs"), []).append(doc)
        for doc in d.changes:
            indices.setdefault(_index_for(doc, "changes"), []).append(doc)
    logs = InMemoryLogs(indices, [LOGS_TEMPLATE, CHANGES_TEMPLATE])
    return metrics, logs


__all__ = ["InMemoryLogs", "InMemoryMetrics", "from_simulation"]
