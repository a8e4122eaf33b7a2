"""Running detectors over time: fetch signals once into a Frame, then step through it.

The same code serves ``detect --once`` (a short replay ending now, so persistence is judged
as the live bot would), ``backtest`` (a long replay) and the live scheduler (one step per
cycle). Detectors are pure (``detectors/<id>.py``: ``signals``, ``offsets``, ``lookback``,
``assess``); persistence and hysteresis are applied here with ``detectors.stats.Debouncer``.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import math
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from types import ModuleType

import numpy as np

from bot.sources.base import MetricsSource, Series, SourceError
from detectors.base import Assessment, DetectorConfig, Finding
from detectors.signals import Frame, LabelKey, Offset, label_key
from detectors.stats import Debouncer, Transition

log = logging.getLogger(__name__)

# Prometheus refuses more than 11,000 points per series; a day at one-minute steps keeps each
# request small enough for the source's timeout on wide queries.
MAX_POINTS_PER_QUERY = 1_440
FETCH_WORKERS = 4
HISTORY_MARGIN = timedelta(minutes=30)


def detector_module(detector_id: str) -> ModuleType | None:
    """The module implementing a detector, or None while it has configuration only."""
    mod = importlib.import_module(f"detectors.{detector_id}")
    return mod if hasattr(mod, "assess") else None


@dataclass(frozen=True)
class Event:
    kind: str  # "raised" | "cleared"
    finding: Finding
    at: datetime


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

    def one(job: tuple[str, int, Offset]) -> list[Series]:
        name, _, off = job
        shift = timedelta(seconds=off.seconds)
        extra = step * margin if off.seconds else timedelta(0)
        t0, t1 = start - shift, end - shift + extra
        if cache is not None:
            return cache.get(source, signals[name], off.seconds, t0, t1, step)
        return range_chunked(source, signals[name], t0, t1, step)

    with ThreadPoolExecutor(max_workers=FETCH_WORKERS) as pool:
        futures = [pool.submit(one, job) for job in jobs]
    for (name, k, off), fut in zip(jobs, futures, strict=True):
        try:
            series = fut.result()
        except SourceError as exc:
            if off.seconds == 0:
                frame.failed[name] = str(exc)
                log.warning("signal %s could not be read: %s", name, exc)
            series = []
        arrays: dict[LabelKey, np.ndarray] = {}
        base = (start - timedelta(seconds=off.seconds)).timestamp()
        size = n + (margin if off.seconds else 0)
        for s in series:
            arr = np.full(size, np.nan)
            idx = np.rint((np.asarray(s.timestamps) - base) / step_s).astype(np.int64)
            ok = (idx >= 0) & (idx < size)
            arr[idx[ok]] = np.asarray(s.values)[ok]
            arrays[label_key(s.labels)] = arr
        frame.put(name, k, arrays)
    return frame


def range_chunked(
    source: MetricsSource, query: str, start: datetime, end: datetime, step: timedelta
) -> list[Series]:
    """``source.query_range`` over any length: split into chunks Prometheus accepts, merged."""
    chunk = step * (MAX_POINTS_PER_QUERY - 1)
    merged: dict[LabelKey, tuple[list[float], list[float]]] = {}
    labels: dict[LabelKey, dict[str, str]] = {}
    t = start
    while t <= end:
        t_end = min(end, t + chunk)
        for s in source.query_range(query, t, t_end, step):
            key = label_key(s.labels)
            labels[key] = dict(s.labels)
            ts, vs = merged.setdefault(key, ([], []))
            ts.extend(np.asarray(s.timestamps).tolist())
            vs.extend(np.asarray(s.values).tolist())
        t = t_end + step
    return [
        Series(labels[k], np.asarray(ts, dtype=float), np.asarray(vs, dtype=float))
        for k, (ts, vs) in merged.items()
    ]


@dataclass
class _Cached:
    t0: datetime
    t1: datetime
    step: timedelta
    labels: dict[LabelKey, dict[str, str]]
    points: dict[LabelKey, tuple[np.ndarray, np.ndarray]]  # timestamps, values


def _arrays(s: Series) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(s.timestamps, float), np.asarray(s.values, float)


class RangeCache:
    """Range query answers kept between live cycles, so each minute fetches only what is new.

    A detector reads hours of history every minute (the present window and the same window
    days and weeks ago); all but the newest minute it read a minute before. ``get`` answers
    ``query_range(query, t0, t1, step)`` from what it holds and fetches only from
    ``refresh`` before the end it held (the newest samples may have been incomplete: a late
    scrape, a slow rule) to ``t1``; the rest is kept. A request it cannot extend (another
    step, a range before or far after the held one) is fetched in full. Queries per cycle
    stay the same; the points and bytes per cycle no longer grow with the lookback.
    """

    def __init__(self, refresh: timedelta = timedelta(minutes=5)) -> None:
        self.refresh = refresh
        self._held: dict[tuple[str, float], _Cached] = {}

    def get(
        self,
        source: MetricsSource,
        query: str,
        shift: float,
        t0: datetime,
        t1: datetime,
        step: timedelta,
    ) -> list[Series]:
        key = (query, shift)
        held = self._held.get(key)
        extendable = (
            held is not None
            and held.step == step
            and held.t0 <= t0 <= held.t1
            and t1 >= held.t1
            and (t0 - held.t0) % step == timedelta(0)
        )
        if not extendable:
            fresh = range_chunked(source, query, t0, t1, step)
            self._held[key] = _Cached(
                t0,
                t1,
                step,
                {label_key(s.labels): dict(s.labels) for s in fresh},
                {
                    label_key(s.labels): (
                        np.asarray(s.timestamps, float),
                        np.asarray(s.values, float),
                    )
                    for s in fresh
                },
            )
            return fresh
        assert held is not None
        since = max(t0, held.t1 - self.refresh)
        since = t0 + ((since - t0) // step) * step  # on the grid
        fresh = range_chunked(source, query, since, t1, step)
        lo, cut = t0.timestamp(), since.timestamp()
        points: dict[LabelKey, tuple[np.ndarray, np.ndarray]] = {}
        for k, (ts, vs) in held.points.items():  # what it held, before the re-read part
            keep = (ts >= lo) & (ts < cut)
            if keep.any():
                points[k] = (ts[keep], vs[keep])
        labels = {k: held.labels[k] for k in points}
        for s in fresh:
            k = label_key(s.labels)
            ts, vs = np.asarray(s.timestamps, float), np.asarray(s.values, float)
            old = points.get(k)
            points[k] = (
                (ts, vs)
                if old is None
                else (np.concatenate([old[0], ts]), np.concatenate([old[1], vs]))
            )
            labels[k] = dict(s.labels)
        self._held[key] = _Cached(t0, t1, step, labels, points)
        return [Series(labels[k], ts, vs) for k, (ts, vs) in points.items()]


class DetectorRun:
    """One detector stepping through a frame, with persistence and hysteresis."""

    def __init__(self, cfg: DetectorConfig, module: ModuleType, step: timedelta) -> None:
        self.cfg = cfg
        self.module = module
        self.debouncer = Debouncer(
            for_=cfg.for_, clear_after=cfg.clear_after, max_gap=max(step * 3, cfg.interval * 3)
        )
        self.active: dict[LabelKey, Finding] = {}
        self._tracked: set[LabelKey] = set()
        # A detector may take the keys it has raised (``assess(..., active=...)``), e.g. to
        # let an open finding explain failures that would otherwise page a second slice.
        self._wants_active = "active" in inspect.signature(module.assess).parameters

    def signals(self) -> dict[str, str]:
        return dict(self.module.signals(self.cfg))

    def offsets(self) -> tuple[Offset, ...]:
        return tuple(self.module.offsets(self.cfg))

    def history(self) -> Collection[str] | None:
        fn = getattr(self.module, "history_signals", None)
        return None if fn is None else set(fn(self.cfg))

    def lookback(self) -> timedelta:
        lb: timedelta = self.module.lookback(self.cfg)
        return lb

    def step(self, frame: Frame, i: int) -> list[Event]:
        at = frame.when(i)
        events: list[Event] = []
        if self._wants_active:
            assessments: list[Assessment] = self.module.assess(
                self.cfg, frame, i, active=frozenset(self.active)
            )
        else:
            assessments = self.module.assess(self.cfg, frame, i)
        seen: set[LabelKey] = set()
        for a in assessments:
            if a.key in seen:
                continue
            seen.add(a.key)
            was_active = self.debouncer.active(a.key)
            cond = a.holding if was_active else a.breach
            if cond:
                self._tracked.add(a.key)
            transition = self.debouncer.update(
                a.key, cond, at, since=None if was_active else a.since
            )
            if transition is Transition.RAISED:
                finding = a.finding
                onset_fn: Callable[..., datetime | None] | None = getattr(
                    self.module, "onset", None
                )
                if onset_fn is not None:
                    finding = replace(finding, onset=onset_fn(self.cfg, frame, a, i))
                self.active[a.key] = finding
                events.append(Event("raised", finding, at))
            elif was_active:
                prev = self.active.get(a.key)
                onset = prev.onset if prev else None
                self.active[a.key] = replace(a.finding, onset=onset)
            if transition is Transition.CLEARED:
                events.append(Event("cleared", self.active.pop(a.key, a.finding), at))
        for key in list(self._tracked - seen):
            transition = self.debouncer.update(key, False, at)
            if transition is Transition.CLEARED:
                events.append(Event("cleared", self.active.pop(key), at))
            if not self.debouncer.active(key) and self.debouncer.pending_since(key) is None:
                self._tracked.discard(key)
        return events


def runs_for(
    configs: Iterable[DetectorConfig], step: timedelta
) -> tuple[list[DetectorRun], list[str]]:
    """DetectorRuns for the configured detectors; and the ids not implemented yet."""
    runs, missing = [], []
    for cfg in configs:
        mod = detector_module(cfg.id)
        if mod is None:
            missing.append(cfg.id)
        else:
            runs.append(DetectorRun(cfg, mod, step))
    return runs, missing


@dataclass
class Replay:
    events: list[Event]
    active: list[Finding]
    failed: dict[str, str]
    frames: dict[str, Frame]


def replay(
    source: MetricsSource,
    runs: Sequence[DetectorRun],
    start: datetime,
    end: datetime,
    step: timedelta,
) -> Replay:
    """Step every detector from ``start`` to ``end`` as the live bot would have, no look-ahead.

    Each detector's signals are fetched once for ``[start - lookback, end]``.
    """
    events: list[Event] = []
    failed: dict[str, str] = {}
    frames: dict[str, Frame] = {}

    def fetch(run: DetectorRun) -> Frame:
        return fetch_frame(
            source, run.signals(), run.offsets(), start - run.lookback(), end, step, run.history()
        )

    # Fetch the next detectors' frames while the current one steps through its own.
    with ThreadPoolExecutor(max_workers=2) as pool:
        pending = [pool.submit(fetch, run) for run in runs]
        for run, fut in zip(runs, pending, strict=True):
            frame = fut.result()
            frames[run.cfg.id] = frame
            failed.update({f"{run.cfg.id}.{k}": v for k, v in frame.failed.items()})
            every = max(1, math.ceil(run.cfg.interval / step))
            for i in range(frame.index(start), frame.n, every):
                events.extend(run.step(frame, i))
    events.sort(key=lambda e: e.at)
    active = [f for run in runs for f in run.active.values()]
    return Replay(events, active, failed, frames)


@dataclass
class Step:
    """One evaluation time of a stepped replay: what was raised or cleared, what is active."""

    at: datetime
    events: list[Event]
    active: list[Finding]
    frames: dict[str, Frame]


def fetch_frames(
    source: MetricsSource,
    runs: Sequence[DetectorRun],
    start: datetime,
    end: datetime,
    step: timedelta,
) -> dict[str, Frame]:
    """Each detector's signals for ``[start - lookback, end]``, fetched once."""

    def fetch(run: DetectorRun) -> Frame:
        return fetch_frame(
            source, run.signals(), run.offsets(), start - run.lookback(), end, step, run.history()
        )

    with ThreadPoolExecutor(max_workers=2) as pool:
        frames = list(pool.map(fetch, runs))
    return {run.cfg.id: frame for run, frame in zip(runs, frames, strict=True)}


def replay_steps(
    source: MetricsSource,
    runs: Sequence[DetectorRun],
    start: datetime,
    end: datetime,
    step: timedelta,
) -> Iterator[Step]:
    """Every detector stepped in time order from ``start`` to ``end``, one ``Step`` per time:
    what the incident pipeline would have been handed live at that time (no look-ahead: each
    detector reads its frame up to that time only)."""
    frames = fetch_frames(source, runs, start, end, step)
    t = start
    while t <= end:
        events: list[Event] = []
        for run in runs:
            frame = frames[run.cfg.id]
            i = frame.index(t)
            due = (t - start) % max(run.cfg.interval, step) < step
            if due and 0 <= i < frame.n:
                events.extend(run.step(frame, i))
        active = [f for run in runs for f in run.active.values()]
        yield Step(t, events, active, frames)
        t += step
