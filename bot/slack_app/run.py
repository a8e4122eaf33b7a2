"""Serving the Slack app: HTTP mode (behind a load balancer) or Socket Mode (the default).

Both need nothing beyond slack-bolt and slack_sdk:

* HTTP: bolt's WSGI adapter (``slack_bolt.adapter.wsgi``) on the standard library's
  ``wsgiref`` server, one thread per connection (bolt's own development server is
  single-threaded and binds every interface), behind a guard (below). Requests are verified
  with the signing secret (``X-Slack-Signature`` v0, timestamps older than five minutes
  refused) by the guard, then again by bolt.
* Socket Mode: ``slack_bolt.adapter.socket_mode.SocketModeHandler``, which runs on
  ``slack_sdk``'s built-in WebSocket client (no ``websockets``/``aiohttp`` needed). It asks
  ``apps.connections.open`` for the URL with the app-level token (``xapp-…``).

The HTTP endpoint faces the network, so a guard (``_SlackEndpoint``) stands in front of
bolt's adapter and decides as much as it can before reading a body, which bolt would read
whole, whatever its size, before checking its signature:

* only ``POST`` to the events path (404, 405); a ``Content-Length`` is required (411) and at
  most ``MAX_BODY_BYTES`` (413, answered without reading the body: Slack's payloads are a few
  KB, a view submission some tens); the signature headers must be there and well formed
  (401, 400 for a timestamp that is not a number) and the timestamp fresh (401);
* the whole request, headers and body, must arrive within ``READ_TIMEOUT`` (then 408 and the
  connection is closed): a client that announces a body and sends it a byte at a time, or
  never, holds a thread for that long and no longer;
* the body is read in chunks against a budget shared by every connection
  (``BODY_BUDGET_BYTES``, 503 when spent), and at most ``MAX_CONNECTIONS`` connections are
  served at once (503 from the accepting thread beyond), so neither memory nor threads grow
  with what clients send;
* the signature is checked on the raw bytes (401) before anything is decoded; a body that is
  not UTF-8, or a payload bolt cannot parse (malformed JSON, a JSON payload that is not an
  object), is a 400; only then does bolt see the request (and verify it again, as it does).

Every refusal is a small JSON document (``{"ok": false, "error": "..."}``) and a line in the
bot's log (python ``logging``, JSON lines under ``paytriage run``); an unexpected error is a
500 of the same shape, logged with its traceback. Nothing is printed to standard error by
``wsgiref`` or ``socketserver`` (their error hooks are routed to the log as well).
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_bolt.adapter.wsgi.http_request import WsgiHttpRequest
from slack_bolt.request import BoltRequest

from paytriage.config.models import SlackConfig, SlackMode

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

    from _typeshed import OptExcInfo, WriteableBuffer

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"

# Largest request body taken. Slack's payloads are a few KB (a slash command, a click, an
# event); a view submission or a click on a long message some tens of KB.
MAX_BODY_BYTES = 1024 * 1024
# Time a client has to send its whole request (request line, headers and body) from the
# moment its connection is accepted; also the timeout of every send of the answer.
READ_TIMEOUT = 10.0
# Connections served at once (one thread each); beyond, a connection is answered 503 at once.
MAX_CONNECTIONS = 256
# Request bodies held in memory at once, over all connections: a body that would go beyond
# it is refused with 503 (a body counts from its first byte until its answer is ready; while
# it is checked and parsed it is held two or three times over, so the memory it bounds is a
# few times this).
BODY_BUDGET_BYTES = 32 * 1024 * 1024
# Slack's (and bolt's) bound on a request timestamp's distance from now.
MAX_SIGNATURE_AGE = 5 * 60

_CHUNK = 64 * 1024
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_LENGTH = re.compile(r"[0-9]{1,18}")


def _json_body(error: str) -> bytes:
    return json.dumps({"ok": False, "error": error}).encode()


def _status_line(code: int) -> str:
    return f"{code} {HTTPStatus(code).phrase}"


_BUSY_BODY = _json_body("server_busy")
_BUSY_RESPONSE = (
    b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Retry-After: 1\r\nContent-Length: " + str(len(_BUSY_BODY)).encode() + b"\r\n\r\n"
) + _BUSY_BODY


class _Refused(Exception):
    """A request answered ``status`` with ``{"ok": false, "error": error}``."""

    def __init__(
        self,
        status: int,
        error: str,
        why: str = "",
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.why = why or error
        self.headers = list(headers)


class _BodyBudget:
    """Bytes of request bodies held at once, over every connection, up to ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> bool:
        with self._lock:
            if self.held + n > self.limit:
                return False
            self.held += n
            return True

    def give(self, n: int) -> None:
        with self._lock:
            self.held -= n


class _Capture:
    """A ``start_response`` that keeps what the wrapped application answered."""

    status = "500 Internal Server Error"
    headers: list[tuple[str, str]]

    def __init__(self) -> None:
        self.headers = []

    def __call__(
        self, status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None, /
    ) -> Callable[[bytes], object]:
        self.status, self.headers = status, list(headers)
        return self._write

    @staticmethod
    def _write(data: bytes) -> object:
        raise RuntimeError("the Slack app answered through write(), which is not supported")


Answer = tuple[str, list[tuple[str, str]], bytes]


class _SlackEndpoint:
    """The WSGI application: refuses what it can before reading a body, reads the body
    within a budget, checks its signature and that bolt can parse it, then hands it to
    bolt's adapter. See the module's documentation."""

    def __init__(
        self, app: App, path: str, signing_secret: str, max_body: int, budget: _BodyBudget
    ) -> None:
        self.path = path
        self.max_body = max_body
        self.budget = budget
        self._secret = signing_secret.encode()
        self._bolt = SlackRequestHandler(app, path=path)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        held = [0]  # bytes of the body taken from the budget, given back once answered
        try:
            status, headers, body = self._answer(environ, held)
        except _Refused as no:
            level = logging.INFO if no.status in (404, 405) else logging.WARNING
            log.log(
                level,
                "slack http: refused %s %s from %s with %d: %s",
                environ.get("REQUEST_METHOD"),
                str(environ.get("PATH_INFO", ""))[:100],
                environ.get("REMOTE_ADDR"),
                no.status,
                no.why,
            )
            status = _status_line(no.status)
            body = _json_body(no.error)
            headers = [("Content-Type", "application/json"), *no.headers]
        except Exception:
            log.exception(
                "slack http: failed to answer %s %s from %s",
                environ.get("REQUEST_METHOD"),
                str(environ.get("PATH_INFO", ""))[:100],
                environ.get("REMOTE_ADDR"),
            )
            status, body = _status_line(500), _json_body("internal_error")
            headers = [("Content-Type", "application/json")]
        finally:
            self.budget.give(held[0])
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        start_response(status, [*headers, ("Content-Length", str(len(body)))])
        return [body]

    def _answer(self, environ: WSGIEnvironment, held: list[int]) -> Answer:
        if environ.get("PATH_INFO") != self.path:
            raise _Refused(404, "not_found")
        if environ.get("REQUEST_METHOD") != "POST":
            raise _Refused(405, "method_not_allowed", headers=[("Allow", "POST")])
        length = self._length(environ)
        timestamp, signature = self._signature_headers(environ)
        body = self._read(environ["wsgi.input"], length, held)
        expected = hmac.new(
            self._secret, b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256
        ).hexdigest()
        if not hmac.compare_digest("v0=" + expected, signature):
            raise _Refused(401, "invalid_signature", "signature does not match")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Refused(400, "invalid_encoding", f"body is not UTF-8 ({exc.reason})") from None
        try:  # what bolt's adapter does first, outside any of bolt's error handling
            BoltRequest(
                body=text,
                query=environ.get("QUERY_STRING", ""),
                headers=WsgiHttpRequest(environ).get_headers(),
            )
        except Exception as exc:
            why = f"payload bolt cannot parse ({type(exc).__name__})"
            raise _Refused(400, "invalid_payload", why) from None
        environ["wsgi.input"] = io.BytesIO(body)
        capture = _Capture()
        answer = b"".join(self._bolt(environ, capture))
        if not answer and int(capture.status.split()[0]) >= 500:
            # bolt's own answer to a listener or middleware that failed (it has logged why)
            headers = [(k, v) for k, v in capture.headers if k.lower() != "content-type"]
            headers.append(("Content-Type", "application/json"))
            return capture.status, headers, _json_body("internal_error")
        return capture.status, capture.headers, answer

    def _length(self, environ: WSGIEnvironment) -> int:
        raw = str(environ.get("CONTENT_LENGTH") or "").strip()
        if environ.get("HTTP_TRANSFER_ENCODING"):
            if raw:
                raise _Refused(
                    400, "invalid_content_length", "Content-Length and Transfer-Encoding"
                )
            raise _Refused(411, "length_required", "Transfer-Encoding without Content-Length")
        if not raw:
            raise _Refused(411, "length_required", "no Content-Length")
        if not _LENGTH.fullmatch(raw):
            raise _Refused(400, "invalid_content_length", f"Content-Length {raw[:40]!r}")
        length = int(raw)
        if length > self.max_body:
            why = f"body of {length} bytes announced, over the {self.max_body} limit"
            raise _Refused(413, "body_too_large", why)
        return length

    def _signature_headers(self, environ: WSGIEnvironment) -> tuple[str, str]:
        timestamp = environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP")
        signature = environ.get("HTTP_X_SLACK_SIGNATURE")
        if not timestamp or not signature:
            raise _Refused(401, "invalid_signature", "no X-Slack-Signature or timestamp")
        if not _TIMESTAMP.fullmatch(timestamp):
            why = f"X-Slack-Request-Timestamp {timestamp[:40]!r} is not a number"
            raise _Refused(400, "invalid_timestamp", why)
        if abs(time.time() - int(timestamp)) > MAX_SIGNATURE_AGE:
            raise _Refused(401, "invalid_signature", f"stale timestamp {timestamp}")
        if not _SIGNATURE.fullmatch(signature):
            raise _Refused(401, "invalid_signature", "malformed X-Slack-Signature")
        return timestamp, signature

    def _read(self, stream: Any, length: int, held: list[int]) -> bytes:
        # read1: what has arrived, at once, so that the budget counts bytes as they come
        # (read() would hold up to a chunk of them, uncounted, until the chunk is complete).
        read = getattr(stream, "read1", stream.read)
        chunks: list[bytes] = []
        got = 0
        while got < length:
            try:
                chunk = read(min(_CHUNK, length - got))
            except TimeoutError:
                why = f"body not received in time ({got} of {length} bytes)"
                raise _Refused(408, "request_timeout", why) from None
            except ConnectionError as exc:
                why = f"connection lost after {got} of {length} bytes ({exc})"
                raise _Refused(400, "incomplete_body", why) from None
            if not chunk:
                why = f"connection closed after {got} of {length} bytes"
                raise _Refused(400, "incomplete_body", why)
            if not self.budget.take(len(chunk)):
                why = f"request bodies held reached {self.budget.limit} bytes"
                raise _Refused(503, "server_busy", why, headers=[("Retry-After", "1")])
            held[0] += len(chunk)
            got += len(chunk)
            chunks.append(chunk)
        return b"".join(chunks)


class _DeadlineSocketReader(io.RawIOBase):
    """Reads ``sock`` until ``deadline`` (``time.monotonic``): each read waits for at most
    what is left, and raises ``TimeoutError`` when nothing is; the socket's own timeout
    (``timeout``, for the sends of the answer) is put back after every read."""

    def __init__(self, sock: socket.socket, deadline: float, timeout: float) -> None:
        super().__init__()
        self._sock = sock
        self._deadline = deadline
        self._timeout = timeout

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("request not received in time")
        self._sock.settimeout(min(left, self._timeout))
        try:
            return self._sock.recv_into(buffer)
        finally:
            self._sock.settimeout(self._timeout)


class _ServerHandler(ServerHandler):
    """wsgiref's, with its last-resort error answer in JSON and logged, not printed."""

    error_headers = [("Content-Type", "application/json")]  # noqa: RUF012 - wsgiref's shape
    error_body = _json_body("internal_error")

    def log_exception(self, exc_info: OptExcInfo) -> None:
        log.error("slack http: error answering a request", exc_info=exc_info)


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog is 5: a burst of clicks beyond it waits for the
    # client's SYN retry (a second), far past the time Slack allows for an answer.
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        read_timeout: float = READ_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.read_timeout = read_timeout
        self.max_connections = max_connections
        self.connections = 0
        self._count_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._count_lock:
            full = self.connections >= self.max_connections
            if not full:
                self.connections += 1
        if full:
            self._refuse(request, client_address)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._done()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._done()

    def _done(self) -> None:
        with self._count_lock:
            self.connections -= 1

    def _refuse(self, request: socket.socket, client_address: Any) -> None:
        """503 from the accepting thread, which must never wait on a client."""
        log.warning(
            "slack http: refused a connection from %s: %d connections already served",
            client_address[0] if client_address else "?",
            self.max_connections,
        )
        try:
            request.setblocking(False)
            request.send(_BUSY_RESPONSE)
        except OSError:
            pass
        self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exception()
        who = client_address[0] if client_address else "?"
        if isinstance(exc, TimeoutError):
            log.warning("slack http: %s sent no complete request in time: closed", who)
        elif isinstance(exc, ConnectionError):
            log.info("slack http: connection from %s lost: %s", who, exc)
        else:
            log.exception("slack http: error serving a connection from %s", who)


class _Handler(WSGIRequestHandler):
    server: _ThreadingWSGIServer

    def setup(self) -> None:
        timeout = self.server.read_timeout
        deadline = time.monotonic() + timeout
        super().setup()
        self.connection.settimeout(timeout)
        self.rfile.close()
        raw = _DeadlineSocketReader(self.connection, deadline, timeout)
        self.rfile = io.BufferedReader(raw, _CHUNK)

    def get_environ(self) -> dict[str, str]:
        env = super().get_environ()
        lengths = self.headers.get_all("Content-Length") or []
        if len(lengths) > 1:  # wsgiref would take the first: make it a malformed length
            env["CONTENT_LENGTH"] = ",".join(lengths)
        return env

    def handle(self) -> None:
        """WSGIRequestHandler's, with ``_ServerHandler``."""
        self.raw_requestline = self.rfile.readline(65537)
        if len(self.raw_requestline) > 65536:
            self.requestline = ""
            self.request_version = ""
            self.command = ""
            self.send_error(414)
            return
        if not self.parse_request():  # an error has been answered
            return
        handler = _ServerHandler(
            self.rfile,
            self.wfile,  # type: ignore[arg-type] # a socket writer, as wsgiref passes it
            sys.stderr,
            self.get_environ(),
            multithread=False,
        )
        handler.request_handler = self  # type: ignore[attr-defined] # for log_request
        handler.run(self.server.get_app())  # type: ignore[arg-type]

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """A malformed request line or headers: a JSON answer and a line in the log."""
        log.warning(
            "slack http: refused a malformed request from %s with %d: %s",
            self.client_address[0],
            code,
            (message or "")[:200],
        )
        body = _json_body("bad_request")
        self.close_connection = True
        # http.server answers an unparsed request line as HTTP/0.9: a body, no status line
        self.request_version = "HTTP/1.0"
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("slack http: " + format, *args)


def _signing_secret(app: App) -> str:
    # bolt keeps the secret its RequestVerification middleware checks against here; the
    # endpoint checks against the same one (tests: a signed request passes both).
    secret = getattr(app, "_signing_secret", None)
    if not isinstance(secret, str) or not secret:
        raise ValueError("the Slack app has no signing secret, which HTTP mode needs")
    return secret


class HttpServer:
    """The app over HTTP at ``url`` (``port`` is the bound one when 0 was asked for).

    ``read_timeout``, ``max_body``, ``max_connections`` and ``body_budget`` bound what a
    client may make the server wait for and hold (see the module's documentation)."""

    def __init__(
        self,
        app: App,
        port: int,
        host: str,
        path: str,
        *,
        read_timeout: float = READ_TIMEOUT,
        max_body: int = MAX_BODY_BYTES,
        max_connections: int = MAX_CONNECTIONS,
        body_budget: int = BODY_BUDGET_BYTES,
    ) -> None:
        self.path = path
        self._server = _ThreadingWSGIServer((host, port), read_timeout, max_connections)
        self._endpoint = _SlackEndpoint(
            app, path, _signing_secret(app), max_body, _BodyBudget(body_budget)
        )
        self._server.set_app(self._endpoint)
        self.host = host
        self.port = int(self._server.server_address[1])
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.path}"

    def serve_forever(self) -> None:
        log.info("Slack app listening on %s (HTTP mode)", self.url)
        self._server.serve_forever(poll_interval=0.2)

    def start(self) -> HttpServer:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self.serve_forever, name="slack-http", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)


def start_http(
    app: App,
    port: int,
    *,
    host: str = "127.0.0.1",
    path: str = EVENTS_PATH,
    block: bool = True,
) -> HttpServer:
    """Serve ``app`` over HTTP on ``host:port`` at ``path`` (Slack's Request URL). Blocks
    until shut down unless ``block`` is False (then it serves in a background thread)."""
    server = HttpServer(app, port, host, path)
    if block:
        server.serve_forever()
    else:
        server.start()
    return server


# How often slack_sdk's Socket Mode client pings Slack (Bolt's default is 10 s). The client
# finds a dead connection by it: no pong for four intervals, or five failed pings in a row,
# and then reconnects. At 10 s a cut connection went unnoticed for about a minute (an
# integration test cuts one); at 3 s, in about 18 s.
SOCKET_PING_INTERVAL = 3.0


def start_socket_mode(app: App, app_token: str, *, block: bool = True) -> SocketModeHandler:
    """Connect ``app`` to Slack over Socket Mode with the app-level token. Blocks until the
    process ends unless ``block`` is False (then ``close()`` the returned handler)."""
    if not app_token.startswith("xapp-"):
        raise ValueError("Socket Mode needs an app-level token (xapp-…), not a bot token")
    handler = SocketModeHandler(app, app_token, ping_interval=SOCKET_PING_INTERVAL)
    if block:
        handler.start()
    else:
        handler.connect()
    return handler


def start(
    app: App, slack: SlackConfig, *, host: str = "127.0.0.1", block: bool = True
) -> HttpServer | SocketModeHandler:
    """Serve in the configured mode (``slack.mode``)."""
    if slack.mode is SlackMode.http:
        return start_http(app, slack.http_port, host=host, block=block)
    if slack.app_token is None or not slack.app_token.is_set:
        raise ValueError("slack.app_token is required in socket mode")
    return start_socket_mode(app, slack.app_token.reveal(), block=block)


__all__ = ["EVENTS_PATH", "HttpServer", "start", "start_http", "start_socket_mode"]
