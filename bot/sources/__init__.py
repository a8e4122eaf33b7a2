"""Data sources behind small interfaces; every failure is a :class:`SourceError`."""

from bot.sources.base import (
    Bucket,
    ErrorKind,
    Filters,
    LogSource,
    MetricsSource,
    SearchResult,
    Series,
    SourceError,
)
from bot.sources.opensearch import OpenSearchSource
from bot.sources.prometheus import PrometheusSource

__all__ = [
    "Bucket",
    "ErrorKind",
    "Filters",
    "LogSource",
    "MetricsSource",
    "OpenSearchSource",
    "PrometheusSource",
    "SearchResult",
    "Series",
    "SourceError",
]
