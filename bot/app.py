"""``paytriage run``: the long-running process.

So far it serves /healthz and /readyz and checks the data sources on a schedule; the
detectors, incidents and Slack app are wired in by the issues that build them.
"""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from apscheduler.schedulers.background import BackgroundScheduler

from bot.config import Settings
from bot.sources import OpenSearchSource, PrometheusSource, SourceError

log = logging.getLogger("paytriage")


class Checkable(Protocol):
    name: str

    def check(self) -> None: ...


@dataclass
class SourceHealth:
    """The last probe of each source: what the health endpoints and later App Home show."""

    last_ok: dict[str, datetime] = field(default_factory=dict)
    last_error: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def probe(self, sources: list[Checkable]) -> None:
        for src in sources:
            try:
                src.check()
            except SourceError as exc:
                with self.lock:
                    self.last_error[src.name] = str(exc)
                log.warning("data source %s is failing: %s", src.name, exc)
            else:
                with self.lock:
                    self.last_ok[src.name] = datetime.now(UTC)
                    self.last_error.pop(src.name, None)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "sources": {
                    name: {"last_ok": self.last_ok.get(name), "error": self.last_error.get(name)}
                    for name in sorted(set(self.last_ok) | set(self.last_error))
                }
            }

    def all_ok(self) -> bool:
        with self.lock:
            return bool(self.last_ok) and not self.last_error


def run_forever(settings: Settings) -> int:
    from bot.server import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    sources: list[Checkable] = [PrometheusSource(settings.sources.prometheus)]
    if settings.sources.opensearch.enabled:
        sources.append(OpenSearchSource(settings.sources.opensearch))
    health = SourceHealth()
    scheduler = BackgroundScheduler(
        timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1}
    )
    scheduler.add_job(
        health.probe,
        "interval",
        args=[sources],
        minutes=1,
        id="probe-sources",
        next_run_time=datetime.now(UTC),
    )
    scheduler.start()
    server = serve(
        settings.server.host,
        settings.server.port,
        healthy=lambda: (scheduler.running, {}),
        ready=lambda: (health.all_ok(), health.snapshot()),
    )
    log.warning(
        "paytriage %s: detection, incidents and Slack are not implemented yet; this process "
        "only checks the data sources and serves /healthz and /readyz on %s:%d",
        "run",
        settings.server.host,
        settings.server.port,
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    log.info("shutting down")
    scheduler.shutdown(wait=False)
    server.shutdown()
    return 0
