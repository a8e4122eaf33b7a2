"""Signals on a time grid: what every detector reads, the same live and in a backtest.

A ``Frame`` holds named PromQL results on a regular grid (``times[i] = start + i * step``)
for the present and for seasonal offsets (the same grid one week back, two weeks back, one
day back...). A detector evaluated "at index i" reads only indices ``<= i`` of the present
block, so replaying a frame step by step never looks ahead. History blocks are in the past by
construction; a detector may read around index ``i`` there.

Fetching is the caller's business (``bot.detection``); everything here is pure.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from bot.config.types import format_duration

LabelKey = tuple[tuple[str, str], ...]

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
    _cache: dict[tuple[str, int, tuple[str, ...], str], object] = field(
        default_factory=dict, repr=False
    )

    def time(self, i: int) -> float:
        return self.start + i * self.step

    def when(self, i: int) -> datetime:
        return datetime.fromtimestamp(self.time(i), UTC)

    def index(self, t: float | datetime) -> int:
        ts = t.timestamp() if isinstance(t, datetime) else t
        return round((ts - self.start) / self.step)

    def steps(self, d: timedelta | float) -> int:
        seconds = d.total_seconds() if isinstance(d, timedelta) else d
        return max(1, math.ceil(seconds / self.step))

    def put(self, signal: str, offset: int, series: Mapping[LabelKey, np.ndarray]) -> None:
        blocks = self.data.setdefault(signal, [{} for _ in self.offsets])
        blocks[offset] = dict(series)

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
        return np.array([j for j in range(i, i - k * w, -w) if j >= 0], dtype=np.int64)

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
            self._cache[ck] = {k: Cum(v) for k, v in self.rolled(signal, offset, dims).items()}
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
                with np.errstate(all="ignore"), warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    vals = np.nanquantile(windows, q, axis=1)
                out[key] = np.where(enough, vals, np.nan)
            self._cache[ck] = out
        return self._cache[ck]  # type: ignore[return-value]


class Cum:
    """Prefix sums that ignore missing points and count the present ones."""

    def __init__(self, values: np.ndarray) -> None:
        finite = np.isfinite(values)
        self.values = values
        self._sum = np.concatenate([[0.0], np.cumsum(np.where(finite, values, 0.0))])
        self._cnt = np.concatenate([[0], np.cumsum(finite)])

    def sum(self, lo: int, hi: int) -> tuple[float, int]:
        """(sum, number of present points) over ``[lo, hi)``, clipped to the array."""
        n = len(self.values)
        lo, hi = min(max(lo, 0), n), min(max(hi, 0), n)
        if hi <= lo:
            return 0.0, 0
        return float(self._sum[hi] - self._sum[lo]), int(self._cnt[hi] - self._cnt[lo])


def rollup(
    series: Mapping[LabelKey, np.ndarray], dims: Sequence[str]
) -> dict[LabelKey, np.ndarray]:
    """Sum series into the given dimensions (``[]`` gives the total under key ``()``).

    A point is NaN only where every contributing series is NaN (missing data stays missing).
    """
    out: dict[LabelKey, np.ndarray] = {}
    seen: dict[LabelKey, np.ndarray] = {}
    for key, values in series.items():
        labels = dict(key)
        if any(d not in labels for d in dims):
            continue
        k = tuple((d, labels[d]) for d in sorted(dims))
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
    from detectors.stats import cusum_onset

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
