"""The local Slack Web API (tests/support/slack_api.py), driven by the real slack_sdk client."""

from __future__ import annotations

import json
import re
import time
import types
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from urllib.error import URLError

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import FixedValueRetryIntervalCalculator, builtin_handlers
from slack_sdk.http_retry.builtin_handlers import (
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from tests.support.slack_api import UPLOAD, SlackApiServer

CHANNEL = "#payments-oncall"


@pytest.fixture
def server() -> Iterator[SlackApiServer]:
    with SlackApiServer(missing_channels=["#archived-war-room"]) as s:
        yield s


@pytest.fixture
def client(server: SlackApiServer) -> WebClient:
    return WebClient(token=server.token, base_url=server.base_url, timeout=5)


def _error(excinfo: pytest.ExceptionInfo[SlackApiError]) -> tuple[int, dict[str, Any]]:
    return excinfo.value.response.status_code, dict(excinfo.value.response.data)


def _raw(server: SlackApiServer, method: str, **kw: Any) -> dict[str, Any]:
    """A plain urllib request (no slack_sdk), to control headers and encodings."""
    req = urllib.request.Request(f"{server.base_url}{method}", **kw)
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


# --- messages and threads -------------------------------------------------------------------


def test_post_update_reply_then_replies_returns_root_and_reply(
    server: SlackApiServer, client: WebClient
) -> None:
    posted = client.chat_postMessage(channel=CHANNEL, text="Stripe auth rate down 40%")
    channel, root_ts = posted["channel"], posted["ts"]
    assert channel == server.channel_id(CHANNEL)

    updated = client.chat_update(channel=channel, ts=root_ts, text="Stripe auth rate down 55%")
    assert updated["ts"] == root_ts
    reply = client.chat_postMessage(channel=channel, thread_ts=root_ts, text="runbook: psp_outage")

    thread = client.conversations_replies(channel=channel, ts=root_ts)["messages"]
    assert [m["text"] for m in thread] == ["Stripe auth rate down 55%", "runbook: psp_outage"]
    assert [m["ts"] for m in thread] == [root_ts, reply["ts"]]
    assert thread[0]["reply_count"] == 1 and thread[0]["latest_reply"] == reply["ts"]
    assert thread[1]["thread_ts"] == root_ts
    # The edit happened in place: one top-level message, the reply only in the thread.
    history = client.conversations_history(channel=channel)["messages"]
    assert [m["ts"] for m in history] == [root_ts]
    assert history[0]["edited"]["user"] == "U0PAYBOT01"
    assert [m["text"] for m in server.messages(CHANNEL)] == ["Stripe auth rate down 55%"]
    assert len(server.calls_to("chat.postMessage")) == 2
    assert all(c.token == server.token for c in server.calls)
    assert server.spec_violations == []


def test_ts_are_unique_and_increasing_and_channel_ids_stable(
    server: SlackApiServer, client: WebClient
) -> None:
    results = [client.chat_postMessage(channel=CHANNEL, text=f"m{i}") for i in range(5)]
    stamps = [r["ts"] for r in results]
    assert all(re.fullmatch(r"\d{10}\.\d{6}", ts) for ts in stamps)
    assert [Decimal(t) for t in stamps] == sorted({Decimal(t) for t in stamps})
    ids = {r["channel"] for r in results}
    assert ids == {server.channel_id("payments-oncall")}
    assert re.fullmatch(r"C[A-Z0-9]{8,}", ids.pop())
    other_channel = client.chat_postMessage(channel="#payments-alerts", text="x")["channel"]
    assert other_channel == server.channel_id("#payments-alerts") != server.channel_id(CHANNEL)
    # Same name, same id in another server: ids are stable across runs.
    with SlackApiServer() as other:
        assert other.channel_id(CHANNEL) == server.channel_id(CHANNEL)


def test_update_of_unknown_ts_is_message_not_found(client: WebClient) -> None:
    channel = client.chat_postMessage(channel=CHANNEL, text="x")["channel"]
    with pytest.raises(SlackApiError) as exc:
        client.chat_update(channel=channel, ts="1600000000.000100", text="y")
    assert _error(exc) == (200, {"ok": False, "error": "message_not_found"})


def test_missing_channel_and_names_where_slack_wants_ids(
    server: SlackApiServer, client: WebClient
) -> None:
    with pytest.raises(SlackApiError) as exc:
        client.chat_postMessage(channel="#archived-war-room", text="x")
    assert _error(exc)[1]["error"] == "channel_not_found"
    client.chat_postMessage(channel=CHANNEL, text="x")
    with pytest.raises(SlackApiError) as exc:  # conversations.* take ids, not names
        client.conversations_history(channel=CHANNEL)
    assert _error(exc)[1]["error"] == "channel_not_found"
    assert len(client.conversations_history(channel=server.channel_id(CHANNEL))["messages"]) == 1


def test_form_encoded_blocks_are_decoded_and_stored(
    server: SlackApiServer, client: WebClient
) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*P1* Stripe"}}]
    client.api_call(
        "chat.postMessage", data={"channel": CHANNEL, "text": "P1", "blocks": json.dumps(blocks)}
    )
    (call,) = server.calls_to("chat.postMessage")
    assert call.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert call.params["blocks"] == blocks
    assert server.messages(CHANNEL)[0]["blocks"] == blocks


def test_ephemeral_goes_to_the_user_not_the_channel(
    server: SlackApiServer, client: WebClient
) -> None:
    resp = client.chat_postEphemeral(channel=CHANNEL, user="U0ONCALL01", text="only you")
    assert re.fullmatch(r"\d{10}\.\d{6}", resp["message_ts"])
    assert server.messages(CHANNEL) == []
    (eph,) = server.ephemeral
    assert (eph["user"], eph["message"]["text"], eph["channel"]) == (
        "U0ONCALL01",
        "only you",
        server.channel_id(CHANNEL),
    )


# --- files ----------------------------------------------------------------------------------


def test_files_upload_v2_lands_in_the_thread(server: SlackApiServer, client: WebClient) -> None:
    root = client.chat_postMessage(channel=CHANNEL, text="incident")
    channel, root_ts = root["channel"], root["ts"]
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))

    resp = client.files_upload_v2(
        channel=channel, thread_ts=root_ts, file=png, filename="auth_rate.png", title="Auth rate"
    )

    file_id = resp["file"]["id"]
    stored = server.files[file_id]
    assert stored.content == png and stored.filename == "auth_rate.png"
    assert stored.title == "Auth rate"
    assert [(s.channel, s.thread_ts) for s in stored.shares] == [(channel, root_ts)]
    assert [c.method for c in server.calls][-3:] == [
        "files.getUploadURLExternal",
        UPLOAD,
        "files.completeUploadExternal",
    ]
    (get_url,) = server.calls_to("files.getUploadURLExternal")
    assert get_url.params == {"filename": "auth_rate.png", "length": str(len(png))}
    thread = client.conversations_replies(channel=channel, ts=root_ts)["messages"]
    assert len(thread) == 2 and thread[1]["files"][0]["id"] == file_id
    assert server.messages(CHANNEL)[0]["reply_count"] == 1  # a reply, not a channel message
    assert server.spec_violations == []


def test_complete_upload_of_a_file_never_uploaded_is_refused(client: WebClient) -> None:
    url = client.files_getUploadURLExternal(filename="a.txt", length=3)
    assert url["upload_url"].startswith(client.base_url.removesuffix("api/"))
    with pytest.raises(SlackApiError) as exc:
        client.files_completeUploadExternal(files=[{"id": url["file_id"], "title": "a"}])
    assert _error(exc)[1]["error"] == "file_not_found"


# --- faults ---------------------------------------------------------------------------------


def test_rate_limit_is_surfaced_with_retry_after(server: SlackApiServer, client: WebClient) -> None:
    server.fail_next("chat.postMessage", error="ratelimited", status=429, retry_after=7)
    with pytest.raises(SlackApiError) as exc:
        client.chat_postMessage(channel=CHANNEL, text="P1")
    assert _error(exc) == (429, {"ok": False, "error": "ratelimited"})
    assert exc.value.response.headers["Retry-After"] == "7"
    assert server.messages(CHANNEL) == []
    client.chat_postMessage(channel=CHANNEL, text="P1")  # the fault was used up
    assert len(server.messages(CHANNEL)) == 1


def test_rate_limit_retry_handler_delivers_exactly_once(
    server: SlackApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []  # the handler sleeps Retry-After + jitter: record instead
    monkeypatch.setattr(builtin_handlers, "time", types.SimpleNamespace(sleep=slept.append))
    client = WebClient(
        token=server.token,
        base_url=server.base_url,
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)],
    )
    server.fail_next("chat.postMessage", retry_after=1)

    resp = client.chat_postMessage(channel=CHANNEL, text="P1 Stripe")

    assert resp["ok"] is True
    assert len(server.calls_to("chat.postMessage")) == 2
    assert [m["text"] for m in server.messages(CHANNEL)] == ["P1 Stripe"]
    assert len(slept) == 1 and slept[0] >= 1


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_queued_per_method(
    server: SlackApiServer, client: WebClient, status: int
) -> None:
    server.fail_next("chat.postMessage", status=status, count=2)
    for _ in range(2):
        with pytest.raises(SlackApiError) as exc:
            client.chat_postMessage(channel=CHANNEL, text="x")
        assert exc.value.response.status_code == status
    client.auth_test()  # faults are per method
    retrying = WebClient(
        token=server.token,
        base_url=server.base_url,
        retry_handlers=[ServerErrorRetryHandler(1, FixedValueRetryIntervalCalculator(0.01))],
    )
    server.fail_next("chat.postMessage", status=status)
    assert retrying.chat_postMessage(channel=CHANNEL, text="x")["ok"] is True
    assert len(server.messages(CHANNEL)) == 1


def test_delay_times_the_client_out_but_slack_still_posts(server: SlackApiServer) -> None:
    server.delay("chat.postMessage", 1.4, count=1)
    impatient = WebClient(token=server.token, base_url=server.base_url, timeout=1)
    start = time.monotonic()
    with pytest.raises((TimeoutError, URLError)):
        impatient.chat_postMessage(channel=CHANNEL, text="slow")
    assert time.monotonic() - start < 1.3
    deadline = time.monotonic() + 3
    while not server.messages(CHANNEL) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [m["text"] for m in server.messages(CHANNEL)] == ["slow"]
    impatient.chat_postMessage(channel=CHANNEL, text="fast")  # count=1: the next call is quick


def test_fault_for_a_misspelt_method_is_refused(server: SlackApiServer) -> None:
    with pytest.raises(ValueError, match=r"chat\.postMesage"):
        server.fail_next("chat.postMesage")


# --- validation against the spec and Slack's limits ------------------------------------------


def test_unknown_method(client: WebClient) -> None:
    with pytest.raises(SlackApiError) as exc:
        client.api_call("chat.postMessages", json={"channel": CHANNEL, "text": "x"})
    assert _error(exc)[1]["error"] == "unknown_method"


def test_missing_required_argument_is_invalid_arguments(
    server: SlackApiServer, client: WebClient
) -> None:
    with pytest.raises(SlackApiError) as exc:
        client.api_call("chat.postMessage", json={"text": "no channel"})
    status, body = _error(exc)
    assert (status, body["error"]) == (200, "invalid_arguments")
    assert body["response_metadata"]["messages"] == ["[ERROR] missing required field: channel"]
    # Required by Slack's current reference though optional in the 2021 spec.
    with pytest.raises(SlackApiError) as exc:
        client.api_call("conversations.replies", params={"channel": "C0123456789"})
    assert _error(exc)[1]["response_metadata"]["messages"] == ["[ERROR] missing required field: ts"]
    assert server.messages(CHANNEL) == []


def test_arguments_outside_the_spec_are_recorded(server: SlackApiServer, client: WebClient) -> None:
    client.chat_postMessage(channel=CHANNEL, text="x", colour="red")  # Slack ignores it
    client.api_call(
        "conversations.history", params={"channel": server.channel_id(CHANNEL), "limit": "all"}
    )
    assert server.spec_violations == [
        "chat.postMessage: argument 'colour' is not in the spec",
        "conversations.history: limit='all' is not a valid integer",
    ]


def test_what_slack_sdk_adds_itself_is_not_a_violation(server: SlackApiServer) -> None:
    client = WebClient(token=server.token, base_url=server.base_url, team_id="T0PAYTRIAGE")
    client.chat_postMessage(channel=CHANNEL, text="x", unfurl_links=False)
    client.users_info(user="U0PAYBOT01", include_locale=True)
    (call,) = server.calls_to("chat.postMessage")
    assert call.params["team_id"] == "T0PAYTRIAGE" and call.params["unfurl_links"] is False
    assert server.calls_to("users.info")[0].params["include_locale"] == "1"
    assert server.spec_violations == []


def test_auth(server: SlackApiServer) -> None:
    bad = WebClient(token="xoxb-revoked", base_url=server.base_url)
    with pytest.raises(SlackApiError) as exc:
        bad.chat_postMessage(channel=CHANNEL, text="x")
    assert _error(exc) == (200, {"ok": False, "error": "invalid_auth"})
    assert _raw(server, "auth.test", data=b"") == {"ok": False, "error": "not_authed"}
    # A token argument works in a form post or a query string, not inside a JSON body.
    form = f"token={server.token}".encode()
    assert _raw(server, "auth.test", data=form)["ok"] is True
    assert _raw(server, f"auth.test?token={server.token}")["user_id"] == "U0PAYBOT01"
    json_body = json.dumps({"token": server.token}).encode()
    headers = {"Content-Type": "application/json"}
    assert _raw(server, "auth.test", data=json_body, headers=headers)["error"] == "not_authed"
    assert server.messages(CHANNEL) == []


def test_msg_too_long_above_40000_characters(server: SlackApiServer, client: WebClient) -> None:
    with pytest.raises(SlackApiError) as exc:
        client.chat_postMessage(channel=CHANNEL, text="x" * 40_001)
    assert _error(exc)[1]["error"] == "msg_too_long"
    client.chat_postMessage(channel=CHANNEL, text="x" * 40_000)
    assert len(server.messages(CHANNEL)) == 1


def test_invalid_blocks(server: SlackApiServer, client: WebClient) -> None:
    divider = {"type": "divider"}
    with pytest.raises(SlackApiError) as exc:
        client.chat_postMessage(channel=CHANNEL, text="x", blocks=[divider] * 51)
    assert _error(exc)[1]["error"] == "invalid_blocks"
    long_section = {"type": "section", "text": {"type": "mrkdwn", "text": "y" * 3001}}
    with pytest.raises(SlackApiError) as exc:
        client.chat_postMessage(channel=CHANNEL, text="x", blocks=[long_section])
    assert _error(exc)[1]["response_metadata"]["messages"] == [
        "[ERROR] must be less than 3001 characters [json-pointer:/blocks/0/text/text]"
    ]
    ok_section = {"type": "section", "text": {"type": "mrkdwn", "text": "y" * 3000}}
    client.chat_postMessage(channel=CHANNEL, text="x", blocks=[divider] * 49 + [ok_section])
    assert len(server.messages(CHANNEL)) == 1


# --- views, users, user groups --------------------------------------------------------------


def test_views_users_and_usergroups(server: SlackApiServer, client: WebClient) -> None:
    home = {
        "type": "home",
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "ok"}}],
    }
    first = client.views_publish(user_id="U0ONCALL01", view=home)["view"]
    assert server.home_views["U0ONCALL01"]["blocks"] == home["blocks"]
    with pytest.raises(SlackApiError) as exc:
        client.views_publish(user_id="U0ONCALL01", view=home, hash="stale")
    assert _error(exc)[1]["error"] == "hash_conflict"
    again = client.views_publish(user_id="U0ONCALL01", view=home, hash=first["hash"])["view"]
    assert again["id"] == first["id"] and again["hash"] != first["hash"]

    modal = {"type": "modal", "title": {"type": "plain_text", "text": "Ack"}, "blocks": []}
    client.views_open(trigger_id="123.456.abc", view=modal)
    assert server.opened_views[0]["trigger_id"] == "123.456.abc"
    with pytest.raises(SlackApiError) as exc:
        client.views_open(trigger_id="123.456.abc", view={"type": "modal", "blocks": []})
    assert _error(exc)[1]["error"] == "invalid_arguments"

    server.add_user("U0ONCALL01", "ana", real_name="Ana Oncall", email="ana@example.com")
    assert client.users_info(user="U0ONCALL01")["user"]["profile"]["email"] == "ana@example.com"
    with pytest.raises(SlackApiError) as exc:
        client.users_info(user="U0NOBODY01")
    assert _error(exc)[1]["error"] == "user_not_found"
    server.add_usergroup("S0PAYMENTS", ["U0ONCALL01", "U0ONCALL02"])
    assert client.usergroups_users_list(usergroup="S0PAYMENTS")["users"] == [
        "U0ONCALL01",
        "U0ONCALL02",
    ]
    with pytest.raises(SlackApiError) as exc:
        client.usergroups_users_list(usergroup="S0UNKNOWN")
    assert _error(exc)[1]["error"] == "no_such_subteam"
    assert server.spec_violations == []
