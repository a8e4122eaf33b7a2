"""The live cycle: every minute, the detectors that are due read their signals up to now,
and what they raise or clear goes through the incident pipeline.

``build`` assembles the pieces from the settings (sources, store, runbooks, evidence,
routing); ``LiveCycle.run_once`` is one evaluation, which the scheduler in ``paytriage.app.service``
calls and tests call directly with a fixed clock. A detector whose signals cannot be read,
that raises, or whose queries take longer than its ``timeout`` is logged and reported in
``health``; the others carry on.
"""

from __future__ import annotations

import contextvars
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import numpy as np

from paytriage.core.logs import log_context
from paytriage.core.metrics import BotMetrics
from paytriage.core.redact import redact
from paytriage.detection.fetch import RangeCache, fetch_frame
from paytriage.detection.run import DetectorRun, Event, EventKind
from paytriage.detectors.signals import Frame
from paytriage.domain.findings import Finding, Severity
from paytriage.domain.notifications import Change
from paytriage.incidents.pipeline import IncidentPipeline, StepReport
from paytriage.sources.base import MetricsSource, SourceError

log = logging.getLogger(__name__)
STEP = timedelta(minutes=1)


def floor_time(at: datetime, step: timedelta = STEP) -> datetime:
    seconds = int(step.total_seconds())
    ts = int(at.timestamp()) // seconds * seconds
    return datetime.fromtimestamp(ts, UTC)


@dataclass
class DetectorHealth:
    """Per detector: the last run, the last error, and how many runs failed (App Home)."""

    last_run: dict[str, datetime] = field(default_factory=dict)
    last_error: dict[str, str] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    newest_sample: dict[str, datetime | None] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ok(self, detector: str, at: datetime) -> None:
        with self.lock:
            self.last_run[detector] = at
            self.last_error.pop(detector, None)

    def data(self, detector: str, newest: datetime | None) -> None:
        """When the newest sample the detector read was (data freshness)."""
        with self.lock:
            self.newest_sample[detector] = newest

    def failed(self, detector: str, at: datetime, error: str) -> None:
        with self.lock:
            self.last_run[detector] = at
            self.last_error[detector] = error
            self.failures[detector] = self.failures.get(detector, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                d: {
                    "last_run": self.last_run.get(d),
                    "error": self.last_error.get(d),
                    "failures": self.failures.get(d, 0),
                    "newest_sample": self.newest_sample.get(d),
                }
                for d in sorted(self.last_run)
            }


def newest_sample(frame: Frame) -> datetime | None:
    """The latest step at which any present signal of the frame has a value."""
    newest, last = -1, frame.n - 1
    for blocks in frame.data.values():
        for arr in blocks[0].values():
            if len(arr) > last and math.isfinite(arr[last]):
                return frame.when(last)  # nothing is newer than the frame's last step
            ok = np.flatnonzero(np.isfinite(arr[: frame.n]))
            if len(ok):
                newest = max(newest, int(ok[-1]))
    return frame.when(newest) if newest >= 0 else None


class Checkable(Protocol):
    name: str

    def check(self) -> None: ...


def probe(src: Checkable) -> str | None:
    """One probe of a source: None when it answered, else why not. Any exception is the
    source failing (an answer the bot could not read included), never the cycle's end."""
    try:
        src.check()
    except SourceError as exc:
        return str(exc)
    except Exception as exc:
        log.exception("probing %s failed", src.name)
        return f"{type(exc).__name__}: {exc}"
    return None


SOURCE_DOWN = "source_down"  # the bot's own detector id for a source it cannot read


@dataclass
class SourceWatch:
    """Raises a "data source down" finding once a source has failed for ``down_after``
    (detection is blind while it lasts: say so instead of going quiet or paging a traffic
    drop), and clears it when the source answers again."""

    down_after: timedelta
    failing_since: dict[str, datetime] = field(default_factory=dict)
    raised: dict[str, Finding] = field(default_factory=dict)

    def update(self, name: str, error: str | None, at: datetime) -> list[Event]:
        if error is None:
            self.failing_since.pop(name, None)
            gone = self.raised.pop(name, None)
            return [Event(EventKind.CLEARED, gone, at)] if gone is not None else []
        since = self.failing_since.setdefault(name, at)
        finding = Finding(
            detector=SOURCE_DOWN,
            severity=Severity.critical,  # detection is blind: the on-call must know
            dimensions={"source": name},
            title=f"Data source {name} is not answering: detection is blind while it lasts",
            observed=math.nan,
            expected=math.nan,
            band=(math.nan, math.nan),
            onset=since,
            at=at,
            details={"kind": "data_problem", "error": redact(error)[:500], "since": since},
        )
        if name in self.raised:
            self.raised[name] = finding  # the latest error
            return []
        if at - since < self.down_after:
            return []
        self.raised[name] = finding
        return [Event(EventKind.RAISED, finding, at)]


@dataclass
class LiveCycle:
    source: MetricsSource
    runs: Sequence[DetectorRun]
    pipeline: IncidentPipeline
    step: timedelta = STEP
    health: DetectorHealth = field(default_factory=DetectorHealth)
    metrics: BotMetrics | None = None
    checks: Sequence[Checkable] = ()  # sources probed each cycle (a "source down" incident)
    watch: SourceWatch = field(default_factory=lambda: SourceWatch(timedelta(minutes=5)))
    on_check: Callable[[str, str | None], None] | None = None  # each probe's outcome

    def __post_init__(self) -> None:
        self._last: dict[str, datetime] = {}
        self._caches: dict[str, RangeCache] = {}  # per detector: its ranges, minute to minute
        self._lock = threading.Lock()
        self._reading: dict[str, tuple[datetime, Future[Frame]]] = {}  # reads past their time
        self._pool: ThreadPoolExecutor | None = None

    def _fetch(self, run: DetectorRun, at: datetime) -> Frame | None:
        """The detector's frame at ``at``, read in a worker thread and waited for at most its
        ``timeout`` (and never longer than its interval). A read that takes longer is cut
        off: the detector skips this run, which is reported in ``health`` and the metrics,
        and the cycle goes on with the others. The read itself finishes in the background and
        fills the detector's range cache, so its next run reads only what is new; until it
        has finished the detector starts no second read beside it. None when cut off.
        """
        rid = run.cfg.id
        budget = min(run.cfg.timeout, run.cfg.interval).total_seconds()
        late = self._reading.get(rid)
        if late is not None:
            if not late[1].done():
                self._cut_off(rid, at, f"its read from {late[0]:%H:%M} UTC is still running")
                return None
            del self._reading[rid]  # finished since: its frame is stale, read afresh
            if late[1].exception() is not None:
                log.warning("detector %s: its late read failed: %s", rid, late[1].exception())
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=max(1, len(self.runs)), thread_name_prefix="detector-read"
            )
        future = self._pool.submit(
            contextvars.copy_context().run,  # the worker logs with this cycle's correlation id
            fetch_frame,
            self.source,
            run.signals(),
            run.offsets(),
            at - run.lookback(),
            at,
            self.step,
            run.history(),
            cache=self._caches.setdefault(rid, RangeCache()),
        )
        try:
            return future.result(timeout=budget)
        except FutureTimeout:
            self._reading[rid] = (at, future)
            self._cut_off(rid, at, f"its queries took longer than {budget:g} s")
            return None

    def _cut_off(self, rid: str, at: datetime, why: str) -> None:
        log.warning("detector %s cut off at %s: %s", rid, f"{at:%H:%M}", why)
        self._failed(rid, at, f"cut off: {why}")
        if self.metrics is not None:
            self.metrics.detector_cutoffs.labels(rid).inc()

    def _failed(self, rid: str, at: datetime, error: str) -> None:
        self.health.failed(rid, at, error)
        if self.metrics is not None:
            self.metrics.detector_failures.labels(rid).inc()

    def close(self) -> None:
        """Stop the read workers (a read still running is left to finish on its own)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def run_once(self, now: datetime | None = None) -> StepReport:
        """One evaluation at ``now`` (default: the clock), floored to the step."""
        at = floor_time(now or datetime.now(UTC), self.step)
        with self._lock, log_context(correlation_id=f"cycle-{at:%Y%m%dT%H%M}"):
            events: list[Event] = []
            frames: dict[str, Frame] = {}
            for run in self.runs:
                rid = run.cfg.id
                last = self._last.get(rid)
                if last is not None and at - last < run.cfg.interval:
                    continue
                self._last[rid] = at
                began = time.perf_counter()
                try:
                    frame = self._fetch(run, at)
                    if frame is None:
                        continue  # cut off: reported by _fetch
                    events.extend(run.step(frame, frame.n - 1))
                    frames[rid] = frame
                except Exception as exc:  # one detector's failure never stops the others
                    log.exception("detector %s failed", rid)
                    self._failed(rid, at, f"{type(exc).__name__}: {exc}")
                    continue
                newest = newest_sample(frame)
                self.health.data(rid, newest)
                if self.metrics is not None:
                    self.metrics.cycle_seconds.labels(rid).observe(time.perf_counter() - began)
                    self.metrics.observe_age(rid, newest, at)
                    if frame.failed:
                        self.metrics.detector_failures.labels(rid).inc()
                if frame.failed:
                    self.health.failed(rid, at, "; ".join(sorted(frame.failed.values())))
                else:
                    self.health.ok(rid, at)
            for src in self.checks:
                error = probe(src)
                events.extend(self.watch.update(src.name, error, at))
                if self.on_check is not None:
                    self.on_check(src.name, error)
            active: list[Finding] = [f for run in self.runs for f in run.active.values()]
            active.extend(self.watch.raised.values())
            report = self.pipeline.step(events, active, at, frames)
            if self.metrics is not None:
                for changes in report.changes.values():
                    for change in changes:
                        if change in (Change.OPENED, Change.REOPENED, Change.RESOLVED):
                            self.metrics.incidents.labels(change).inc()
            for inc_id, changes in report.changes.items():
                with log_context(incident_id=inc_id):
                    log.info("incident %s: %s", inc_id, ", ".join(changes))
            return report


__all__ = [
    "STEP",
    "DetectorHealth",
    "LiveCycle",
    "SourceWatch",
    "floor_time",
    "probe",
]
