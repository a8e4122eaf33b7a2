"""An in-memory LogSource for evidence tests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from paytriage.sources.base import Bucket, Filters, SearchResult, SourceError


class FakeLogs:
    """An in-memory LogSource with OpenSearch's semantics: [start, end), exact filters."""

    name = "opensearch"

    def __init__(self, docs: Sequence[dict[str, Any]], fail: SourceError | None = None) -> None:
        self.docs = sorted(docs, key=lambda d: d["@timestamp"], reverse=True)
        self.fail = fail
        self.calls: list[tuple[str, datetime, datetime, dict[str, Any]]] = []

    def _match(
        self, start: datetime, end: datetime, filters: Filters | None
    ) -> list[dict[str, Any]]:
        out = []
        for d in self.docs:
            if not start <= d["@timestamp"] < end:
                continue
            ok = True
            for k, v in (filters or {}).items():
                allowed = {v} if isinstance(v, str) else set(v)
                ok = ok and d.get(k) in allowed
            if ok:
                out.append(d)
        return out

    def search(
        self,
        index: str,
        start: datetime,
        end: datetime,
        filters: Filters | None = None,
        size: int = 100,
        newest_first: bool = True,
    ) -> SearchResult:
        self.calls.append(("search", start, end, dict(filters or {})))
        if self.fail:
            raise self.fail
        hits = self._match(start, end, filters)
        return SearchResult(len(hits), [dict(h) for h in hits[:size]])

    def terms(
        self,
        index: str,
        field: str,
        start: datetime,
        end: datetime,
        filters: Filters | None = None,
        size: int = 10,
    ) -> list[Bucket]:
        self.calls.append(("terms", start, end, dict(filters or {})))
        if self.fail:
            raise self.fail
        counts: dict[str, int] = {}
        for d in self._match(start, end, filters):
            if d.get(field) is not None:
                counts[d[field]] = counts.get(d[field], 0) + 1
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:size]
        return [Bucket(k, n) for k, n in ranked]

    def date_histogram(self, *args: Any, **kwargs: Any) -> list[Bucket]:
        raise NotImplementedError
