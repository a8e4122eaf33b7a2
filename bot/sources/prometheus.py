"""PrometheusSource: instant and range PromQL queries through prometheus-api-client.

Only the two standard endpoints (/api/v1/query, /api/v1/query_range) are used, so the same
code works against Prometheus, Thanos Query, Mimir and VictoriaMetrics.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import requests
import urllib3
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from urllib3.util.retry import Retry

from paytriage.config.models import PrometheusConfig
from paytriage.sources.base import ErrorKind, Series, SourceError


def _retry(total: int) -> Retry:
    # Connection failures and gateway errors are retried with backoff; a read timeout is
    # not (a slow query would only get slower), and neither is a 4xx (the query is wrong).
    return Retry(
        total=total,
        connect=total,
        read=0,
        status=total,
        backoff_factor=0.3,
        status_forcelist=(502, 503, 504),
        allowed_methods=frozenset({"GET", "POST"}),
        raise_on_status=False,
    )


class PrometheusSource:
    """A :class:`paytriage.sources.base.MetricsSource` over any PromQL HTTP API."""

    name = "prometheus"

    def __init__(self, cfg: PrometheusConfig) -> None:
        headers = dict(cfg.headers)
        if cfg.bearer_token is not None and cfg.bearer_token.is_set:
            headers["Authorization"] = f"Bearer {cfg.bearer_token.reveal()}"
        auth = None
        if cfg.username and cfg.password is not None and cfg.password.is_set:
            auth = (cfg.username, cfg.password.reveal())
        self.url = cfg.url
        self._timeout = cfg.timeout.total_seconds()
        self._client = PrometheusConnect(
            url=cfg.url,
            headers=headers or None,
            disable_ssl=not cfg.verify_tls,
            retry=_retry(cfg.retries),
            auth=auth,
            timeout=self._timeout,
            method=cfg.method,
        )

    def close(self) -> None:
        self._client.close()

    def check(self) -> None:
        """Raise SourceError unless the PromQL API answers a trivial query."""
        self.query("vector(1)")

    def query(self, promql: str, at: datetime | None = None) -> list[Series]:
        params: dict[str, Any] = {"timeout": f"{self._timeout:g}s"}
        if at is not None:
            params["time"] = _ts(at)
        result = self._call(promql, lambda: self._client.custom_query(promql, params=params))
        return _parse_result(result, promql)

    def query_range(
        self, promql: str, start: datetime, end: datetime, step: timedelta
    ) -> list[Series]:
        if end < start:
            raise ValueError("end must not be before start")
        step_s = step.total_seconds()
        if step_s <= 0:
            raise ValueError("step must be positive")
        result = self._call(
            promql,
            lambda: self._client.custom_query_range(
                promql,
                start_time=start,
                end_time=end,
                step=f"{step_s:g}s",
                params={"timeout": f"{self._timeout:g}s"},
            ),
        )
        return _parse_result(result, promql)

    def _call(self, promql: str, fn: Any) -> Any:
        try:
            return fn()
        except requests.exceptions.JSONDecodeError as exc:
            raise SourceError(
                self.name, ErrorKind.response, promql, f"reply is not JSON: {exc}"
            ) from exc
        except requests.Timeout as exc:
            raise SourceError(
                self.name, ErrorKind.timeout, promql, f"no answer within {self._timeout:g}s"
            ) from exc
        except (requests.ConnectionError, requests.exceptions.RetryError) as exc:
            if _timed_out(exc):
                raise SourceError(
                    self.name, ErrorKind.timeout, promql, f"no answer within {self._timeout:g}s"
                ) from exc
            raise SourceError(
                self.name, ErrorKind.connection, promql, f"cannot reach {self.url}: {_root(exc)}"
            ) from exc
        except requests.RequestException as exc:
            raise SourceError(self.name, ErrorKind.http, promql, _root(exc)) from exc
        except PrometheusApiClientException as exc:
            raise _api_error(self.name, promql, str(exc)) from exc
        except (ValueError, KeyError, TypeError) as exc:  # JSON that is not a PromQL API reply
            raise SourceError(
                self.name, ErrorKind.response, promql, f"unexpected reply: {exc}"
            ) from exc


def _ts(at: datetime) -> float:
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.timestamp()


def _timed_out(exc: BaseException) -> bool:
    """True if a requests error wraps a read timeout (a retried one arrives as ConnectionError).

    Connect failures are not timeouts here: urllib3's NewConnectionError subclasses its
    ConnectTimeoutError, and an unreachable host is a connection problem.
    """
    seen: set[int] = set()
    stack: list[object] = [exc]
    while stack:
        e = stack.pop()
        if id(e) in seen or not isinstance(e, BaseException):
            continue
        seen.add(id(e))
        if isinstance(e, urllib3.exceptions.ReadTimeoutError):
            return True
        stack.extend([*e.args, getattr(e, "reason", None), e.__context__, e.__cause__])
    return False


def _root(exc: BaseException) -> str:
    while exc.__context__ is not None and exc.__context__ is not exc:
        exc = exc.__context__
    text = str(exc) or type(exc).__name__
    return text if len(text) < 300 else text[:297] + "..."


def _api_error(source: str, promql: str, text: str) -> SourceError:
    # prometheus-api-client reports "HTTP Status Code 400 (b'{...}')".
    status = None
    detail = text
    try:
        status = int(text.split("HTTP Status Code ", 1)[1].split(" ", 1)[0])
        body = text.split("(", 1)[1].rsplit(")", 1)[0]
        raw = body[2:-1] if body[:2] in ("b'", 'b"') else body
        payload = json.loads(raw.encode().decode("unicode_escape"))
        detail = f"{payload.get('errorType', 'error')}: {payload.get('error', '')}"
    except (IndexError, ValueError, AttributeError):
        pass
    if status in (400, 422):
        kind = ErrorKind.query
    else:
        kind = ErrorKind.http
    return SourceError(source, kind, promql, detail, status)


class _Malformed(ValueError):
    """An answer that is JSON but not of the PromQL API's shape (said where it is wrong)."""


def _sample(v: Any) -> float:
    """A sample value: Prometheus writes it as a string (``"1.5"``, ``"NaN"``, ``"+Inf"``).
    One that does not read as a number is a missing point (NaN), not a failed answer."""
    if isinstance(v, bool) or not isinstance(v, str | int | float):
        return math.nan
    try:
        return float(v)
    except ValueError:
        return math.nan


def _time(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float | str):
        raise _Malformed(f"timestamp {v!r:.40} is not a number")
    try:
        ts = float(v)
    except ValueError:
        raise _Malformed(f"timestamp {v!r:.40} is not a number") from None
    if not math.isfinite(ts):
        raise _Malformed(f"timestamp {v!r:.40} is not finite")
    return ts


def _pair(p: Any) -> tuple[float, float]:
    if not isinstance(p, list | tuple) or len(p) != 2:
        raise _Malformed(f"sample {p!r:.40} is not a [timestamp, value] pair")
    return _time(p[0]), _sample(p[1])


def _labels(metric: Any) -> dict[str, str]:
    if metric is None:
        return {}
    if not isinstance(metric, dict):
        raise _Malformed(f"metric {metric!r:.40} is not an object")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in metric.items()):
        raise _Malformed("metric labels are not strings")
    return dict(metric)


def _parse_result(result: Any, promql: str) -> list[Series]:
    """Turn a vector, matrix or scalar ``data.result`` into Series. Anything else, or any
    part of it of the wrong shape, is a ``SourceError`` of kind ``response``: an answer the
    bot cannot read is the source failing, never a crash of the cycle that asked."""
    try:
        return _parse(result)
    except _Malformed as exc:
        raise SourceError(
            "prometheus", ErrorKind.response, promql, f"malformed answer: {exc}"
        ) from exc


def _parse(result: Any) -> list[Series]:
    if result is None:
        return []
    # A scalar or string result is [ts, "value"].
    if isinstance(result, list) and len(result) == 2 and not isinstance(result[0], dict):
        ts, val = _pair(result)
        return [Series({}, np.array([ts]), np.array([val]))]
    if not isinstance(result, list):
        raise _Malformed("result is not a list")
    out = []
    for item in result:
        if not isinstance(item, dict):
            raise _Malformed("result item is not an object")
        labels = _labels(item.get("metric"))
        if "values" in item:
            pts = item["values"] or []
        elif "value" in item:
            pts = [item["value"]]
        else:
            pts = []
        if not isinstance(pts, list):
            raise _Malformed("values is not a list")
        out.append(Series(labels, *_points(pts)))
    return out


def _points(pts: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """``[[ts, "value"], ...]`` as two float arrays, parsed by numpy in one call (a wide
    answer holds tens of thousands of pairs); pair by pair, checking each, when numpy
    refuses it or reads something that is not a list of pairs."""
    try:
        arr = np.asarray(pts, dtype=float)
        if arr.ndim == 2 and arr.shape[1] == 2 and np.isfinite(arr[:, 0]).all():
            return arr[:, 0].copy(), arr[:, 1].copy()
        if arr.size == 0:
            return np.empty(0), np.empty(0)
    except (TypeError, ValueError):
        pass
    pairs = [_pair(p) for p in pts]
    return (
        np.array([ts for ts, _ in pairs], dtype=float),
        np.array([v for _, v in pairs], dtype=float),
    )
