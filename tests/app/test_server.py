"""The health endpoints: what a load balancer or a person with curl reads."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from paytriage.app.server import serve
from tests.support.http import free_port
from tests.support.secrets import card_numbers

CARD = "4111 1111 1111 1111"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJib3QifQ.c2lnbmF0dXJlc2lnbmF0dXJl"
EMAIL = "ops.lead@example.com"


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_readyz_never_echoes_upstream_secrets() -> None:
    """A source's 401 body quoting the bearer token, a card number and an e-mail reached
    /readyz as it was, while the logs and App Home masked the same text."""
    upstream = (
        f"prometheus http error for query 'vector(1)': 401 Unauthorized: invalid token "
        f"Bearer {TOKEN} for {EMAIL}; last request paid with {CARD}"
    )

    def ready() -> tuple[bool, dict[str, Any]]:
        body = {"sources": {"prometheus": {"last_ok": None, "error": upstream}}}
        return False, {**body, "last_cycle": {"error": f"SourceError: {upstream}"}}

    port = free_port()
    server = serve("127.0.0.1", port, healthy=lambda: (True, {}), ready=ready)
    try:
        status, text = get(f"http://127.0.0.1:{port}/readyz")
    finally:
        server.shutdown()
    assert status == 503
    body = json.loads(text)
    assert "401 Unauthorized" in body["sources"]["prometheus"]["error"]  # still says why
    for secret in (TOKEN, EMAIL, "4111"):
        assert secret not in text
    assert card_numbers(text) == []
