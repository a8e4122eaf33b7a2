"""The bot's own HTTP endpoint: /healthz (alive), /readyz (able to do its job) and, when
given, /metrics (Prometheus exposition of the bot's own metrics). Every JSON body is
redacted before it is sent."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from paytriage.core.redact import redact_value

Check = Callable[[], tuple[bool, dict[str, Any]]]


class ServeError(Exception):
    """The endpoint cannot listen where configured; the message names the keys."""


def serve(
    host: str,
    port: int,
    healthy: Check,
    ready: Check,
    metrics: Callable[[], tuple[bytes, str]] | None = None,
) -> ThreadingHTTPServer:
    """Start the server in a daemon thread and return it (``shutdown()`` stops it).
    ``metrics`` returns the exposition body and its content type."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics" and metrics is not None:
                text, content_type = metrics()
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)
                return
            routes = {"/healthz": healthy, "/readyz": ready}
            check = routes.get(path)
            if check is None:
                self._reply(404, {"error": "not found", "paths": sorted(routes)})
                return
            ok, body = check()
            self._reply(200 if ok else 503, {"ok": ok, **body})

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            # Upstream error text (a 401 body quoting a token, a card number in a log line)
            # reaches the health body: it is redacted here, once, as the logs are.
            data = json.dumps(redact_value(body), default=str).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # quiet access log
            return

    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except (OSError, OverflowError) as exc:  # in use, no such address, a host that is no name
        why = getattr(exc, "strerror", None) or str(exc)
        raise ServeError(
            f"cannot serve on {host}:{port} (server.host, server.port): {why}"
        ) from None
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server
