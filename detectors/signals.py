"""Signals on a time grid: what every detector reads, the same live and in a backtest.

A ``Frame`` holds named PromQL results on a regular grid (``times[i] = start + i * step``)
for the present and for seasonal offsets (the same grid one week back, two weeks back, one
day back...). A detector evaluated "at index i" reads only indices ``<= i`` of the present
block, so replaying a frame step by step never looks ahead. History blocks are in the past by
construction; a detector may read around index ``i`` there.

Fetching is the caller's business (``paytriage.detection``); everything here is pure.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, NoReturn, TypeVar

import numpy as np

from paytriage.core.types import format_duration

if TYPE_CHECKING:
    from paytriage.detectors.stats import Recovery


LabelKey = tuple[tuple[str, str], ...]
T = TypeVar("T")

WEEK = 7 * 86400.0
DAY = 86400.0


def label_key(labels: Mapping[str, str], dims: Iterable[str] | None = None) -> LabelKey:
    """A hashable, ordered key of the labels (restricted to ``dims`` when given)."""
    if dims is None:
        return tuple(sorted(labels.items()))
    return tuple(sorted((d, labels[d]) for d in dims if d in labels))


def dims_of(key: LabelKey) -> dict[str, str]:
    return dict(key)


@dataclass(frozen=True)
class Offset:
    """A block of history: ``seconds`` back from the present grid; ``kind`` weekly|daily."""

    seconds: float
    kind: str


PRESENT = Offset(0.0, "present")


def last_minute(template: str, window: timedelta, **fields: str) -> str:
    """A query over the last minute where the data allows it, else over ``window``.

    ``increase(x[1m])`` needs two samples in the minute: true at a 15 or 30 s scrape, and at
    60 s when samples sit on the minute (Prometheus 2 ranges include both ends); otherwise
    it is empty and ``or`` falls back to ``window`` (at a 60 s scrape, the last increment).
    So "the last minute is still failing" means the same at every scrape interval, and a
    two-minute blip is over by the third evaluation.
    """
    one = template.format(window="1m", **fields)
    if window <= timedelta(minutes=1):
        return one
    return f"({one}) or ({template.format(window=format_duration(window), **fields)})"


def minute_counts(
    frame: Frame,
    num: str,
    den: str,
    dims: Sequence[str],
    key: LabelKey,
    i: int,
    n: int,
    *,
    reference: str,
    window: timedelta,
    allow_empty: bool = False,
) -> tuple[np.ndarray, np.ndarray] | None:
    """The last ``n`` one-minute counts (numerator, denominator) of a slice, newest first.

    Read from the ``last_minute`` signals ``num``/``den`` and scaled to the counts of the
    ``reference`` signal over ``window`` (the same denominator over a longer window) across
    the last half hour: where Prometheus had to fall back to a wider range and extrapolate,
    the short counts would otherwise be inflated and a test on them overconfident. None when
    any of the minutes is missing, or empty (a zero denominator) unless ``allow_empty``.
    """
    n_arr = frame.rolled(num, 0, dims).get(key)
    d_arr = frame.rolled(den, 0, dims).get(key)
    if n_arr is None or d_arr is None or i >= len(d_arr) or i >= len(n_arr):
        return None
    per = frame.steps(_MINUTE)
    first = i - (n - 1) * per
    if first < 0:
        return None
    # newest first, one value per minute (a step of a minute: a reversed slice, no copy)
    rows = slice(i, first - 1 if first else None, -per)
    nums, dens = n_arr[rows], d_arr[rows]
    if not math.isfinite(float(nums.sum()) + float(dens.sum())):  # a NaN or inf in either
        return None
    if not allow_empty and float(dens.min()) <= 0:
        return None
    factors = frame.series(
        ("minute_factor", den, reference, dims, key, window),
        functools.partial(_minute_factors, frame, den, reference, dims, key, window),
        i,
    )
    factor = float(factors[i]) if i < len(factors) else 1.0
    return nums * factor, dens * factor


def _minute_factors(
    frame: Frame,
    den: str,
    reference: str,
    dims: Sequence[str],
    key: LabelKey,
    window: timedelta,
    lo: int = 0,
) -> np.ndarray:
    """:func:`minute_counts`' scale at every index from ``lo`` on (1 before it): the
    ``reference`` counts over ``window`` against the one-minute ``den`` counts across the
    last half hour (1 where unknown)."""
    short_c = frame.cumulative(den, 0, dims).get(key)
    ref_c = frame.cumulative(reference, 0, dims).get(key)
    if short_c is None or ref_c is None:
        return np.ones(0)
    out = np.ones(len(short_c.values))
    i = np.arange(max(lo, 0), len(short_c.values))
    since = np.maximum(0, i - frame.steps(timedelta(minutes=30)))
    short, ns = short_c.sums(since, i + 1)
    ref, nr = ref_c.sums(since, i + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = ref * ns / (nr * short * (window / timedelta(minutes=1)))
    factor = np.where(np.isfinite(factor), np.clip(factor, 0.25, 4.0), 1.0)
    out[i] = np.where((np.minimum(ns, nr) >= 5) & (short > 0), factor, 1.0)
    return out


_MINUTE = timedelta(minutes=1)
MINUTE_ALPHA = 0.01  # what is left of a rise once its two worst minutes are set aside
BLIP_MINUTES = 2  # a blip this many minutes long must never page


def _stands_out(f: float, a: float, floor: float, expected: float, overdispersion: float) -> bool:
    from paytriage.detectors.stats import proportion_excess

    if a <= 0 or f < a * floor:
        return False
    test = proportion_excess(f, a, expected, overdispersion=overdispersion, alpha=MINUTE_ALPHA)
    return test.p_value < MINUTE_ALPHA


def last_minute_high(
    frame: Frame,
    key: LabelKey,
    i: int,
    *,
    floor: float,
    expected: float,
    window: timedelta,
    overdispersion: float = 0.0,
    num: str = "failures_short",
    den: str = "attempts_short",
    reference: str = "attempts",
) -> bool:
    """Is the rise still on in the last minute: a ratio of at least ``floor``, unlikely at
    ``expected`` on its own (one-sided, ``MINUTE_ALPHA``)? True when that minute has no data
    (an outage that stops traffic is still on)."""
    dims = tuple(d for d, _ in key)
    counts = minute_counts(frame, num, den, dims, key, i, 1, reference=reference, window=window)
    if counts is None:
        return True
    return _stands_out(float(counts[0][0]), float(counts[1][0]), floor, expected, overdispersion)


#: A raised slice's recovery is judged over enough whole minutes to expect this many events
#: at its holding level (at least its ``recovery_window``): a small slice's few minutes
#: cannot tell a recovery from a lull.
RECOVERY_EVENTS = 20.0

#: How improbable a change back must be to end a problem at once: strict, since one such
#: change clears a finding (after its ``clear_after``) without the pool's consent, and a
#: problem of an hour offers many chances for a lull.
CHANGE_ALPHA = 1e-3


def ratio_recovery(
    frame: Frame,
    key: LabelKey,
    i: int,
    *,
    span: timedelta,
    floor: float,
    expected: float,
    alpha: float,
    window: timedelta,
    max_span: timedelta | None = None,
    overdispersion: float = 0.0,
    change_overdispersion: float | None = None,
    num: str = "failures_short",
    den: str = "attempts_short",
    reference: str = "attempts",
) -> Recovery | None:
    """Is a rise still out of its band over its last minutes, pooled: a ratio of at least
    ``floor`` (the holding level), improbable at ``expected`` at the lenient ``alpha``? If
    not, since when is it back? (``detectors.stats.recovery``.)

    The pool is ``span`` long, or longer (up to ``max_span``) for a slice too small to
    expect ``RECOVERY_EVENTS`` at ``floor`` in it. The data shows the ratio back since
    minute ``j`` when the newest ``j + 1`` minutes are within band, below ``floor`` and
    improbably low (``CHANGE_ALPHA``) against the ratio of the pool's minutes before them
    (``span`` at least); of those changes, the most improbable. ``overdispersion`` is the
    slice's at ``expected``; ``change_overdispersion`` (default the same) the one the change
    is judged with. None when a minute
    of the pool has no value (nothing to tell a recovery by); minutes without attempts
    carry no evidence either way."""
    from paytriage.detectors.stats import proportion_excess, recovery

    least = max(1, round(span / _MINUTE))
    most = max(least, round((max_span or span) / _MINUTE))
    dims = tuple(d for d, _ in key)
    counts = None
    for want in dict.fromkeys((most + least, most, least)):
        counts = minute_counts(
            frame,
            num,
            den,
            dims,
            key,
            i,
            want,
            reference=reference,
            window=window,
            allow_empty=True,
        )
        if counts is not None:
            break
    if counts is None:
        return None
    f_all, a_all = counts
    f_cum, a_cum = np.cumsum(f_all), np.cumsum(a_all)
    enough = np.nonzero(a_cum * floor >= RECOVERY_EVENTS)[0]
    n = min(len(a_all), most, max(least, int(enough[0]) + 1 if len(enough) else most))

    def out(k: int) -> bool:
        f, a = float(f_cum[k - 1]), float(a_cum[k - 1])
        if a <= 0 or f < a * floor:
            return False
        test = proportion_excess(f, a, expected, overdispersion=overdispersion, alpha=alpha)
        return test.significant

    def back_since(j: int) -> float | None:
        # the minutes before the newest j + 1, back to the pool's end (``span`` at least)
        last = min(len(a_all), max(n, j + 1 + least)) - 1
        if last < j + least or out(j + 1):
            return None
        f, a = float(f_cum[j]), float(a_cum[j])
        ref_a = float(a_cum[last] - a_cum[j])
        if a <= 0 or ref_a <= 0:
            return None
        ref = float(f_cum[last] - f_cum[j]) / ref_a
        if f / a >= min(ref, floor):  # back below the holding level, and lower than before
            return None
        # improbably few failures at the rate before: as many successes, improbably many
        rho = overdispersion if change_overdispersion is None else change_overdispersion
        low = proportion_excess(a - f, a, 1 - ref, overdispersion=rho, alpha=CHANGE_ALPHA)
        return low.p_value if low.significant else None

    return recovery(out, back_since, n, least)


def burst_since(
    frame: Frame,
    key: LabelKey,
    i: int,
    *,
    span: timedelta,
    floor: float,
    expected: float,
    alpha: float,
    min_den: float,
    window: timedelta,
    overdispersion: float = 0.0,
    num: str = "failures_short",
    den: str = "attempts_short",
    reference: str = "attempts",
) -> int | None:
    """The index of the first of the last k minutes (k from three up to ``span``) that hold a
    rise which has persisted; else None.

    The k minutes' total must be improbable at ``expected`` (``alpha``), and what is left once
    their two worst minutes are set aside must still have a ratio of at least ``floor`` and
    be unlikely on its own (``MINUTE_ALPHA``): a two-minute blip is all in those two minutes,
    so it never qualifies, while a real rise shows in the rest too. Such a rise counts
    towards ``for`` from its first minute instead of waiting for more evaluations.
    """
    from paytriage.detectors.stats import proportion_excess

    n = max(1, round(span / timedelta(minutes=1)))
    dims = tuple(d for d, _ in key)
    counts = minute_counts(frame, num, den, dims, key, i, n, reference=reference, window=window)
    if counts is None:
        return None
    f_all, a_all = counts
    idx = frame.whole_windows(i, timedelta(minutes=1), span)
    for k in range(BLIP_MINUTES + 1, n + 1):
        f, a = f_all[:k], a_all[:k]
        if float(a.sum()) < min_den:
            continue
        excess = f - a * expected
        rest = np.argsort(excess)[: k - BLIP_MINUTES]
        if not _stands_out(
            float(f[rest].sum()), float(a[rest].sum()), floor, expected, overdispersion
        ):
            continue
        total = proportion_excess(
            float(f.sum()), float(a.sum()), expected, overdispersion=overdispersion, alpha=alpha
        )
        if total.p_value < alpha:
            return int(idx[k - 1])
    return None


def seasonal_offsets(weeks: int, days: int = 1) -> tuple[Offset, ...]:
    """The present, ``weeks`` weekly blocks and ``days`` daily blocks (the fallback)."""
    out = [PRESENT]
    out += [Offset(k * WEEK, "weekly") for k in range(1, weeks + 1)]
    out += [Offset(k * DAY, "daily") for k in range(1, days + 1)]
    return tuple(out)


@dataclass
class Frame:
    start: float  # unix seconds of index 0
    step: float  # seconds
    n: int
    offsets: tuple[Offset, ...] = (PRESENT,)
    # signal name -> one dict per offset: label key -> values (NaN where missing)
    data: dict[str, list[dict[LabelKey, np.ndarray]]] = field(default_factory=dict)
    queries: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # signal -> why it could not be read
    _cache: dict[tuple[object, ...], object] = field(default_factory=dict, repr=False)
    _steps: dict[timedelta | float, int] = field(default_factory=dict, repr=False)

    def time(self, i: int) -> float:
        return self.start + i * self.step

    def when(self, i: int) -> datetime:
        return datetime.fromtimestamp(self.time(i), UTC)

    def index(self, t: float | datetime) -> int:
        ts = t.timestamp() if isinstance(t, datetime) else t
        return round((ts - self.start) / self.step)

    def steps(self, d: timedelta | float) -> int:
        """How many steps ``d`` spans, at least one (memoised: detectors ask per slice)."""
        n = self._steps.get(d)
        if n is None:
            seconds = d.total_seconds() if isinstance(d, timedelta) else d
            n = self._steps[d] = max(1, math.ceil(seconds / self.step))
        return n

    def put(self, signal: str, offset: int, series: Mapping[LabelKey, np.ndarray]) -> None:
        blocks = self.data.setdefault(signal, [{} for _ in self.offsets])
        blocks[offset] = series if isinstance(series, Rows) else dict(series)

    def present(self, signal: str) -> dict[LabelKey, np.ndarray]:
        return self.data.get(signal, [{}])[0]

    def at(self, signal: str, key: LabelKey, i: int) -> float:
        """The present value of one series at index i; NaN when missing."""
        arr = self.present(signal).get(key)
        if arr is None or not 0 <= i < len(arr) or not math.isfinite(arr[i]):
            return math.nan
        return float(arr[i])

    def block(self, signal: str, offset: int) -> dict[LabelKey, np.ndarray]:
        blocks = self.data.get(signal)
        return blocks[offset] if blocks and offset < len(blocks) else {}

    def history(self, kind: str) -> list[int]:
        return [k for k, o in enumerate(self.offsets) if o.kind == kind]

    def whole_windows(self, i: int, window: timedelta, span: timedelta) -> np.ndarray:
        """Indices of the disjoint ``window``-long windows that end at i, newest first, back
        over ``span`` (a value at index j covers the window ending at j)."""
        w = self.steps(window)
        k = max(1, round(span / window))
        return np.arange(i, max(i - k * w, -1), -w, dtype=np.int64)

    def series(self, key: tuple[object, ...], compute: Callable[[int], T], i: int) -> T:
        """A statistic a detector derives for every index from ``lo`` on at once
        (``compute(lo)``), kept for the frame: a replay steps forward through it and reads
        one index at a time, the live cycle asks for its last index only. Computed from
        index i on, and again only if an earlier index is asked for. Each index's value may
        only use data up to that index."""
        held = self._cache.get(key)
        if held is None or held[0] > i:  # type: ignore[index]
            held = self._cache[key] = (i, compute(i))
        return held[1]  # type: ignore[index]

    def members(self, signal: str, key: LabelKey) -> dict[LabelKey, np.ndarray]:
        """The present series of ``signal`` that belong to the slice ``key`` (cached)."""
        ck = (signal, 0, tuple(f"{d}={v}" for d, v in key), "members")
        if ck not in self._cache:
            present = self.present(signal)
            if not key:
                self._cache[ck] = dict(present)
            else:
                # The series holding the rarest of the slice's labels, in the frame's order,
                # that hold the others too (a slice of a wide platform is a few of thousands).
                by_label = self._by_label(signal)
                fewest = min((by_label.get(pair, ()) for pair in key), key=len)
                self._cache[ck] = {
                    fine: present[fine] for fine in fewest if all(p in fine for p in key)
                }
        return self._cache[ck]  # type: ignore[return-value]

    def _by_label(self, signal: str) -> dict[tuple[str, str], list[LabelKey]]:
        """The present series of ``signal`` by each label they carry, in the frame's order."""
        ck = (signal, 0, (), "by_label")
        if ck not in self._cache:
            index: dict[tuple[str, str], list[LabelKey]] = {}
            for fine in self.present(signal):
                for pair in fine:
                    index.setdefault(pair, []).append(fine)
            self._cache[ck] = index
        return self._cache[ck]  # type: ignore[return-value]

    def rolled(self, signal: str, offset: int, dims: Sequence[str]) -> dict[LabelKey, np.ndarray]:
        """The signal summed into ``dims`` (cached: a backtest asks at every step)."""
        ck = (signal, offset, tuple(sorted(dims)), "sum")
        if ck not in self._cache:
            self._cache[ck] = rollup(self.block(signal, offset), dims)
        return self._cache[ck]  # type: ignore[return-value]

    def cumulative(self, signal: str, offset: int, dims: Sequence[str]) -> dict[LabelKey, Cum]:
        """Prefix sums of the rolled-up signal, for O(1) sums over any index range."""
        ck = (signal, offset, tuple(sorted(dims)), "cum")
        if ck not in self._cache:
            self._cache[ck] = Cum.each(self.rolled(signal, offset, dims))
        return self._cache[ck]  # type: ignore[return-value]

    def rolling_quantile(
        self, signal: str, offset: int, dims: Sequence[str], half: int, q: float
    ) -> dict[LabelKey, np.ndarray]:
        """The ``q`` quantile of the rolled-up signal over ``[j - half, j + half]`` at each j
        (NaN where fewer than ``half`` points are present), computed once per series."""
        ck = (signal, offset, tuple(sorted(dims)), f"q{q}:{half}")
        if ck not in self._cache:
            out = {}
            for key, arr in self.rolled(signal, offset, dims).items():
                padded = np.concatenate([np.full(half, np.nan), arr, np.full(half, np.nan)])
                windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1)
                enough = np.isfinite(windows).sum(axis=1) >= half
                out[key] = np.where(enough, nanquantile_rows(windows, q), np.nan)
            self._cache[ck] = out
        return self._cache[ck]  # type: ignore[return-value]


def nanquantile_rows(windows: np.ndarray, q: float) -> np.ndarray:
    """``np.nanquantile(windows, q, axis=1)`` (its default linear method, the same floating
    point operations, so the same bits), vectorised over the rows: numpy runs a Python loop
    per row as soon as one value is NaN, which every padded window has (the live cycle of a
    60-country platform spent seconds there). A row without values gives NaN."""
    srt = np.sort(windows, axis=1)  # NaN last
    count = (~np.isnan(windows)).sum(axis=1)
    virtual = (count - 1) * q  # numpy's virtual index for the linear method
    prev = np.floor(virtual)
    nxt = prev + 1
    above, below = virtual >= count - 1, virtual < 0
    prev[above], nxt[above] = -1, -1  # -1: the last value present
    prev[below], nxt[below] = 0, 0
    gamma = virtual - prev
    last = np.maximum(count - 1, 0)
    rows = np.arange(len(srt))
    lo = srt[rows, np.where(prev < 0, last, prev).astype(np.intp)]
    hi = srt[rows, np.where(nxt < 0, last, nxt).astype(np.intp)]
    with np.errstate(invalid="ignore"):  # rows without values (NaN), infinities
        diff = hi - lo
        out = lo + diff * gamma
        np.subtract(hi, diff * (1 - gamma), out=out, where=gamma >= 0.5)
    out[count == 0] = np.nan
    return out


class Cum:
    """Prefix sums that ignore missing points and count the present ones."""

    def __init__(
        self, values: np.ndarray, sums: np.ndarray | None = None, counts: np.ndarray | None = None
    ) -> None:
        self.values = values
        if sums is None or counts is None:
            finite = np.isfinite(values)
            sums = np.concatenate([[0.0], np.cumsum(np.where(finite, values, 0.0))])
            counts = np.concatenate([[0], np.cumsum(finite)])
        self._sum, self._cnt = sums, counts

    @classmethod
    def each(cls, series: Mapping[LabelKey, np.ndarray]) -> dict[LabelKey, Cum]:
        """One Cum per series; series of one length (a rolled-up block's rows) in one pass."""
        if len({len(v) for v in series.values()}) != 1:
            return {k: cls(v) for k, v in series.items()}
        matrix = np.stack(list(series.values()))
        finite = np.isfinite(matrix)
        sums = np.zeros((len(matrix), matrix.shape[1] + 1))
        np.cumsum(np.where(finite, matrix, 0.0), axis=1, out=sums[:, 1:])
        counts = np.zeros((len(matrix), matrix.shape[1] + 1), dtype=np.int64)
        np.cumsum(finite, axis=1, out=counts[:, 1:])
        return {k: cls(v, sums[r], counts[r]) for r, (k, v) in enumerate(series.items())}

    def sum(self, lo: int, hi: int) -> tuple[float, int]:
        """(sum, number of present points) over ``[lo, hi)``, clipped to the array."""
        n = len(self.values)
        lo, hi = min(max(lo, 0), n), min(max(hi, 0), n)
        if hi <= lo:
            return 0.0, 0
        return float(self._sum[hi] - self._sum[lo]), int(self._cnt[hi] - self._cnt[lo])

    def sums(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`sum` over many ranges ``[lo[j], hi[j])`` at once: (sums, counts)."""
        n = len(self.values)
        # minimum/maximum, not np.clip: the live cycle calls this for a handful of indices
        # per slice, thousands of times, and np.clip's own overhead was most of its cost
        lo = np.minimum(np.maximum(lo, 0), n)
        hi = np.maximum(np.minimum(np.maximum(hi, 0), n), lo)
        return self._sum[hi] - self._sum[lo], self._cnt[hi] - self._cnt[lo]


class Rows(dict[LabelKey, np.ndarray]):
    """Series that are the rows of one matrix, in order (a range grid's): :func:`rollup`
    sums them as that matrix instead of stacking thousands of rows again, and keeps what it
    summed. Rows that are a column ``window`` of other rows (``(parent, first)``: a block of
    the past the live cycle reads a little further into each minute) are summed by taking
    the same columns of the parent's sums. Read-only, so the rows and the matrix cannot
    part."""

    def __init__(
        self,
        keys: Sequence[LabelKey],
        matrix: np.ndarray,
        window: tuple[Rows, int] | None = None,
    ) -> None:
        if len(keys) != len(matrix):
            raise ValueError(f"{len(keys)} keys for {len(matrix)} rows")
        super().__init__(zip(keys, matrix, strict=True))
        self.matrix = matrix
        self.window = window
        self._sums: dict[tuple[str, ...], dict[LabelKey, np.ndarray]] = {}

    def rolled(self, dims: tuple[str, ...]) -> dict[LabelKey, np.ndarray]:
        """:func:`rollup` into the sorted ``dims``, kept (read-only arrays)."""
        held = self._sums.get(dims)
        if held is not None:
            return held
        if self.window is not None:
            parent, first = self.window
            cols = slice(first, first + self.matrix.shape[1])
            sums = parent.rolled(dims)
            # The groups of these rows, in their order: as if summed here.
            held = {name: sums[name][cols] for name in _grouping(tuple(self), dims)[0]}
        else:
            held = _rollup_matrix(self, self.matrix, dims)
            for arr in held.values():
                arr.flags.writeable = False
        self._sums[dims] = held
        return held

    def __reduce__(self) -> tuple[type[Rows], tuple[tuple[LabelKey, ...], np.ndarray]]:
        return Rows, (tuple(self), self.matrix)

    def _read_only(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("Rows are read-only (copy them into a dict to change them)")

    __setitem__ = __delitem__ = _read_only
    update = pop = popitem = clear = setdefault = __ior__ = _read_only


def rollup(
    series: Mapping[LabelKey, np.ndarray], dims: Sequence[str]
) -> dict[LabelKey, np.ndarray]:
    """Sum series into the given dimensions (``[]`` gives the total under key ``()``).

    A point is NaN only where every contributing series is NaN (missing data stays missing).
    Series of one length (a frame's block) are summed as one matrix, group by group; the sums
    of :class:`Rows` are kept with them and are read-only.
    """
    if isinstance(series, Rows):
        return series.rolled(tuple(sorted(dims)))
    return _rollup_matrix(series, None, tuple(sorted(dims)))


def _rollup_matrix(
    series: Mapping[LabelKey, np.ndarray], matrix_all: np.ndarray | None, dims: tuple[str, ...]
) -> dict[LabelKey, np.ndarray]:
    if not series:
        return {}
    names, member, order, starts = _grouping(tuple(series), dims)
    if not names:
        return {}
    if matrix_all is not None:
        matrix = matrix_all[np.asarray(order, dtype=np.intp)]
    else:
        values = list(series.values())
        rows = [values[r] for r in order]
        if len({len(r) for r in rows}) > 1:
            return _rollup_ragged([names[g] for g in member], rows)
        matrix = np.stack(rows)
    finite = np.isfinite(matrix)
    sums = np.add.reduceat(np.where(finite, matrix, 0.0), starts, axis=0)
    seen = np.logical_or.reduceat(finite, starts, axis=0)
    sums[~seen] = np.nan
    return {name: sums[g] for g, name in enumerate(names)}


@functools.lru_cache(maxsize=512)
def _grouping(
    keys: tuple[LabelKey, ...], dims: tuple[str, ...]
) -> tuple[tuple[LabelKey, ...], tuple[int, ...], tuple[int, ...], np.ndarray]:
    """How the series ``keys`` roll up into ``dims`` (the same keys come back every minute
    and for every past block): the groups in order of first appearance, each member's group
    (sorted by group), the members' positions in ``keys`` in that order, and where each
    group starts among them."""
    groups: dict[LabelKey, int] = {}
    pos, gid = [], []
    for p, key in enumerate(keys):
        labels = dict(key)
        if all(d in labels for d in dims):
            pos.append(p)
            gid.append(groups.setdefault(tuple((d, labels[d]) for d in dims), len(groups)))
    if not pos:
        return (), (), (), np.empty(0, np.int64)
    g = np.asarray(gid, np.int64)
    by_group = np.argsort(g, kind="stable")
    sorted_g = g[by_group]
    starts = np.flatnonzero(np.r_[True, np.diff(sorted_g) != 0])
    starts.flags.writeable = False
    order = tuple(int(pos[i]) for i in by_group)
    return tuple(groups), tuple(int(x) for x in sorted_g), order, starts


def _rollup_ragged(keys: list[LabelKey], rows: list[np.ndarray]) -> dict[LabelKey, np.ndarray]:
    out: dict[LabelKey, np.ndarray] = {}
    seen: dict[LabelKey, np.ndarray] = {}
    for k, values in zip(keys, rows, strict=True):
        finite = np.isfinite(values)
        if k in out:
            out[k] = out[k] + np.where(finite, values, 0.0)
            seen[k] = seen[k] | finite
        else:
            out[k] = np.where(finite, values, 0.0)
            seen[k] = finite
    return {k: np.where(seen[k], v, np.nan) for k, v in out.items()}


def ratio_onset(
    frame: Frame,
    num: str,
    den: str,
    key: LabelKey,
    expected: float,
    i: int,
    *,
    lookback: timedelta,
    short_window: timedelta,
) -> datetime | None:
    """When a ratio's rise began: one-sided CUSUM over its short-window values.

    The spread is the binomial one at the slice's typical short-window volume (floored), so
    onset is judged on the same scale as the detection.
    """
    from paytriage.detectors.stats import cusum_onset

    dims = tuple(d for d, _ in key)
    n_arr = frame.rolled(num, 0, dims).get(key)
    d_arr = frame.rolled(den, 0, dims).get(key)
    if n_arr is None or d_arr is None:
        return None
    lo = max(0, i - frame.steps(lookback))
    n_, d_ = n_arr[lo : i + 1], d_arr[lo : i + 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(d_ > 0, n_ / d_, np.nan)
    typical = float(np.nanmedian(d_)) if np.isfinite(d_).any() else 0.0
    p = min(max(expected, 1e-6), 1 - 1e-6)
    spread = max(math.sqrt(p * (1 - p) / max(typical, 1.0)), 0.1 * p, 1e-4)
    start = cusum_onset(rate.tolist(), expected, spread=spread, k=0.5)
    if start is None:
        return None
    # A short-window value first rises one step after the change entered its window.
    return frame.when(lo + start) - short_window + timedelta(seconds=frame.step)
