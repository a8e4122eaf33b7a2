"""`paytriage run` as a real process: health endpoints, source probes, clean shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Stack
from tests.support.faults import closed_port_url
from tests.support.http import free_port, get

pytestmark = pytest.mark.integration


def start_run(
    tmp_path: Path, prometheus_url: str, opensearch_url: str
) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        f"sources:\n  prometheus: {{url: '{prometheus_url}', timeout: 2s, retries: 0}}\n"
        f"  opensearch: {{hosts: ['{opensearch_url}'], timeout: 2s, retries: 0}}\n"
        f"slack: {{enabled: false}}\nserver: {{port: {port}}}\n"
        f"store: {{url: 'sqlite:///{tmp_path / 'paytriage.db'}'}}\n"
        f"evidence: {{chart_dir: '{tmp_path / 'charts'}'}}\n"
    )
    env = {**os.environ, "SLACK_BOT_TOKEN": "xoxb-must-not-leak"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "paytriage.cli", "run", "--config", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    return proc, f"http://127.0.0.1:{port}"


def wait_for(
    url: str,
    want: int,
    timeout: float = 20,
    until: Callable[[dict[str, object]], bool] = lambda body: True,
) -> dict[str, object]:
    """The first body ``url`` answers with status ``want`` (and for which ``until`` holds)."""
    deadline = time.monotonic() + timeout
    last: tuple[int, dict[str, object]] | None = None
    while time.monotonic() < deadline:
        try:
            last = get(url)
            if last[0] == want and until(last[1]):
                return last[1]
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} never answered {want}; last: {last}")


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0, out
    return out


def test_ready_when_both_sources_answer(tmp_path: Path, stack: Stack) -> None:
    proc, base = start_run(tmp_path, stack.prometheus_url, stack.opensearch_url)
    try:
        body = wait_for(f"{base}/readyz", 200)
        sources = body["sources"]
        assert isinstance(sources, dict) and set(sources) == {"prometheus", "opensearch"}
        assert get(f"{base}/healthz")[0] == 200
        assert get(f"{base}/nope")[0] == 404
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as r:
            assert r.headers["Content-Type"].startswith("text/plain")
            exposition = r.read().decode()
        assert "paytriage_leader 1.0" in exposition
        assert "paytriage_outbox_depth 0.0" in exposition
    finally:
        out = stop(proc)
    assert "slack is disabled: incidents are recorded in the store" in out
    assert "xoxb-must-not-leak" not in out
    assert (tmp_path / "paytriage.db").exists()  # the store was opened (and migrated)


def test_not_ready_and_says_why_when_a_source_is_down(tmp_path: Path, stack: Stack) -> None:
    dead = closed_port_url()
    proc, base = start_run(tmp_path, dead, stack.opensearch_url)
    try:
        # Not ready from the start; the reason once the first probe of Prometheus is in.
        body = wait_for(f"{base}/readyz", 503, until=lambda b: "prometheus" in b["sources"])  # type: ignore[operator]
        prom = body["sources"]["prometheus"]  # type: ignore[index]
        assert "connection error" in prom["error"] and dead in prom["error"]
        assert get(f"{base}/healthz")[0] == 200  # alive, just not ready
    finally:
        out = stop(proc)
    assert "data source prometheus is failing" in out


def test_run_serves_the_slack_app_in_http_mode(tmp_path: Path, stack: Stack) -> None:
    """`paytriage run` with Slack in HTTP mode: signed slash commands are answered by the
    running process, unsigned ones refused (the Web API is the local Slack server)."""
    import hashlib
    import hmac
    from urllib.parse import urlencode

    from tests.support.slack_api import SlackApiServer

    secret = "8f742231b10e8888abcd99yyyzzz85a5"
    port, slack_port = free_port(), free_port()
    with SlackApiServer() as slack:
        cfg = tmp_path / "run.yaml"
        cfg.write_text(
            f"sources:\n  prometheus: {{url: '{stack.prometheus_url}', timeout: 2s, retries: 0}}\n"
            f"  opensearch: {{hosts: ['{stack.opensearch_url}'], timeout: 2s, retries: 0}}\n"
            f"slack: {{enabled: true, mode: http, bot_token: '${{SLACK_BOT_TOKEN}}', "
            f"signing_secret: '${{SLACK_SIGNING_SECRET}}', base_url: '{slack.base_url}', "
            f"http_port: {slack_port}}}\n"
            f"server: {{port: {port}}}\n"
            f"store: {{url: 'sqlite:///{tmp_path / 'paytriage.db'}'}}\n"
            f"evidence: {{chart_dir: '{tmp_path / 'charts'}'}}\n"
        )
        env = {**os.environ, "SLACK_BOT_TOKEN": slack.token, "SLACK_SIGNING_SECRET": secret}
        proc = subprocess.Popen(
            [sys.executable, "-m", "paytriage.cli", "run", "--config", str(cfg)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        try:
            wait_for(f"http://127.0.0.1:{port}/healthz", 200)
            body = urlencode(
                {
                    "command": "/triage",
                    "text": "help",
                    "user_id": "U0ANA00001",
                    "channel_id": "C0PAYMENTS",
                    "team_id": "T0PAYTRIAGE",
                    "trigger_id": "1.2",
                    "response_url": f"{slack.root_url}/hooks/r0",
                }
            ).encode()
            url = f"http://127.0.0.1:{slack_port}/slack/events"

            def post(signature: str | None) -> int:
                ts = str(int(time.time()))
                base = b"v0:" + ts.encode() + b":" + body
                good = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
                req = urllib.request.Request(
                    url,
                    data=body,
                    method="POST",
                    headers={
                        "Content-Type": "application/x-www-form-urlencoded",
                        "X-Slack-Request-Timestamp": ts,
                        "X-Slack-Signature": signature or good,
                    },
                )
                try:
                    with urllib.request.urlopen(req, timeout=10) as r:
                        return r.status
                except urllib.error.HTTPError as e:
                    return e.code

            deadline = time.monotonic() + 20
            status = 0
            while time.monotonic() < deadline:
                try:
                    status = post(None)
                    break
                except OSError:  # the app's server is not listening yet
                    time.sleep(0.2)
            assert status == 200
            assert post("v0=" + "0" * 64) == 401
        finally:
            out = stop(proc)
    assert "slack app started in http mode" in out
    assert slack.token not in out and secret not in out


def test_run_goes_on_without_slack_and_connects_when_slack_takes_its_token(
    tmp_path: Path, stack: Stack
) -> None:
    """Issue 19, finding 4: Slack refusing the token at start-up (``invalid_auth`` from
    ``auth.test``) used to end `paytriage run`. Now it runs, says why on /readyz, and
    connects on a later attempt."""
    from tests.support.slack_api import SlackApiServer

    port, slack_port = free_port(), free_port()
    with SlackApiServer() as slack:
        slack.fail_next("auth.test", "invalid_auth", status=200, count=1)
        cfg = tmp_path / "run.yaml"
        cfg.write_text(
            f"sources:\n  prometheus: {{url: '{stack.prometheus_url}', timeout: 2s, retries: 0}}\n"
            f"  opensearch: {{hosts: ['{stack.opensearch_url}'], timeout: 2s, retries: 0}}\n"
            f"slack: {{enabled: true, mode: http, bot_token: '${{SLACK_BOT_TOKEN}}', "
            f"signing_secret: '${{SLACK_SIGNING_SECRET}}', base_url: '{slack.base_url}', "
            f"http_port: {slack_port}}}\n"
            f"server: {{port: {port}}}\n"
            f"store: {{url: 'sqlite:///{tmp_path / 'paytriage.db'}'}}\n"
            f"evidence: {{chart_dir: '{tmp_path / 'charts'}'}}\n"
        )
        env = {**os.environ, "SLACK_BOT_TOKEN": slack.token, "SLACK_SIGNING_SECRET": "s" * 32}
        proc = subprocess.Popen(
            [sys.executable, "-m", "paytriage.cli", "run", "--config", str(cfg)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            down = wait_for(f"{base}/readyz", 200, until=lambda b: "slack_app" in b)
            link = down["slack_app"]
            assert isinstance(link, dict)
            if not link["connected"]:  # the first attempt was refused; said why
                assert "invalid_auth" in str(link["error"])
            up = wait_for(
                f"{base}/readyz",
                200,
                timeout=30,
                until=lambda b: bool(b["slack_app"]["connected"]),  # type: ignore[index]
            )
            assert up["slack_app"]["error"] is None  # type: ignore[index]
        finally:
            out = stop(proc)
    assert "Slack is not reachable" in out and "Slack connected after 2 attempts" in out
    assert slack.token not in out
