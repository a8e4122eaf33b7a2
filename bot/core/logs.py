"""The bot's own logs: one JSON object per line, redacted, with the incident and the
correlation id of the work that wrote it.

``log_context(incident_id=..., correlation_id=...)`` sets them for everything logged inside
(context variables, so threads and the scheduler's jobs each keep their own); the live cycle
sets a correlation id per cycle, the pipeline and the senders the incident id. Every message
and every exception text passes ``paytriage.core.redact.redact``: a card number or token in an error
from a source never reaches the log.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from paytriage.core.redact import redact

_CONTEXT: ContextVar[dict[str, str]] = ContextVar("paytriage_log_context", default={})  # noqa: B039 - never mutated


@contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Add ``fields`` (e.g. ``incident_id``, ``correlation_id``) to every line logged inside."""
    merged = {**_CONTEXT.get(), **{k: v for k, v in fields.items() if v}}
    token = _CONTEXT.set(merged)
    try:
        yield
    finally:
        _CONTEXT.reset(token)


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", ...context, "error"}``, everything redacted."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
            **_CONTEXT.get(),
        }
        if record.exc_info:
            doc["error"] = redact(self.formatException(record.exc_info))
        return json.dumps(doc, ensure_ascii=False)


def setup_logging(level: int = logging.INFO) -> None:
    """JSON lines on standard error for the whole process (``paytriage run``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


__all__ = ["JsonFormatter", "log_context", "setup_logging"]
