"""Sources whose calls are timed and whose errors are counted in the bot's own metrics."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from paytriage.core.metrics import BotMetrics
from paytriage.sources.base import (
    Bucket,
    Filters,
    LogSource,
    MetricsSource,
    SearchResult,
    Series,
    SourceError,
)


@contextmanager
def timed_query(metrics: BotMetrics, source: str, op: str) -> Iterator[None]:
    """Times the call and counts a ``SourceError`` by kind before it propagates unchanged."""
    start = time.perf_counter()
    try:
        yield
    except SourceError as exc:
        metrics.query_errors.labels(source, exc.kind.value).inc()
        raise
    finally:
        metrics.query_seconds.labels(source, op).observe(time.perf_counter() - start)


class MeteredMetrics:
    """A MetricsSource whose calls are timed and whose errors are counted."""

    def __init__(self, inner: MetricsSource, metrics: BotMetrics) -> None:
        self.inner, self.metrics, self.name = inner, metrics, inner.name

    def query(self, promql: str, at: datetime | None = None) -> list[Series]:
        with timed_query(self.metrics, self.name, "query"):
            return self.inner.query(promql, at)

    def query_range(
        self, promql: str, start: datetime, end: datetime, step: timedelta
    ) -> list[Series]:
        with timed_query(self.metrics, self.name, "query_range"):
            return self.inner.query_range(promql, start, end, step)


class MeteredLogs:
    """A LogSource whose calls are timed and whose errors are counted."""

    def __init__(self, inner: LogSource, metrics: BotMetrics) -> None:
        self.inner, self.metrics, self.name = inner, metrics, inner.name

    def _call(self, op: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        with timed_query(self.metrics, self.name, op):
            return fn(*args, **kwargs)

    def search(
        self,
        index: str,
        start: datetime,
        end: datetime,
        filters: Filters | None = None,
        size: int = 100,
        newest_first: bool = True,
    ) -> SearchResult:
        result: SearchResult = self._call(
            "search", self.inner.search, index, start, end, filters, size, newest_first
        )
        return result

    def terms(
        self,
        index: str,
        field: str,
        start: datetime,
        end: datetime,
        filters: Filters | None = None,
        size: int = 10,
    ) -> list[Bucket]:
        out: list[Bucket] = self._call(
            "terms", self.inner.terms, index, field, start, end, filters, size
        )
        return out

    def date_histogram(
        self,
        index: str,
        start: datetime,
        end: datetime,
        interval: timedelta,
        filters: Filters | None = None,
        split_by: str | None = None,
    ) -> list[Bucket]:
        out: list[Bucket] = self._call(
            "date_histogram",
            self.inner.date_histogram,
            index,
            start,
            end,
            interval,
            filters,
            split_by,
        )
        return out


__all__ = ["MeteredLogs", "MeteredMetrics", "timed_query"]
