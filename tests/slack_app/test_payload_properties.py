"""Property-based tests (hypothesis) over what Slack delivers to the app: button payloads,
modal submissions, mentions and slash commands of any shape (missing keys, wrong types,
huge or hostile text). The handlers never crash or apologise for an internal error, answer
through calls the local Slack Web API server finds valid against Slack's spec, and never let
data mention a channel or forge a link."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from slack_sdk import WebClient

from paytriage.app.compose import slack_app_options
from paytriage.config import Settings
from paytriage.domain.incidents import Grouper
from paytriage.notify.slack import ids
from paytriage.slack_app.app import _OOPS, Handlers
from paytriage.slack_app.operations import Operations
from paytriage.slack_app.permissions import Permissions
from paytriage.store import Store
from tests.support.factories import T0
from tests.support.factories import stored_finding as finding
from tests.support.slack_api import SlackApiServer

HOSTILE = st.sampled_from(
    [
        "<!channel>",
        "<!here|here>",
        "<https://evil.example|click>",
        "&lt;!everyone&gt;",
        "inc-0123456789ab",
        "4111 1111 1111 1111",
        "\u202e\u0000",
        "x" * 5000,
        "",
    ]
)
TEXT = st.text(max_size=60) | HOSTILE
KEYS = st.sampled_from(
    [
        "actions", "action_id", "value", "user", "id", "channel", "container", "channel_id",
        "message_ts", "thread_ts", "message", "ts", "trigger_id", "view", "private_metadata",
        "state", "values", "reason", "selected_option", "text", "bot_id", "user_id",
    ]
)  # fmt: skip
LEAF = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | TEXT
ANY = st.recursive(
    LEAF,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS | TEXT, inner, max_size=5),
    max_leaves=25,
)


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Handlers, SlackApiServer, str]]:
    tmp = tmp_path_factory.mktemp("props")
    store = Store.open(f"sqlite:///{tmp / 'p.db'}")
    inc = Grouper(timedelta(minutes=10), timedelta(minutes=30)).raised(finding(), T0)
    with store.begin() as tx:
        tx.save_incident(inc, T0)
    cfg = Settings.model_validate({"slack": {"enabled": False}})
    with SlackApiServer() as slack:
        client = WebClient(token=slack.token, base_url=slack.base_url)
        perms = Permissions(cfg.slack.permissions, lambda group: [])
        clock = lambda: datetime(2026, 11, 16, 9, 30, tzinfo=UTC)  # noqa: E731
        ops = Operations(slack_app_options(cfg), store, perms, clock)
        yield Handlers(slack_app_options(cfg), store, ops, client, None, clock), slack, inc.id
    store.close()


def _button(incident: str) -> st.SearchStrategy[dict[str, Any]]:
    """Almost-valid button payloads: a real action id, any value, odd containers."""
    action = st.fixed_dictionaries(
        {
            "action_id": st.sampled_from([ids.ACK, ids.RESOLVE, ids.ESCALATE, ids.SILENCE,
                                          ids.POSTMORTEM, "nope"]),
            "value": st.just(incident) | TEXT,
        },
        optional={"selected_option": ANY},
    )  # fmt: skip
    return st.fixed_dictionaries(
        {"actions": st.lists(action, min_size=1, max_size=2)},
        optional={"user": ANY, "channel": ANY, "container": ANY, "message": ANY,
                  "trigger_id": TEXT},
    )  # fmt: skip


def _modal(incident: str) -> st.SearchStrategy[dict[str, Any]]:
    meta = (
        st.fixed_dictionaries(
            {}, optional={"incident": st.just(incident) | TEXT, "option": TEXT, "channel": ANY}
        ).map(json.dumps)
        | TEXT
    )
    return st.fixed_dictionaries(
        {"view": st.fixed_dictionaries({"private_metadata": meta}, optional={"state": ANY})},
        optional={"user": ANY},
    )


MENTION = re.compile(r"<!(channel|here|everyone)|<https://evil")


def _texts(slack: SlackApiServer, since: int) -> list[str]:
    out = []
    for call in slack.calls[since:]:
        for key in ("text", "blocks"):
            if call.params.get(key) is not None:
                out.append(json.dumps(call.params[key]))
    return out


def _check(slack: SlackApiServer, since: int, responses: list[dict[str, Any]]) -> None:
    sent = _texts(slack, since) + [json.dumps(r) for r in responses]
    assert not any(_OOPS in s for s in sent), sent  # garbage is not an internal error
    assert not any(MENTION.search(s) for s in sent), sent
    assert slack.spec_violations == []


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_button_payload_is_handled_without_crash_or_unescaped_data(
    world: tuple[Handlers, SlackApiServer, str], data: st.DataObject
) -> None:
    h, slack, incident = world
    body = data.draw(_button(incident) | st.dictionaries(KEYS, ANY, max_size=6))
    since = len(slack.calls)
    h.on_action(body)
    _check(slack, since, [])


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_modal_submission_is_handled_without_crash_or_unescaped_data(
    world: tuple[Handlers, SlackApiServer, str], data: st.DataObject
) -> None:
    h, slack, incident = world
    body = data.draw(_modal(incident) | st.dictionaries(KEYS, ANY, max_size=6))
    since = len(slack.calls)
    h.on_silence_submit(body)
    _check(slack, since, [])


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=st.lists(TEXT | st.sampled_from(["ack", "silence", "summary", "status", "1h"]),
                  max_size=5).map(" ".join),
    extra=st.dictionaries(KEYS, ANY, max_size=4),
)  # fmt: skip
@example(text="ack", extra={"thread_ts": [None]})  # a thread that is not a string (CI found it)
@example(text="status", extra={"channel_id": 7, "ts": {"x": 1}})
def test_any_mention_or_command_is_answered_without_crash_or_unescaped_data(
    world: tuple[Handlers, SlackApiServer, str], text: str, extra: dict[str, Any]
) -> None:
    h, slack, _ = world
    since = len(slack.calls)
    h.on_mention({**extra, "text": f"<@U0PAYBOT01> {text}", "user": "U0ANA00001",
                  "channel": "C0PAYMENTS"})  # fmt: skip
    responses: list[dict[str, Any]] = []
    h.run_command(
        {**extra, "text": text, "user_id": "U0ANA00001", "channel_id": "C0PAYMENTS",
         "response_url": "https://hooks.slack.com/x"},
        lambda **kw: responses.append(kw),
    )  # fmt: skip
    _check(slack, since, responses)
