"""A local PagerDuty Events API v2 on 127.0.0.1, for tests.

It serves ``POST /v2/enqueue`` and checks every body against PagerDuty's published OpenAPI
spec (``/work/shared/specs/pagerduty-events-v2.openapi.json``), so a test fails when the bot
sends something the real service would reject:

* valid: 202 ``{"status": "success", "message": "Event processed", "dedup_key": ...}``; a
  trigger without a ``dedup_key`` gets a generated one, as PagerDuty does;
* invalid: 400 ``{"status": "invalid event", "message": ..., "errors": [...]}``.

Validation uses ``jsonschema`` when it is importable (it is not a dependency of this project),
else a small validator of the subset of JSON Schema the spec uses (``$ref``, ``type``,
``enum``, ``required``, ``properties``, ``items``, ``maxLength``). On top of the schema it
applies what the spec states only in prose (a trigger needs a ``payload``; acknowledge and
resolve need a ``dedup_key``) and, with ``strict_limits`` (the default), the limits of
PagerDuty's Events API v2 documentation that the schema does not carry: a 32-character
``routing_key``, a ``dedup_key`` of at most 255 characters and a ``payload.summary`` of at
most 1024.

It keeps incidents the way PagerDuty does, keyed by routing key and dedup key: a trigger
opens one unless one is open (then it only adds to it: "paged once"); acknowledge and resolve
change the open one and are accepted and ignored when there is none. Every request is
recorded, failed ones included. ``fail_next`` answers the next requests with 429/5xx without
touching any state; ``delay`` slows every answer down (timeouts).

    with PagerDutyEventsServer() as pd:
        send(pd.url, ...)
        assert len(pd.incidents) == 1 and pd.incidents[0].status == "resolved"
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

__all__ = [
    "ENQUEUE_PATH",
    "SPEC_PATH",
    "Incident",
    "PagerDutyEventsServer",
    "RecordedRequest",
    "enqueue_schema",
    "validate_event",
]

SPEC_PATH = Path("/work/shared/specs/pagerduty-events-v2.openapi.json")
ENQUEUE_PATH = "/v2/enqueue"  # the spec's server is https://events.pagerduty.com/v2

ROUTING_KEY_LENGTH = 32
DEDUP_KEY_MAX = 255
SUMMARY_MAX = 1024

IncidentStatus = Literal["triggered", "acknowledged", "resolved"]


# ---------------------------------------------------------------------------------------
# Validation against the spec


@lru_cache(maxsize=4)
def enqueue_schema(spec_path: Path = SPEC_PATH) -> dict[str, Any]:
    """The JSON Schema of a ``POST /enqueue`` body, with the spec's components to resolve
    its ``#/components/...`` references against."""
    spec = json.loads(spec_path.read_text())
    body = spec["paths"]["/enqueue"]["post"]["requestBody"]["content"]["application/json"]
    return {**body["schema"], "components": spec["components"]}


def _jsonschema_errors(body: object, schema: Mapping[str, Any]) -> list[str] | None:
    """Errors found by ``jsonschema``, or None when it is not importable."""
    try:
        import jsonschema
    except ImportError:
        return None
    validator = jsonschema.Draft4Validator(schema)  # OpenAPI 3.0 schemas are draft 4-ish
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
    return [f"{_where(e.absolute_path)}: {e.message}" for e in errors]


def _where(path: Any) -> str:
    return "/".join(str(p) for p in path) or "(body)"


_TYPES: dict[str, Callable[[object], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _hand_errors(
    value: object, schema: Mapping[str, Any], root: Mapping[str, Any], path: tuple[str, ...] = ()
) -> list[str]:
    """The subset of JSON Schema the Events API spec uses, checked by hand."""
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return _hand_errors(value, target, root, path)
    where = _where(path)
    t = schema.get("type")
    if t is not None and not _TYPES[t](value):
        return [f"{where}: {value!r} is not of type {t!r}"]
    errors: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} is not one of {schema['enum']!r}")
    if isinstance(value, str) and "maxLength" in schema and len(value) > schema["maxLength"]:
        errors.append(f"{where}: is longer than {schema['maxLength']}")
    if isinstance(value, dict):
        errors += [
            f"{where}: {name!r} is a required property"
            for name in schema.get("required", ())
            if name not in value
        ]
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                errors += _hand_errors(value[name], sub, root, (*path, name))
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += _hand_errors(item, schema["items"], root, (*path, str(i)))
    return errors


def validate_event(
    body: object,
    *,
    strict_limits: bool = True,
    use_jsonschema: bool = True,
    spec_path: Path = SPEC_PATH,
) -> list[str]:
    """Why PagerDuty would reject ``body`` (empty when it would accept it)."""
    schema = enqueue_schema(spec_path)
    errors = _jsonschema_errors(body, schema) if use_jsonschema else None
    if errors is None:
        errors = _hand_errors(body, schema, schema)
    if not isinstance(body, dict):
        return errors
    action = body.get("event_action")
    if action == "trigger" and "payload" not in body:
        errors.append("(body): 'payload' is required for a trigger event")
    if action in ("acknowledge", "resolve") and "dedup_key" not in body:
        errors.append(f"(body): 'dedup_key' is required for an {action} event")
    if strict_limits:
        rk, dk = body.get("routing_key"), body.get("dedup_key")
        if isinstance(rk, str) and len(rk) != ROUTING_KEY_LENGTH:
            errors.append(
                f"routing_key: length of 'routing_key' is incorrect "
                f"(should be {ROUTING_KEY_LENGTH} characters)"
            )
        if isinstance(dk, str) and len(dk) > DEDUP_KEY_MAX:
            errors.append(f"dedup_key: longer than {DEDUP_KEY_MAX} characters")
        payload = body.get("payload")
        summary = payload.get("summary") if isinstance(payload, dict) else None
        if isinstance(summary, str) and len(summary) > SUMMARY_MAX:
            errors.append(f"payload/summary: longer than {SUMMARY_MAX} characters")
    return errors


# ---------------------------------------------------------------------------------------
# State


@dataclass
class Incident:
    """One incident as PagerDuty would open it; ``alerts`` counts the triggers it took."""

    number: int
    routing_key: str
    dedup_key: str
    status: IncidentStatus
    summary: str
    severity: str
    source: str
    alerts: int = 1
    history: list[str] = field(default_factory=lambda: ["trigger"])

    @property
    def is_open(self) -> bool:
        return self.status != "resolved"


@dataclass(frozen=True)
class RecordedRequest:
    """A request as received: ``body`` is the parsed JSON (None when it did not parse)."""

    method: str
    path: str
    status: int
    body: Any
    raw: bytes
    headers: dict[str, str]


@dataclass
class _Fault:
    status: int
    remaining: int
    retry_after: float | None
    message: str | None


# ---------------------------------------------------------------------------------------
# The server


class PagerDutyEventsServer:
    """A local Events API v2 (see the module docstring); a context manager."""

    def __init__(
        self,
        *,
        strict_limits: bool = True,
        use_jsonschema: bool = True,
        spec_path: Path = SPEC_PATH,
    ) -> None:
        self.strict_limits = strict_limits
        self.use_jsonschema = use_jsonschema
        self.spec_path = spec_path
        enqueue_schema(spec_path)  # fail at start, not on the first request
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._incidents: list[Incident] = []
        self._open: dict[tuple[str, str], Incident] = {}
        self._faults: list[_Fault] = []
        self._delay = 0.0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> PagerDutyEventsServer:
        if self._httpd is not None:
            raise RuntimeError("already started")
        owner = self

        class Handler(_Handler):
            server_owner = owner

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True  # a delayed answer never holds up shutdown
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)
        self._httpd = self._thread = None

    def __enter__(self) -> PagerDutyEventsServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:PORT`` (events go to ``url + "/v2/enqueue"``)."""
        if self._httpd is None:
            raise RuntimeError("not started")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def enqueue_url(self) -> str:
        return self.url + ENQUEUE_PATH

    # -- what tests look at ---------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, in order, failed and rejected ones included."""
        with self._lock:
            return list(self._requests)

    @property
    def events(self) -> list[Any]:
        """The parsed JSON body of every request received (None where it did not parse)."""
        return [r.body for r in self.requests]

    @property
    def accepted(self) -> list[Any]:
        """The bodies answered 202."""
        return [r.body for r in self.requests if r.status == 202]

    @property
    def incidents(self) -> list[Incident]:
        """Every incident opened, in order, resolved ones included."""
        with self._lock:
            return list(self._incidents)

    @property
    def open_incidents(self) -> list[Incident]:
        return [i for i in self.incidents if i.is_open]

    def incident(self, routing_key: str, dedup_key: str) -> Incident | None:
        """The latest incident for a routing key and dedup key, open or not."""
        found = [
            i for i in self.incidents if (i.routing_key, i.dedup_key) == (routing_key, dedup_key)
        ]
        return found[-1] if found else None

    # -- fault injection ------------------------------------------------------------------

    def fail_next(
        self,
        status: int = 503,
        count: int = 1,
        *,
        retry_after: float | None = None,
        message: str | None = None,
    ) -> None:
        """Answer the next ``count`` requests with ``status`` (429 or 5xx), changing nothing.

        ``retry_after`` adds a ``Retry-After`` header; ``message`` replaces the answer's
        message (e.g. to check that a client does not echo something it should not).
        """
        if status != 429 and not 500 <= status <= 599:
            raise ValueError(f"fail_next takes 429 or a 5xx status, not {status}")
        if count < 1:
            raise ValueError("count must be at least 1")
        with self._lock:
            self._faults.append(_Fault(status, count, retry_after, message))

    def delay(self, seconds: float) -> None:
        """Wait ``seconds`` before answering each request from now on (0 to stop)."""
        if seconds < 0:
            raise ValueError("delay must not be negative")
        with self._lock:
            self._delay = float(seconds)

    def reset(self) -> None:
        """Forget requests, incidents, faults and the delay."""
        with self._lock:
            self._requests.clear()
            self._incidents.clear()
            self._open.clear()
            self._faults.clear()
            self._delay = 0.0

    # -- handling (called from the server's threads) --------------------------------------

    def _handle(
        self, method: str, path: str, raw: bytes, headers: dict[str, str]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self._lock:
            delay = self._delay
        if delay:
            time.sleep(delay)
        body: Any = None
        try:
            body = json.loads(raw) if raw else None
            parsed = True
        except (ValueError, UnicodeDecodeError):
            parsed = False
        with self._lock:
            status, answer, extra = self._answer(method, path, body, parsed)
            self._requests.append(RecordedRequest(method, path, status, body, raw, headers))
        return status, answer, extra

    def _answer(
        self, method: str, path: str, body: Any, parsed: bool
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        if path.split("?", 1)[0] != ENQUEUE_PATH:
            return 404, {"status": "not found", "message": f"no route {path}"}, {}
        if method != "POST":
            return 405, {"status": "method not allowed", "message": f"{method} {path}"}, {}
        if self._faults:
            fault = self._faults[0]
            fault.remaining -= 1
            if fault.remaining <= 0:
                self._faults.pop(0)
            extra = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
            if fault.status == 429:
                answer = {"status": "throttle event", "message": "Requests for this service are arriving too quickly. Please retry later."}  # fmt: skip
            else:
                answer = {"status": "error", "message": "Internal server error"}
            if fault.message is not None:
                answer["message"] = fault.message
            return fault.status, answer, extra
        if not parsed:
            return 400, _invalid("Event object is invalid", ["JSON parse error"]), {}
        errors = validate_event(
            body,
            strict_limits=self.strict_limits,
            use_jsonschema=self.use_jsonschema,
            spec_path=self.spec_path,
        )
        if errors:
            return 400, _invalid("Event object is invalid", errors), {}
        dedup_key = self._apply(body)
        return 202, {"status": "success", "message": "Event processed", "dedup_key": dedup_key}, {}

    def _apply(self, body: dict[str, Any]) -> str:
        """Apply a valid event to the incidents; the dedup key it was given or got."""
        action = body["event_action"]
        routing_key = body["routing_key"]
        dedup_key = body.get("dedup_key") or uuid.uuid4().hex
        key = (routing_key, dedup_key)
        current = self._open.get(key)
        if action == "trigger":
            if current is None:
                payload = body["payload"]
                incident = Incident(
                    number=len(self._incidents) + 1,
                    routing_key=routing_key,
                    dedup_key=dedup_key,
                    status="triggered",
                    summary=payload["summary"],
                    severity=payload["severity"],
                    source=payload["source"],
                )
                self._incidents.append(incident)
                self._open[key] = incident
            else:  # deduplicated into the open incident: nobody is paged again
                current.alerts += 1
                current.history.append("trigger")
        elif current is not None:  # acknowledge or resolve; ignored when nothing is open
            current.history.append(action)
            if action == "acknowledge":
                current.status = "acknowledged"
            else:
                current.status = "resolved"
                del self._open[key]
        return dedup_key


def _invalid(message: str, errors: list[str]) -> dict[str, Any]:
    return {"status": "invalid event", "message": message, "errors": errors}


class _Handler(BaseHTTPRequestHandler):
    server_owner: PagerDutyEventsServer
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        headers = dict(self.headers.items())
        status, answer, extra = self.server_owner._handle(self.command, self.path, raw, headers)
        data = json.dumps(answer).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
            pass

    do_POST = _serve
    do_GET = _serve
    do_PUT = _serve
    do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass
