"""OpenSearchSource: time-bounded searches and aggregations through opensearch-py.

Queries are built only from structured arguments (field names from configuration, exact
values, time bounds): never from free text, so a Slack user cannot inject query syntax.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from opensearchpy import OpenSearch
from opensearchpy import exceptions as oe

from paytriage.config.models import OpenSearchConfig
from paytriage.core.types import format_duration
from paytriage.sources.base import Bucket, ErrorKind, Filters, SearchResult, SourceError

MAX_SIZE = 10_000  # OpenSearch's default index.max_result_window


def _iso(at: datetime) -> str:
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


class OpenSearchSource:
    """A :class:`paytriage.sources.base.LogSource` over an OpenSearch cluster."""

    name = "opensearch"

    def __init__(self, cfg: OpenSearchConfig, client: OpenSearch | None = None) -> None:
        self.timestamp_field = cfg.fields.timestamp
        self._timeout = cfg.timeout.total_seconds()
        auth = None
        if cfg.username and cfg.password is not None and cfg.password.is_set:
            auth = (cfg.username, cfg.password.reveal())
        self._client = client or OpenSearch(
            hosts=list(cfg.hosts),
            http_auth=auth,
            verify_certs=cfg.verify_tls,
            ssl_show_warn=cfg.verify_tls,
            timeout=self._timeout,
            max_retries=cfg.retries,
            retry_on_timeout=False,
            retry_on_status=(502, 503, 504),
        )

    def close(self) -> None:
        self._client.close()

    def check(self) -> None:
        """Raise SourceError unless the cluster answers."""
        self._call("GET /", lambda: self._client.info())

    # -- query building (pure) ------------------------------------------------------------
    def build_query(
        self, start: datetime, end: datetime, filters: Filters | None
    ) -> dict[str, Any]:
        if end < start:
            raise ValueError("end must not be before start")
        must: list[dict[str, Any]] = [
            {"range": {self.timestamp_field: {"gte": _iso(start), "lt": _iso(end)}}}
        ]
        for fld, value in (filters or {}).items():
            if not isinstance(fld, str) or not fld:
                raise ValueError(f"bad filter field {fld!r}")
            if isinstance(value, str):
                must.append({"term": {fld: value}})
            elif isinstance(value, Sequence):
                must.append({"terms": {fld: [str(v) for v in value]}})
            else:
                raise ValueError(f"filter {fld!r}: value must be a string or a list of strings")
        return {"bool": {"filter": must}}

    # -- LogSource ----------------------------------------------------------------------
    def search(
        self,
        index: str,
        start: datetime,
        end: datetime,
        filters: Filters | None = None,
        size: int = 100,
        newest_first: bool = True,
    ) -> SearchResult:
        body = {
            "query": self.build_query(start, end, filters),
            "size": max(0, min(size, MAX_SIZE)),
            "sort": [{self.timestamp_field: {"order": "desc" if newest_first else "asc"}}],
            "track_total_hits": True,
        }
        res = self._search(index, body)
        hits = res.get("hits", {})
        total = hits.get("total", 0)
        total_n = total.get("value", 0) if isinstance(total, dict) else int(total or 0)
        return SearchResult(total_n, [h.get("_source", {}) for h in hits.get("hits", [])])

    def terms(
        self,
        index: str,
        field: str,
        start: datetime,
        end: datetime,
        filters: Filters | None = None,
        size: int = 10,
    ) -> list[Bucket]:
        body = {
            "query": self.build_query(start, end, filters),
            "size": 0,
            "aggs": {"t": {"terms": {"field": field, "size": max(1, min(size, 1000))}}},
        }
        res = self._search(index, body)
        return [
            Bucket(str(b["key"]), int(b["doc_count"]))
            for b in res.get("aggregations", {}).get("t", {}).get("buckets", [])
        ]

    def date_histogram(
        self,
        index: str,
        start: datetime,
        end: datetime,
        interval: timedelta,
        filters: Filters | None = None,
        split_by: str | None = None,
    ) -> list[Bucket]:
        if interval.total_seconds() < 1:
            raise ValueError("interval must be at least 1s")
        hist: dict[str, Any] = {
            "date_histogram": {
                "field": self.timestamp_field,
                "fixed_interval": format_duration(interval),
                "min_doc_count": 0,
                "extended_bounds": {"min": _iso(start), "max": _iso(end - timedelta(seconds=1))},
            }
        }
        if split_by:
            hist["aggs"] = {"s": {"terms": {"field": split_by, "size": 20}}}
        body = {"query": self.build_query(start, end, filters), "size": 0, "aggs": {"h": hist}}
        res = self._search(index, body)
        out = []
        for b in res.get("aggregations", {}).get("h", {}).get("buckets", []):
            sub = tuple(
                Bucket(str(s["key"]), int(s["doc_count"]))
                for s in b.get("s", {}).get("buckets", [])
            )
            out.append(Bucket(float(b["key"]) / 1000.0, int(b["doc_count"]), sub))
        return out

    def _search(self, index: str, body: dict[str, Any]) -> dict[str, Any]:
        desc = f"{index} {json.dumps(body, separators=(',', ':'), sort_keys=True)}"
        res: dict[str, Any] = self._call(
            desc,
            lambda: self._client.search(
                index=index,
                body=body,
                params={
                    "ignore_unavailable": "true",
                    "allow_no_indices": "true",
                    "request_timeout": self._timeout,
                },
            ),
        )
        if res.get("timed_out"):
            raise SourceError(
                self.name, ErrorKind.timeout, desc, "the search timed out on the server"
            )
        return res

    def _call(self, desc: str, fn: Any) -> Any:
        try:
            return fn()
        except oe.ConnectionTimeout as exc:
            raise SourceError(
                self.name, ErrorKind.timeout, desc, f"no answer within {self._timeout:g}s"
            ) from exc
        except oe.ConnectionError as exc:
            raise SourceError(self.name, ErrorKind.connection, desc, _detail(exc)) from exc
        except oe.TransportError as exc:
            status = exc.status_code if isinstance(exc.status_code, int) else None
            kind = ErrorKind.query if status == 400 else ErrorKind.http
            raise SourceError(self.name, kind, desc, _detail(exc), status) from exc
        except (oe.SerializationError, ValueError) as exc:
            raise SourceError(self.name, ErrorKind.response, desc, str(exc)) from exc


def _detail(exc: oe.TransportError) -> str:
    info = exc.info
    if isinstance(info, dict):
        err = info.get("error")
        if isinstance(err, dict):
            root = (err.get("root_cause") or [err])[0]
            return f"{root.get('type', 'error')}: {root.get('reason', '')}"
        if err:
            return str(err)
    if isinstance(info, Exception):
        return str(info) or type(info).__name__
    return str(exc.error)
