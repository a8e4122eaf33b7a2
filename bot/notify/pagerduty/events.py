"""PagerDuty Events API v2: the event bodies the bot sends, and a sender that tries once.

:func:`build_event` is pure: it makes a body that PagerDuty's published spec accepts
(``/work/shared/specs/pagerduty-events-v2.openapi.json``), with the summary, source,
component, group, class, links and custom details redacted
(:mod:`paytriage.core.redact`), so nothing
carries a card number, CVV, token or secret. Acknowledge and resolve bodies carry only the
routing key, the action and the dedup key.

:class:`PagerDutyEvents` posts a body with the ``pagerduty`` package's
:class:`pagerduty.EventsApiV2Client` and returns a :class:`SendResult` instead of raising. It
makes exactly one HTTP attempt: retries belong to the durable outbox, which knows how long a
notification has been waiting. Left alone, the package would retry on its own:

* ``ApiClient.request`` retries a 429 without limit, sleeping 3 s, 6 s, 12 s... (doubling)
  in between, and ``EventsApiV2Client`` adds 2 retries on 500, 4 on 502 and 6 on 503 and
  504 with the same sleeps (a 503 that lasts blocks the caller for 189 s), capped at 10
  retries in all; a 401 raises ``pagerduty.HttpError`` whose message holds the last four
  characters of the routing key;
* a network error (``httpx2.TransportError``: refused, reset, timed out) is retried
  ``max_network_attempts`` (3) times after 3, 6 and 12 s, then raised as ``pagerduty.Error``
  (a timed-out event may thus be delivered twice: its dedup key makes that harmless);
* ``send_event`` raises ``pagerduty.HttpError`` (``ServerHttpError`` for 5xx) on any other
  non-2xx answer and ``ValueError`` for a bad action or a missing dedup key;
* the base URL must be ``https://`` (``pagerduty.UrlError`` otherwise).

The client here turns both retry loops off: its ``postprocess`` hook (called after every
response, before the retry logic looks at it) raises on any non-2xx status, which ends
``request`` at once, and ``max_network_attempts = 0`` makes the first network error final.
It accepts ``http://`` for a loopback host only (a local test server).
"""

from __future__ import annotations

import ipaddress
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final, Literal, get_args
from urllib.parse import urlsplit

import pagerduty

from paytriage.core.redact import redact, redact_value
from paytriage.domain.findings import Severity

__all__ = [
    "ACTIONS",
    "DEDUP_KEY_MAX",
    "ENQUEUE_PATH",
    "MAX_EVENT_BYTES",
    "SUMMARY_MAX",
    "EventAction",
    "Image",
    "Link",
    "PagerDutyEvents",
    "SendResult",
    "build_event",
    "pagerduty_severity",
]

EventAction = Literal["trigger", "acknowledge", "resolve"]
ACTIONS: Final[tuple[str, ...]] = get_args(EventAction)

ENQUEUE_PATH: Final = "/v2/enqueue"
SUMMARY_MAX: Final = 1024  # PagerDuty's limit on payload.summary, in characters
DEDUP_KEY_MAX: Final = 255  # PagerDuty's limit on dedup_key
MAX_EVENT_BYTES: Final = 512 * 1024  # PagerDuty's limit on a whole event
ELLIPSIS: Final = "…"

# paytriage's severities are PagerDuty's own (detectors.base.Severity); spelled out so a new
# member fails here instead of sending something PagerDuty rejects.
_SEVERITIES: Final[dict[Severity, str]] = {
    Severity.critical: "critical",
    Severity.error: "error",
    Severity.warning: "warning",
    Severity.info: "info",
}


# ---------------------------------------------------------------------------------------
# Building events


@dataclass(frozen=True)
class Link:
    """A link shown on the alert: ``href`` (http or https) and optional ``text``."""

    href: str
    text: str | None = None


@dataclass(frozen=True)
class Image:
    """An image shown on the alert: ``src`` must be https; ``href`` and ``alt`` optional."""

    src: str
    href: str | None = None
    alt: str | None = None


LinkLike = Link | Mapping[str, str] | tuple[str, str]
ImageLike = Image | Mapping[str, str] | str


def pagerduty_severity(severity: Severity | str) -> str:
    """PagerDuty's ``payload.severity`` for a paytriage severity."""
    try:
        sev = severity if isinstance(severity, Severity) else Severity(str(severity).lower())
        return _SEVERITIES[sev]
    except (ValueError, KeyError):
        raise ValueError(
            f"unknown severity {severity!r}; expected one of {', '.join(_SEVERITIES.values())}"
        ) from None


def build_event(
    action: EventAction | str,
    *,
    routing_key: str,
    dedup_key: str,
    summary: str | None = None,
    severity: Severity | str | None = None,
    source: str | None = None,
    component: str | None = None,
    group: str | None = None,
    class_: str | None = None,
    links: Iterable[LinkLike] = (),
    images: Iterable[ImageLike] = (),
    custom_details: Mapping[str, Any] | None = None,
    timestamp: datetime | None = None,
) -> dict[str, Any]:
    """An Events API v2 body for ``action`` (``trigger``, ``acknowledge`` or ``resolve``).

    A trigger needs ``summary``, ``severity`` and ``source``; the summary is redacted, then
    cut to PagerDuty's 1024 characters ending in an ellipsis. ``custom_details`` are made
    JSON-able (other values become their ``str``) and redacted; when they would take the event
    over PagerDuty's 512 KB they are replaced by a note. ``timestamp`` (aware) is when the
    problem was detected: an event sent late by the outbox keeps it. Acknowledge and resolve
    bodies carry only ``routing_key``, ``event_action`` and ``dedup_key``; the trigger-only
    arguments are ignored for them.

    The dedup key is redacted too (deterministically, so a resolve matches its trigger).
    Raises ``ValueError`` on an unknown action or severity, an empty routing key, dedup key,
    summary or source, a dedup key over 255 characters or a link that is not http(s).
    """
    if action not in ACTIONS:
        raise ValueError(
            f"unknown PagerDuty event action {action!r}; expected one of {', '.join(ACTIONS)}"
        )
    if not isinstance(routing_key, str) or not routing_key.strip():
        raise ValueError("routing_key must be a non-empty string")
    if routing_key != routing_key.strip() or any(c.isspace() for c in routing_key):
        raise ValueError("routing_key must not contain whitespace")  # never echo the key
    key = _dedup_key(dedup_key)
    body: dict[str, Any] = {"routing_key": routing_key, "event_action": action, "dedup_key": key}
    if action != "trigger":
        return body

    if summary is None or severity is None or source is None:
        missing = [
            n for n, v in (("summary", summary), ("severity", severity), ("source", source))
            if v is None
        ]  # fmt: skip
        raise ValueError(f"a trigger event needs {', '.join(missing)}")
    payload: dict[str, Any] = {
        "summary": _summary(summary),
        "severity": pagerduty_severity(severity),
        "source": _text("source", source, required=True),
    }
    if timestamp is not None:
        if timestamp.tzinfo is None or timestamp.utcoffset() is None:
            raise ValueError("timestamp must be timezone-aware")
        payload["timestamp"] = timestamp.astimezone(UTC).isoformat()
    for name, value in (("component", component), ("group", group), ("class", class_)):
        if value is not None and (text := _text(name, value)):
            payload[name] = text
    if custom_details is not None:
        if not isinstance(custom_details, Mapping):
            raise ValueError("custom_details must be a mapping")
        payload["custom_details"] = redact_value(_jsonable(custom_details, 0))
    body["payload"] = payload
    link_list = [_link(x) for x in links]
    if link_list:
        body["links"] = link_list
    image_list = [_image(x) for x in images]
    if image_list:
        body["images"] = image_list
    return _within_size(body)


def _dedup_key(dedup_key: object) -> str:
    if not isinstance(dedup_key, str) or not dedup_key.strip():
        raise ValueError("dedup_key must be a non-empty string")
    key = redact(dedup_key)
    if len(key) > DEDUP_KEY_MAX:
        raise ValueError(
            f"dedup_key is {len(key)} characters; PagerDuty takes at most {DEDUP_KEY_MAX}"
        )
    return key


def _text(name: str, value: object, *, required: bool = False) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, not {type(value).__name__}")
    text = redact(value.strip())
    if required and not text:
        raise ValueError(f"{name} must not be empty")
    return text


def _summary(summary: str) -> str:
    # Redacted before it is cut: a cut could split a card number so that no pass sees it.
    text = _text("summary", summary, required=True)
    if len(text) > SUMMARY_MAX:
        text = text[: SUMMARY_MAX - len(ELLIPSIS)].rstrip() + ELLIPSIS
    return text


def _url(name: str, value: object, schemes: tuple[str, ...]) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty URL")
    url = value.strip()
    scheme = urlsplit(url).scheme.lower()
    if scheme not in schemes or not urlsplit(url).netloc:
        raise ValueError(f"{name} must be an absolute {' or '.join(schemes)} URL")
    return redact(url)  # credentials or tokens in a URL become placeholders


def _link(link: LinkLike) -> dict[str, str]:
    if isinstance(link, Link):
        href, text = link.href, link.text
    elif isinstance(link, tuple):
        href, text = link
    elif isinstance(link, Mapping):
        href, text = link.get("href", ""), link.get("text")
    else:
        raise ValueError(f"a link is a Link, a mapping or an (href, text) pair, not {link!r}")
    out = {"href": _url("link href", href, ("https", "http"))}
    if text is not None and (t := _text("link text", text)):
        out["text"] = t
    return out


def _image(image: ImageLike) -> dict[str, str]:
    if isinstance(image, Image):
        src, href, alt = image.src, image.href, image.alt
    elif isinstance(image, str):
        src, href, alt = image, None, None
    elif isinstance(image, Mapping):
        src, href, alt = image.get("src", ""), image.get("href"), image.get("alt")
    else:
        raise ValueError(f"an image is an Image, a mapping or a src URL, not {image!r}")
    out = {"src": _url("image src", src, ("https",))}  # PagerDuty shows https images only
    if href is not None:
        out["href"] = _url("image href", href, ("https", "http"))
    if alt is not None and (a := _text("image alt", alt)):
        out["alt"] = a
    return out


_MAX_DEPTH = 32


def _jsonable(value: object, depth: int) -> Any:
    """``value`` as plain JSON types: other objects (datetimes, enums, Decimals...) become
    their ``str``, non-finite floats their name, keys strings; deep nesting is cut."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if depth >= _MAX_DEPTH:
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v, depth + 1) for v in value]
    return str(value)


def _size(body: Mapping[str, Any]) -> int:
    return len(json.dumps(body, ensure_ascii=False).encode())


def _within_size(body: dict[str, Any]) -> dict[str, Any]:
    """The body, its custom details replaced by a note when it is over PagerDuty's limit."""
    size = _size(body)
    if size <= MAX_EVENT_BYTES:
        return body
    payload = body["payload"]
    if "custom_details" in payload:
        payload["custom_details"] = {
            "note": f"custom details dropped: the event was {size} bytes, "
            f"over PagerDuty's limit of {MAX_EVENT_BYTES}"
        }
        size = _size(body)
    if size > MAX_EVENT_BYTES:
        raise ValueError(f"the event is {size} bytes, over PagerDuty's limit of {MAX_EVENT_BYTES}")
    return body


# ---------------------------------------------------------------------------------------
# Sending


@dataclass(frozen=True)
class SendResult:
    """What one attempt to send an event came to.

    ``ok``: PagerDuty accepted it (202); ``dedup_key``: the key it answered (its own for a
    trigger sent without one). Otherwise ``retryable`` says whether sending the same body
    again may succeed (429, 5xx, network errors and timeouts: yes; 400 and other 4xx: no),
    ``retry_after`` is the server's ``Retry-After`` in seconds if it sent one, ``error`` a
    redacted description that never holds the routing key, and ``status`` the HTTP status
    (None when no answer came).
    """

    ok: bool
    dedup_key: str | None = None
    retryable: bool = False
    retry_after: float | None = None
    error: str | None = None
    status: int | None = None


class _Answered(Exception):
    """A non-2xx answer, raised from ``postprocess`` so the package does not retry it."""

    def __init__(self, status: int, headers: Mapping[str, str], body: object) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.headers = dict(headers)
        self.body = body


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _events_base_url(url: str) -> str:
    """The Events API base URL (``https://events.pagerduty.com``): https, or http on a
    loopback host; a trailing ``/v2/enqueue`` is dropped."""
    if not isinstance(url, str) or not url.strip():
        raise ValueError("events_url must be a non-empty URL")
    base = url.strip().rstrip("/")
    base = base.removesuffix(ENQUEUE_PATH).rstrip("/")
    parts = urlsplit(base)
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError("events_url must not carry credentials, a query or a fragment")
    if parts.scheme == "https" and parts.hostname:
        return base
    if parts.scheme == "http" and _is_loopback(parts.hostname):
        return base
    raise ValueError(f"events_url must be https (http only on a loopback host): {redact(url)!r}")


class _SingleAttemptClient(pagerduty.EventsApiV2Client):
    """``EventsApiV2Client`` that never retries and accepts http on loopback hosts."""

    max_network_attempts = 0  # the first network error is raised (as pagerduty.Error)

    @property
    def url(self) -> str:
        return self._pd_events_url

    @url.setter
    def url(self, new_base_url: str) -> None:
        self._pd_events_url = _events_base_url(new_base_url)

    def postprocess(self, response: Any) -> None:
        # Runs right after each response and before ApiClient.request's retry logic, which
        # would otherwise sleep and retry 429 and 5xx (and raise on 401 naming the key).
        status = int(response.status_code)
        if 200 <= status <= 299:
            return
        try:
            body: object = response.json()
        except ValueError:
            body = response.text
        raise _Answered(status, response.headers, body)


class PagerDutyEvents:
    """Sends Events API v2 bodies to ``events_url``, one attempt each.

    ``events_url`` is the API's base (``https://events.pagerduty.com``, or the EU's
    ``https://events.eu.pagerduty.com``; ``http://127.0.0.1:PORT`` for a local server).
    The routing key travels in each body and is never kept, logged or put in a result.
    Thread-safe: each send uses its own short-lived client.
    """

    def __init__(self, events_url: str, timeout: float = 10) -> None:
        if not isinstance(timeout, int | float) or not 0 < timeout <= 300:
            raise ValueError("timeout must be a number of seconds in (0, 300]")
        self.events_url = _events_base_url(events_url)
        self.timeout = float(timeout)
        # A proxy from the environment is for the real service, not for a local one.
        self._trust_env = not _is_loopback(urlsplit(self.events_url).hostname)

    def __repr__(self) -> str:
        return f"PagerDutyEvents({self.events_url!r}, timeout={self.timeout:g})"

    def send(self, body: Mapping[str, Any]) -> SendResult:
        """POST ``body`` (e.g. from :func:`build_event`) once; never raises for what the
        server or the network does."""
        routing_key = body.get("routing_key") if isinstance(body, Mapping) else None
        if not isinstance(routing_key, str) or not routing_key:
            return SendResult(ok=False, error="the event has no routing_key")
        action = body.get("event_action")
        dedup_key = body.get("dedup_key")
        if action not in ACTIONS:
            error = _clean(f"unknown event_action {action!r}", routing_key)
            return SendResult(ok=False, error=error)
        if dedup_key is not None and not isinstance(dedup_key, str):
            return SendResult(ok=False, error="dedup_key must be a string")
        if action != "trigger" and not dedup_key:
            return SendResult(ok=False, error=f"an {action} event needs a dedup_key")
        properties = {
            k: v for k, v in body.items() if k not in ("routing_key", "event_action", "dedup_key")
        }
        if clash := sorted(properties.keys() & {"action", "self"}):  # send_event's parameters
            return SendResult(ok=False, error=f"unexpected key in the event: {clash[0]}")
        try:
            with _SingleAttemptClient(
                routing_key, base_url=self.events_url, trust_env=self._trust_env
            ) as client:
                client.timeout = self.timeout  # type: ignore[assignment]
                key = client.send_event(str(action), dedup_key=dedup_key, **properties)
        except _Answered as answer:
            return _failed(answer, routing_key)
        except pagerduty.HttpError as e:  # 2xx with a body that is not the expected JSON
            status = e.response.status_code if e.response is not None else None
            return SendResult(
                ok=False,
                retryable=True,
                status=status,
                error=_clean(f"unexpected answer from PagerDuty (HTTP {status})", routing_key),
            )
        except pagerduty.Error as e:  # no answer: refused, reset, timed out
            cause = e.__cause__ or e
            detail = str(cause) or type(cause).__name__
            return SendResult(
                ok=False,
                retryable=True,
                error=_clean(f"network error ({type(cause).__name__}): {detail}", routing_key),
            )
        return SendResult(ok=True, dedup_key=key, status=202)


def _failed(answer: _Answered, routing_key: str) -> SendResult:
    status = answer.status
    retryable = status == 429 or 500 <= status <= 599
    body = answer.body
    if isinstance(body, Mapping):
        parts = [str(body.get(k)) for k in ("status", "message") if body.get(k)]
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            parts.append("errors: " + "; ".join(str(x) for x in errors))
        detail = ": ".join(parts)
    else:
        detail = str(body)
    text = f"PagerDuty answered HTTP {status}" + (f": {detail}" if detail else "")
    return SendResult(
        ok=False,
        retryable=retryable,
        retry_after=_retry_after(answer.headers) if retryable else None,
        error=_clean(text, routing_key),
        status=status,
    )


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


_ERROR_MAX = 1000


def _clean(text: str, routing_key: str) -> str:
    """Error text without the routing key (removed before anything can cut it), redacted."""
    if routing_key:
        text = text.replace(routing_key, "[SECRET]")
    text = redact(text)
    return text if len(text) <= _ERROR_MAX else text[: _ERROR_MAX - 1] + ELLIPSIS
