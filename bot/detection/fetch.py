"""Running detectors over time: fetch signals once into a Frame, then step through it.

The same code serves ``detect --once`` (a short replay ending now, so persistence is judged
as the live bot would), ``backtest`` (a long replay) and the live scheduler (one step per
cycle). Detectors are pure (``detectors/<id>.py``: ``signals``, ``offsets``, ``lookback``,
``assess``); persistence and hysteresis are applied here with ``detectors.stats.Debouncer``.
"""

from __future__ import annotations

import functools
import itertools
import logging
import zlib
from collections.abc import Collection, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from paytriage.detectors.signals import Frame, LabelKey, Offset, Rows, label_key
from paytriage.sources.base import MetricsSource, Series, SourceError

log = logging.getLogger(__name__)

# Prometheus refuses more than 11,000 points per series; a day at one-minute steps keeps each
# request small enough for the source's timeout on wide queries.
MAX_POINTS_PER_QUERY = 1_440
# Values per range answer the fetches aim at (series x steps), and the steps of a first
# request, before the number of series is known.
POINTS_PER_ANSWER = 30_000
FIRST_STEPS = 60
FETCH_WORKERS = 4
HISTORY_MARGIN = timedelta(minutes=30)


def fetch_frame(
    source: MetricsSource,
    signals: dict[str, str],
    offsets: Sequence[Offset],
    start: datetime,
    end: datetime,
    step: timedelta,
    history: Collection[str] | None = None,
    cache: RangeCache | None = None,
) -> Frame:
    """Fetch every signal for the present grid and each history offset, once.

    With ``cache`` (the live cycle keeps one per detector) only the minutes the previous
    call did not read are fetched, plus a few it did (they may still have been filling in).

    ``history`` names the signals a detector reads in past weeks/days (default: all); the
    others are fetched for the present only. Requests run a few at a time, in chunks of at
    most a day of points, so one heavy query never meets the source's timeout. A signal that
    cannot be read is recorded in ``frame.failed`` (and logged) and left empty: the detector
    sees missing data, never zeros.
    """
    step_s = step.total_seconds()
    n = int((end - start) / step) + 1
    frame = Frame(start.timestamp(), step_s, n, tuple(offsets))
    jobs = [
        (name, k, off)
        for name in signals
        for k, off in enumerate(offsets)
        if off.seconds == 0 or history is None or name in history
    ]
    frame.queries.update(signals)

    # History blocks reach HISTORY_MARGIN past the present's end: pooling "the same time" a
    # day or a week ago looks a little after it too, which is the past, not look-ahead.
    margin = int(HISTORY_MARGIN / step)

    def one(job: tuple[str, int, Offset]) -> Grid:
        name, _, off = job
        shift = timedelta(seconds=off.seconds)
        extra = step * margin if off.seconds else timedelta(0)
        t0, t1 = start - shift, end - shift + extra
        if cache is not None:
            # A block in the past may be read ahead, up to the present moment (``end``).
            return cache.grid(source, signals[name], off.seconds, t0, t1, step, until=end)
        return range_grid(source, signals[name], t0, t1, step)

    with ThreadPoolExecutor(max_workers=FETCH_WORKERS) as pool:
        futures = [pool.submit(one, job) for job in jobs]
    for (name, k, off), fut in zip(jobs, futures, strict=True):
        try:
            grid = fut.result()
        except SourceError as exc:
            if off.seconds == 0:
                frame.failed[name] = str(exc)
                log.warning("signal %s could not be read: %s", name, exc)
            grid = Grid.empty(n + (margin if off.seconds else 0))
        frame.put(name, k, grid.rows())
    return frame


@dataclass(frozen=True, eq=False)
class Grid:
    """Series on a time grid: one row per label key, one column per step, NaN where a
    series has no point. Rows handed out are views; a grid is never written after it is
    built (the range cache builds a new one each minute)."""

    keys: tuple[LabelKey, ...]
    values: np.ndarray  # (len(keys), columns)
    # A column window of another grid (``columns``): its rows are summed from that grid's.
    parent: Grid | None = field(default=None, repr=False)
    first: int = 0

    @classmethod
    def empty(cls, columns: int) -> Grid:
        return cls((), np.empty((0, columns)))

    @classmethod
    def place(
        cls,
        series: Iterable[Series],
        t0: datetime,
        step: timedelta,
        t1: datetime,
        base: Grid | None = None,
        base_cols: int = 0,
    ) -> Grid:
        """``series`` placed on the grid from t0 to t1; with ``base``, its first
        ``base_cols`` columns are kept and the series written over the columns after."""
        step_s = step.total_seconds()
        columns = round((t1 - t0) / step) + 1
        index: dict[LabelKey, int] = {} if base is None else {k: r for r, k in enumerate(base.keys)}
        # Written as the series arrive (a chunked read's answers are let go one by one);
        # rows grow by doubling when a new series appears.
        values = np.full((max(len(index), 1), columns), np.nan)
        if base is not None and base_cols:
            values[: len(base.keys), :base_cols] = base.values[:, :base_cols]
        t0_s = t0.timestamp()
        for s in series:
            key = label_key(s.labels)
            row = index.setdefault(key, len(index))
            if row >= len(values):
                grown = np.full((2 * len(values), columns), np.nan)
                grown[: len(values)] = values
                values = grown
            ts, vs = np.asarray(s.timestamps, float), np.asarray(s.values, float)
            idx = np.rint((ts - t0_s) / step_s).astype(np.int64)
            ok = (idx >= 0) & (idx < columns)
            values[row, idx[ok]] = vs[ok]
        if len(values) > len(index):
            values = values[: len(index)].copy()  # not a view that keeps the spare rows
        return cls._present(tuple(index), values)

    def rows(self) -> Rows:
        """The rows by label key; the same object each time, so what is summed from them is
        kept with the grid (a block of the past is summed once, not every minute)."""
        return self._rows

    @functools.cached_property
    def _rows(self) -> Rows:
        window = None if self.parent is None else (self.parent.rows(), self.first)
        return Rows(self.keys, self.values, window)

    def columns(self, first: int, count: int) -> Grid:
        """The grid from column ``first``, ``count`` columns (a view), without the series
        that have no point there."""
        if first == 0 and count == self.values.shape[1]:
            return self
        part = self._present(self.keys, self.values[:, first : first + count])
        return Grid(part.keys, part.values, parent=self, first=first)

    @classmethod
    def _present(cls, keys: tuple[LabelKey, ...], values: np.ndarray) -> Grid:
        """The rows with at least one point (a series with none in the range is gone), made
        read-only: frames share its rows, so a write would be a bug."""
        alive = np.isfinite(values).any(axis=1)
        if not alive.all():
            keys = tuple(k for k, a in zip(keys, alive, strict=True) if a)
            values = values[alive]
        values.flags.writeable = False
        return cls(keys, values)


def range_answers(
    source: MetricsSource,
    query: str,
    start: datetime,
    end: datetime,
    step: timedelta,
    points: int = POINTS_PER_ANSWER,
) -> Iterator[list[Series]]:
    """``source.query_range`` over any length, in requests Prometheus accepts, answer by
    answer (a caller that places each as it comes holds one answer at a time, not all).

    The first request covers ``FIRST_STEPS`` steps; each next one as many as keep an
    answer near ``points`` values for the number of series the last one had (at most
    ``MAX_POINTS_PER_QUERY``). A parsed answer takes about 150 bytes a value before it is
    placed (a list, a float and a string for each ``[ts, "value"]``), and fetches run a few
    at a time: an answer of a thousand series by a day of minutes would be hundreds of
    megabytes, and slow enough to meet the source's timeout."""
    steps = FIRST_STEPS
    t = start
    while t <= end:
        t_end = min(end, t + step * (steps - 1))
        answer = source.query_range(query, t, t_end, step)
        yield answer
        steps = max(FIRST_STEPS, min(MAX_POINTS_PER_QUERY, points // max(1, len(answer))))
        t = t_end + step


def range_grid(
    source: MetricsSource,
    query: str,
    t0: datetime,
    t1: datetime,
    step: timedelta,
    base: Grid | None = None,
    base_cols: int = 0,
    points: int = POINTS_PER_ANSWER,
) -> Grid:
    """:func:`range_answers` from ``t0 + base_cols`` steps to ``t1`` placed on the grid from
    ``t0`` to ``t1`` as each answer arrives (see :meth:`Grid.place` for ``base``)."""
    answers = range_answers(source, query, t0 + step * base_cols, t1, step, points)
    return Grid.place(itertools.chain.from_iterable(answers), t0, step, t1, base, base_cols)


def range_chunked(
    source: MetricsSource,
    query: str,
    start: datetime,
    end: datetime,
    step: timedelta,
    points: int = POINTS_PER_ANSWER,
) -> list[Series]:
    """:func:`range_answers` merged into one series per label set."""
    answers = list(range_answers(source, query, start, end, step, points))
    if len(answers) == 1:  # one request: nothing to merge
        return answers[0]
    parts: dict[LabelKey, list[Series]] = {}
    for answer in answers:
        for s in answer:
            parts.setdefault(label_key(s.labels), []).append(s)
    return [
        Series(
            dict(ss[-1].labels),
            np.concatenate([np.asarray(x.timestamps, float) for x in ss]),
            np.concatenate([np.asarray(x.values, float) for x in ss]),
        )
        for ss in parts.values()
    ]


@dataclass(frozen=True)
class _Held:
    t0: datetime
    t1: datetime
    step: timedelta
    grid: Grid


class RangeCache:
    """Range query answers kept between live cycles, so each minute fetches only what is new.

    A detector reads hours of history every minute (the present window and the same window
    days and weeks ago); all but the newest minute it read a minute before. ``grid`` answers
    ``query_range(query, t0, t1, step)`` on the grid from t0 to t1 from what it holds:

    - the present (``shift`` 0) is re-read from ``refresh`` before the end it held (the
      newest samples may have been incomplete: a late scrape, a slow rule) to ``t1``;
    - a block days or weeks back is complete, so it is never re-read, and it is read
      ``ahead`` past ``t1`` at once (up to ``until``, the present moment: still the past),
      so most minutes it needs no query at all. What is returned still ends at ``t1``. The
      first read of a block reaches a part of ``ahead`` that depends on the query, so the
      blocks of a detector renew at different minutes, not all in one cycle an hour.

    A request it cannot extend (another step, a range before the held one) is fetched in
    full. The points and bytes per cycle do not grow with the lookback, and what is kept is
    one matrix per query, shifted along the grid.
    """

    def __init__(
        self,
        refresh: timedelta = timedelta(minutes=5),
        ahead: timedelta = timedelta(hours=1),
    ) -> None:
        self.refresh = refresh
        self.ahead = ahead
        self._held: dict[tuple[str, float], _Held] = {}

    def grid(
        self,
        source: MetricsSource,
        query: str,
        shift: float,
        t0: datetime,
        t1: datetime,
        step: timedelta,
        until: datetime | None = None,
    ) -> Grid:
        key = (query, shift)
        held = self._held.get(key)
        if held is not None and (
            held.step != step
            or not held.t0 <= t0 <= held.t1
            or (t0 - held.t0) % step != timedelta(0)
            or (not shift and t1 < held.t1)
        ):
            held = None  # not an extension of what is held: read in full
            del self._held[key]  # and let it go before the read, not after
        reach = t1
        if shift and until is not None and until > t1:
            ahead = self.ahead
            steps = self.ahead // step
            if held is None and steps:  # a first read: blocks renew at different minutes
                ahead = step * (1 + zlib.crc32(f"{query}|{shift}".encode()) % steps)
            reach = t1 + min(ahead, until - t1) // step * step
        if held is None:
            held = _Held(t0, reach, step, range_grid(source, query, t0, reach, step))
        elif not shift or t1 > held.t1:
            since = held.t1 - self.refresh if not shift else held.t1 + step
            since = max(t0, since)
            since = t0 + ((since - t0) // step) * step  # on the grid
            skip, kept = (t0 - held.t0) // step, (since - t0) // step
            base = Grid(held.grid.keys, held.grid.values[:, skip : skip + kept])
            held = _Held(t0, reach, step, range_grid(source, query, t0, reach, step, base, kept))
        self._held[key] = held
        return held.grid.columns((t0 - held.t0) // step, (t1 - t0) // step + 1)
