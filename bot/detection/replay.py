"""Replays: every detector stepped through a past range as the live bot would have seen it,
with no look-ahead."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from paytriage.detection.fetch import RangeCache, fetch_frame
from paytriage.detection.run import DetectorRun, Event
from paytriage.detectors.signals import Frame
from paytriage.domain.findings import Finding
from paytriage.sources.base import MetricsSource

# A replay steps each detector through segments of this much time (or twice its lookback),
# each in a frame of its own, so a backtest's memory does not grow with its length.
REPLAY_SEGMENT = timedelta(hours=6)


@dataclass
class Replay:
    events: list[Event]
    active: list[Finding]
    failed: dict[str, str]  # "detector.signal": why it could not be read
    tried: int = 0  # how many detector signals were asked for

    @property
    def nothing_read(self) -> bool:
        """Every signal failed: the source is down or answers only errors, and "no
        findings" would be a lie."""
        return self.tried > 0 and len(self.failed) >= self.tried


def replay(
    source: MetricsSource,
    runs: Sequence[DetectorRun],
    start: datetime,
    end: datetime,
    step: timedelta,
    segment: timedelta | None = None,
) -> Replay:
    """Step every detector from ``start`` to ``end`` as the live bot would have, no look-ahead.

    Each detector steps through ``[start, end]`` in segments of ``segment`` (default:
    ``REPLAY_SEGMENT``, or twice its lookback if longer), each in a frame of its own that
    begins a lookback before it: a frame of two days over a wide platform is hundreds of
    megabytes, a segment's a fifth of that. A range cache per detector carries what one
    segment read into the next, so each minute is fetched once, as live; the detector's
    state (persistence, hysteresis, what it has raised) runs on across segments as it does
    from minute to minute. The next segment is fetched while one is stepped, and a frame is
    let go once stepped.
    """
    events: list[Event] = []
    failed: dict[str, str] = {}
    jobs: list[tuple[DetectorRun, datetime, datetime, int]] = []
    for run in runs:
        # Evaluation times are start + k * every steps; each segment begins on one of them.
        every = max(1, math.ceil(run.cfg.interval / step))
        seg = max(REPLAY_SEGMENT, 2 * run.lookback()) if segment is None else segment
        length = max(seg, step * every) // (step * every) * every
        t = start
        while t <= end:
            jobs.append((run, t, min(end, t + step * (length - 1)), every))
            t += step * length

    # A segment's lookback is the end of the one before: the detector's range cache reads
    # only what is new (history is complete: nothing to re-read, nothing to read ahead), and
    # is let go after its last segment.
    caches: dict[int, RangeCache] = {}

    def fetch(job: tuple[DetectorRun, datetime, datetime, int]) -> Frame:
        run, t0, t1, _ = job
        cache = caches.setdefault(id(run), RangeCache(refresh=timedelta(0), ahead=timedelta(0)))
        return fetch_frame(
            source,
            run.signals(),
            run.offsets(),
            t0 - run.lookback(),
            t1,
            step,
            run.history(),
            cache=cache,
        )

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(fetch, jobs[0]) if jobs else None
        for k, (run, t0, _, every) in enumerate(jobs):
            assert pending is not None
            frame = pending.result()
            pending = pool.submit(fetch, jobs[k + 1]) if k + 1 < len(jobs) else None
            if pending is not None and jobs[k + 1][0] is not run:
                caches.pop(id(run), None)  # its last segment: the frame holds what it needs
            failed.update({f"{run.cfg.id}.{n}": v for n, v in frame.failed.items()})
            for i in range(frame.index(t0), frame.n, every):
                events.extend(run.step(frame, i))
            del frame
    events.sort(key=lambda e: e.at)
    active = [f for run in runs for f in run.active.values()]
    return Replay(events, active, failed, tried=sum(len(run.signals()) for run in runs))


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
