"""The Slack app's HTTP endpoint under hostile clients (``paytriage.slack_app.run``).

A real bolt app (the bot's own, over the local Slack Web API server) served on 127.0.0.1,
driven over raw sockets so that a test decides exactly what is sent and when: bodies too
large are refused from their headers, before a byte of them is sent; a client that sends
its request slowly is cut off when the read timeout is up; malformed input is a 4xx JSON
answer and a line in the log, never a traceback on standard error nor a request reaching
bolt; a correctly signed slash command is answered throughout.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from slack_bolt import App
from slack_sdk import WebClient

from paytriage.app.compose import create_slack_app
from paytriage.config import Settings
from paytriage.slack_app.run import EVENTS_PATH, MAX_BODY_BYTES, HttpServer, start_http
from paytriage.store import Store
from tests.support.executors import app_pools, wait_idle
from tests.support.slack_api import SlackApiServer

SECRET = "run-test-signing-secret-0123456789"
FORM = "application/x-www-form-urlencoded"
LOGGER = "paytriage.slack_app.run"


# --- helpers ------------------------------------------------------------------------------


def sign(body: bytes, timestamp: str, secret: str = SECRET) -> str:
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def command(text: str = "help") -> bytes:
    form = {
        "command": "/triage",
        "text": text,
        "user_id": "U0ANA00001",
        "channel_id": "C0PAYMENTS",
        "team_id": "T0PAYTRIAGE",
        "trigger_id": "1.2",
    }
    return urllib.parse.urlencode(form).encode()


def head(
    length: int | str | None,
    *,
    content_type: str = FORM,
    timestamp: str | None = None,
    signature: str | None = None,
    method: str = "POST",
    path: str = EVENTS_PATH,
    extra: str = "",
) -> bytes:
    """A request's line and headers; no signature headers when ``signature`` is ""."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Type: {content_type}"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    if signature != "":
        ts = timestamp if timestamp is not None else str(int(time.time()))
        lines += [f"X-Slack-Request-Timestamp: {ts}", f"X-Slack-Signature: {signature or ''}"]
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode("latin-1")


def signed(body: bytes, content_type: str = FORM, timestamp: str | None = None) -> bytes:
    ts = timestamp if timestamp is not None else str(int(time.time()))
    return head(len(body), content_type=content_type, timestamp=ts, signature=sign(body, ts)) + body


def parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    top, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = top.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


def read_all(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Everything the server sends until it closes the connection."""
    sock.settimeout(timeout)
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


def exchange(server: HttpServer, data: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(data)
        return parse(read_all(sock))


def error_of(body: bytes) -> str:
    doc = json.loads(body)
    assert doc["ok"] is False
    return str(doc["error"])


def wait_for(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.01)
    return value


def refusals(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno >= logging.INFO]


def no_traceback(err: str) -> None:
    assert "Traceback" not in err and "Exception occurred" not in err, err


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture
def app(store: Store) -> Iterator[App]:
    settings = Settings.model_validate(
        {
            "slack": {
                "enabled": True,
                "mode": "http",
                "bot_token": "${T}",
                "signing_secret": "${S}",
            }
        },
        context={"env": {"S": SECRET, "T": "xoxb-paytriage-test"}},
    )
    with SlackApiServer() as slack:
        pools = app_pools()
        client = WebClient(token=slack.token, base_url=slack.base_url, timeout=5)
        yield create_slack_app(settings, store, client=client, executors=pools)
        wait_idle(*pools)
        for pool in pools:
            pool.shutdown()


@pytest.fixture
def dispatched(app: App, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The requests that reached bolt."""
    seen: list[Any] = []
    dispatch = app.dispatch

    def spy(req: Any) -> Any:
        seen.append(req)
        return dispatch(req)

    monkeypatch.setattr(app, "dispatch", spy)
    return seen


@pytest.fixture
def server(app: App, dispatched: list[Any]) -> Iterator[HttpServer]:
    http = start_http(app, 0, host="127.0.0.1", block=False)
    yield http
    http.close()


def serve(app: App, **limits: Any) -> HttpServer:
    return HttpServer(app, 0, "127.0.0.1", EVENTS_PATH, **limits).start()


@pytest.fixture
def serving(app: App, dispatched: list[Any]) -> Iterator[Callable[..., HttpServer]]:
    started: list[HttpServer] = []

    def start(**limits: Any) -> HttpServer:
        started.append(serve(app, **limits))
        return started[-1]

    yield start
    for http in started:
        http.close()


# --- the signed request still works -------------------------------------------------------


def test_a_signed_slash_command_is_answered(server: HttpServer, dispatched: list[Any]) -> None:
    status, headers, body = exchange(server, signed(command("help")))
    assert status == 200
    assert "/triage" in json.loads(body)["text"]
    assert int(headers["content-length"]) == len(body)
    assert len(dispatched) == 1


# --- before the body is read --------------------------------------------------------------


def test_an_oversized_body_is_refused_before_it_is_sent(
    server: HttpServer,
    dispatched: list[Any],
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(head(200_000_000, signature="v0=" + "0" * 64))
        started = time.monotonic()
        status, headers, body = parse(read_all(sock, timeout=3))  # and then it is closed
    assert time.monotonic() - started < 2
    assert (status, error_of(body)) == (413, "body_too_large")
    assert headers["content-type"] == "application/json"
    [record] = refusals(caplog)
    assert record.levelno == logging.WARNING and "413" in record.getMessage()
    assert dispatched == []
    no_traceback(capfd.readouterr().err)


def test_the_limit_is_a_mebibyte_and_a_body_at_the_limit_gets_through_to_its_signature(
    server: HttpServer,
) -> None:
    ok = b"x" * MAX_BODY_BYTES
    assert exchange(server, head(len(ok), signature="v0=" + "0" * 64) + ok)[0] == 401
    assert exchange(server, head(MAX_BODY_BYTES + 1, signature="v0=" + "0" * 64))[0] == 413


@pytest.mark.parametrize(
    ("request_bytes", "status", "error"),
    [
        (head(10, path="/"), 404, "not_found"),
        (head(10, path="/slack/events/x"), 404, "not_found"),
        (head(None, method="GET"), 405, "method_not_allowed"),
        (head(None, signature="v0=" + "0" * 64), 411, "length_required"),
        (
            head(None, signature="v0=" + "0" * 64, extra="Transfer-Encoding: chunked\r\n"),
            411,
            "length_required",
        ),
        (
            head(5, signature="v0=" + "0" * 64, extra="Transfer-Encoding: chunked\r\n"),
            400,
            "invalid_content_length",
        ),
        (head("ten", signature="v0=" + "0" * 64), 400, "invalid_content_length"),
        (head("-1", signature="v0=" + "0" * 64), 400, "invalid_content_length"),
        (
            head(5, signature="v0=" + "0" * 64, extra="Content-Length: 500\r\n"),
            400,
            "invalid_content_length",
        ),
        (head(10, signature=""), 401, "invalid_signature"),
        (head(10, signature="v0=nothex"), 401, "invalid_signature"),
        (head(10, signature="v0=" + "\u00e9" * 64), 401, "invalid_signature"),
        (head(10, timestamp="12abc", signature="v0=" + "0" * 64), 400, "invalid_timestamp"),
        (head(10, timestamp="1e9", signature="v0=" + "0" * 64), 400, "invalid_timestamp"),
        (head(10, timestamp="9" * 40, signature="v0=" + "0" * 64), 400, "invalid_timestamp"),
        (head(10, timestamp="1000000000", signature="v0=" + "0" * 64), 401, "invalid_signature"),
    ],
    ids=[
        "root",
        "below-events",
        "get",
        "no-length",
        "chunked",
        "chunked-and-length",
        "length-not-a-number",
        "negative-length",
        "two-lengths",
        "unsigned",
        "signature-not-hex",
        "signature-not-ascii",
        "timestamp-not-a-number",
        "timestamp-float",
        "timestamp-huge",
        "stale",
    ],
)
def test_headers_alone_decide_a_refusal(
    server: HttpServer,
    dispatched: list[Any],
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    request_bytes: bytes,
    status: int,
    error: str,
) -> None:
    """No body is sent: each answer comes from the headers, in JSON, logged."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    got, headers, body = exchange(server, request_bytes)
    assert (got, error_of(body)) == (status, error)
    assert headers["content-type"] == "application/json"
    if status == 405:
        assert headers["allow"] == "POST"
    assert [str(status) in r.getMessage() for r in refusals(caplog)] == [True]
    assert dispatched == []
    no_traceback(capfd.readouterr().err)


def test_a_malformed_request_line_is_a_json_400_and_logged(
    server: HttpServer, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    status, headers, body = exchange(server, b"POST /slack/events HTTP/9.z\r\n\r\n")
    assert (status, error_of(body)) == (400, "bad_request")
    assert headers["content-type"] == "application/json"
    assert any("400" in r.getMessage() for r in refusals(caplog))
    no_traceback(capfd.readouterr().err)


# --- the read timeout ---------------------------------------------------------------------


def test_a_slow_body_is_cut_off_when_the_read_timeout_is_up(
    serving: Callable[..., HttpServer],
    dispatched: list[Any],
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    http = serving(read_timeout=0.5)
    body = command("status")
    ts = str(int(time.time()))
    with socket.create_connection((http.host, http.port), timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(head(len(body), timestamp=ts, signature=sign(body, ts)) + body[:3])
        status, _, answer = parse(read_all(sock, timeout=5))
        elapsed = time.monotonic() - started
    assert 0.4 < elapsed < 2.0
    assert (status, error_of(answer)) == (408, "request_timeout")
    assert any("408" in r.getMessage() for r in refusals(caplog))
    assert dispatched == []
    no_traceback(capfd.readouterr().err)


def test_the_timeout_bounds_the_whole_request_not_each_read(
    serving: Callable[..., HttpServer],
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Headers sent a byte every 0.1 s (each read is quick; the request never ends): the
    connection is closed half a second after it was opened."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    http = serving(read_timeout=0.5)
    with socket.create_connection((http.host, http.port), timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /slack/events HTTP/1.1\r\n")
        closed = None
        for byte in b"X-Slow: " + b"a" * 40:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                closed = time.monotonic() - started
                break
            time.sleep(0.1)
        if closed is None:
            assert read_all(sock, timeout=2) == b""
            closed = time.monotonic() - started
    assert closed < 2.0
    assert any("in time" in r.getMessage() for r in refusals(caplog))
    no_traceback(capfd.readouterr().err)


def test_signed_commands_are_answered_while_slow_clients_hold_connections(
    serving: Callable[..., HttpServer],
) -> None:
    http = serving(read_timeout=2.0)
    slow = []
    try:
        for _ in range(30):
            sock = socket.create_connection((http.host, http.port), timeout=5)
            sock.sendall(head(1000, signature="v0=" + "0" * 64) + b"abc")
            slow.append(sock)
        for _ in range(5):
            started = time.monotonic()
            assert exchange(http, signed(command("help")))[0] == 200
            assert time.monotonic() - started < 1.0
    finally:
        for sock in slow:
            sock.close()


# --- bounded connections and body memory --------------------------------------------------


def test_connections_beyond_the_limit_are_answered_503_at_once(
    serving: Callable[..., HttpServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    http = serving(max_connections=2, read_timeout=5.0)
    idle = [socket.create_connection((http.host, http.port), timeout=5) for _ in range(2)]
    try:
        wait_for(lambda: http._server.connections == 2)
        started = time.monotonic()
        status, headers, body = exchange(http, signed(command("help")))
        assert time.monotonic() - started < 1.0
        assert (status, error_of(body), headers["retry-after"]) == (503, "server_busy", "1")
        assert any("connections already served" in r.getMessage() for r in refusals(caplog))
    finally:
        for sock in idle:
            sock.close()
    wait_for(lambda: http._server.connections == 0)
    assert exchange(http, signed(command("help")))[0] == 200


def test_bodies_held_at_once_are_bounded(serving: Callable[..., HttpServer]) -> None:
    """A body arriving slowly counts against the budget for what it has sent so far; a
    request that would go beyond it is answered 503, and the budget is given back."""
    http = serving(body_budget=1000, max_body=1000, read_timeout=5.0)
    with socket.create_connection((http.host, http.port), timeout=5) as slow:
        slow.sendall(head(1000, signature="v0=" + "0" * 64) + b"x" * 900)
        wait_for(lambda: http._endpoint.budget.held == 900)
        status, _, body = exchange(http, signed(command("help")))
        assert (status, error_of(body)) == (503, "server_busy")
    wait_for(lambda: http._endpoint.budget.held == 0)
    assert exchange(http, signed(command("help")))[0] == 200
    assert http._endpoint.budget.held == 0


# --- after the body is read ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "error"),
    [
        (b"\xff\xfe\xfdcommand=/triage", FORM, "invalid_encoding"),
        (b'{"type": "event_callback", "event": ', "application/json", "invalid_payload"),
        (b"payload=%7Bnot+json", FORM, "invalid_payload"),
        (b"[1, 2, 3]", "application/json", "invalid_payload"),
        (b"payload=%5B1%5D", FORM, "invalid_payload"),
        (b'"a string"', "application/json", "invalid_payload"),
    ],
    ids=[
        "not-utf8",
        "truncated-json",
        "form-payload-not-json",
        "json-array",
        "payload-array",
        "json-string",
    ],
)
def test_malformed_signed_bodies_are_a_json_400_and_logged(
    server: HttpServer,
    dispatched: list[Any],
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    body: bytes,
    content_type: str,
    error: str,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    status, headers, answer = exchange(server, signed(body, content_type))
    assert (status, error_of(answer)) == (400, error)
    assert headers["content-type"] == "application/json"
    [record] = refusals(caplog)
    assert record.levelno == logging.WARNING and "400" in record.getMessage()
    assert dispatched == []
    no_traceback(capfd.readouterr().err)


def test_a_wrong_signature_is_refused_before_the_body_is_decoded(
    server: HttpServer, dispatched: list[Any]
) -> None:
    body = b"\xff\xfe not utf-8"
    ts = str(int(time.time()))
    request = head(len(body), timestamp=ts, signature=sign(body, ts, "not-the-secret")) + body
    status, _, answer = exchange(server, request)
    assert (status, error_of(answer)) == (401, "invalid_signature")
    assert dispatched == []


def test_a_body_cut_short_is_a_400(server: HttpServer, dispatched: list[Any]) -> None:
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(signed(command())[:-4])
        sock.shutdown(socket.SHUT_WR)
        status, _, answer = parse(read_all(sock))
    assert (status, error_of(answer)) == (400, "incomplete_body")
    assert dispatched == []


def test_an_error_inside_the_app_is_a_json_500_logged_not_printed(
    app: App,
    serving: Callable[..., HttpServer],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    def boom(req: Any) -> Any:
        raise RuntimeError("boom")

    http = serving()
    monkeypatch.setattr(app, "dispatch", boom)
    status, headers, body = exchange(http, signed(command("help")))
    assert (status, error_of(body)) == (500, "internal_error")
    assert headers["content-type"] == "application/json"
    [record] = [r for r in caplog.records if r.name == LOGGER and r.levelno >= logging.ERROR]
    assert record.exc_info is not None and "boom" in str(record.exc_info[1])
    no_traceback(capfd.readouterr().err)


def test_a_payload_bolt_fails_on_is_a_json_500_logged_not_printed(
    server: HttpServer, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """Signed, parsed, but not of the shape bolt's matchers expect: bolt answers 500 (and
    logs the error through logging); the answer is JSON like every other error."""
    body = json.dumps({"type": "event_callback", "event": "not an object"}).encode()
    status, headers, answer = exchange(server, signed(body, "application/json"))
    assert (status, error_of(answer)) == (500, "internal_error")
    assert headers["content-type"] == "application/json"
    assert any(r.name.startswith("paytriage.slack_app") and r.exc_info for r in caplog.records)
    no_traceback(capfd.readouterr().err)


def test_an_app_without_a_signing_secret_cannot_be_served(app: App) -> None:
    app._signing_secret = ""
    with pytest.raises(ValueError, match="signing secret"):
        HttpServer(app, 0, "127.0.0.1", EVENTS_PATH)
