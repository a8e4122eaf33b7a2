"""The interactive Slack app, connected in the background.

Slack unreachable or the bot's token revoked at start-up must not stop ``paytriage run``:
detection, the store and PagerDuty do not need Slack, and the outbox holds Slack's messages
until it answers. ``SlackLink`` tries to start the app at once and, while that fails, again
in a background thread with exponential backoff (tenacity) up to ``max_wait``; ``status``
says why Slack is not connected, for the health endpoint.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential

from paytriage.core.redact import redact

log = logging.getLogger(__name__)


class Closable(Protocol):
    def close(self) -> None: ...


class SlackLink:
    """Starts ``connect`` (which returns the running app, or None when Slack is disabled),
    retrying until it succeeds or ``close`` is called."""

    def __init__(
        self,
        connect: Callable[[], Closable | None],
        *,
        first_wait: timedelta = timedelta(seconds=5),
        max_wait: timedelta = timedelta(minutes=5),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._connect = connect
        self._first_wait = first_wait.total_seconds()
        self._max_wait = max_wait.total_seconds()
        self._clock = clock
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.app: Closable | None = None
        self.connected = False
        self.error: str | None = None
        self.since: datetime | None = None
        self.attempts = 0

    def start(self) -> SlackLink:
        """Try once now; on failure keep trying in the background."""
        if not self._try():
            self._thread = threading.Thread(target=self._retry, name="slack-link", daemon=True)
            self._thread.start()
        return self

    def _try(self) -> bool:
        try:
            self._attempt()
        except Exception:  # reported in status; retried
            return False
        return True

    def _attempt(self) -> None:
        self.attempts += 1
        try:
            app = self._connect()
        except Exception as exc:
            with self._lock:
                first = self.error is None
                self.error = redact(f"{type(exc).__name__}: {exc}")[:300]
                self.since = self.since or self._clock()
            if first:
                log.error(
                    "Slack is not reachable (%s): detecting and paging go on, Slack's messages "
                    "wait in the outbox; retrying",
                    self.error,
                )
            raise
        with self._lock:
            if self._stop.is_set():  # closed while connecting
                if app is not None:
                    app.close()
                return
            self.app, self.connected, self.error, self.since = app, True, None, None
        if self.attempts > 1:
            log.info("Slack connected after %d attempts", self.attempts)

    def _retry(self) -> None:
        def log_wait(state: RetryCallState) -> None:
            wait = state.next_action.sleep if state.next_action else 0
            log.info("next attempt to connect to Slack in %.0f s", wait)

        def sleep(seconds: float) -> None:
            self._stop.wait(seconds)  # close() cuts the wait short

        retrying = Retrying(
            wait=wait_exponential(multiplier=self._first_wait, max=self._max_wait),
            retry=retry_if_exception_type(Exception),
            stop=lambda _: self._stop.is_set(),
            sleep=sleep,
            before_sleep=log_wait,
            reraise=False,
        )
        try:
            retrying(self._attempt)
        except Exception:  # tenacity gives up only when closed
            return

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {"connected": self.connected, "error": self.error, "since": self.since}

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            app, self.app = self.app, None
        if app is not None:
            app.close()
        if self._thread is not None:
            self._thread.join(5)


__all__ = ["SlackLink"]
