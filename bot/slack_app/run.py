"""Serving the Slack app: HTTP mode (behind a load balancer) or Socket Mode (the default).

Both need nothing beyond slack-bolt and slack_sdk:

* HTTP: bolt's WSGI adapter (``slack_bolt.adapter.wsgi``) on the standard library's
  ``wsgiref`` server, one thread per request (bolt's own development server is
  single-threaded and binds every interface). Requests are verified with the signing secret
  (``X-Slack-Signature`` v0, timestamps older than five minutes refused) by bolt.
* Socket Mode: ``slack_bolt.adapter.socket_mode.SocketModeHandler``, which runs on
  ``slack_sdk``'s built-in WebSocket client (no ``websockets``/``aiohttp`` needed). It asks
  ``apps.connections.open`` for the URL with the app-level token (``xapp-…``).
"""

from __future__ import annotations

import logging
import threading
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.wsgi import SlackRequestHandler

from paytriage.config.models import SlackConfig, SlackMode

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog is 5: a burst of clicks beyond it waits for the
    # client's SYN retry (a second), far past the time Slack allows for an answer.
    request_queue_size = 128


class _Handler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("slack http: " + format, *args)


class HttpServer:
    """The app over HTTP at ``url`` (``port`` is the bound one when 0 was asked for)."""

    def __init__(self, app: App, port: int, host: str, path: str) -> None:
        self.path = path
        self._server = make_server(
            host,
            port,
            SlackRequestHandler(app, path=path),
            server_class=_ThreadingWSGIServer,
            handler_class=_Handler,
        )
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
