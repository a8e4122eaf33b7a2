"""Data sources behind small interfaces; every failure is a :class:`SourceError`."""

from paytriage.sources.base import (
    Bucket,
    ErrorKind,
    Filters,
    LogSource,
    MetricsSource,
    SearchResult,
    Series,
    SourceError,
)
from paytriage.sources.opensearch import OpenSearchSource
from paytriage.sources.prometheus import PrometheusSource

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
