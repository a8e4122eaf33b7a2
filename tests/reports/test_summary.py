"""The incident commander's summary, from a real (SQLite) store and a thread as Slack's
conversations.replies returns it."""

from __future__ import annotations

import json
from pathlib import Path

from paytriage.detection.run import Event
from paytriage.domain.lifecycle import Action, Silence
from paytriage.incidents.pipeline import IncidentPipeline
from paytriage.incidents.runbooks import load_runbooks
from paytriage.reports.summary import build_summary
from paytriage.store import Store
from tests.support.factories import T0, M
from tests.support.pipeline import Counting, finding

ROOT = Path(__file__).resolve().parents[2]
BOT = "U0PAYBOT01"


def opened(tmp_path: Path) -> tuple[Store, str]:
    store = Store.open(f"sqlite:///{tmp_path / 's.db'}")
    p = IncidentPipeline(
        store=store,
        gatherer=Counting(),
        runbooks=load_runbooks(ROOT / "runbooks"),
        correlation_window=15 * M,
        reopen_within=120 * M,
    )
    f = finding("decline_spike", psp="stripe")
    [inc_id] = p.step([Event("raised", f, T0)], [f], T0).ids("opened")
    return store, inc_id


def thread(*messages: tuple[str, str, int]) -> list[dict[str, object]]:
    root = {"ts": f"{T0.timestamp():.6f}", "user": BOT, "bot_id": "B1", "text": "root"}
    return [root] + [
        {"ts": f"{(T0 + m * M).timestamp():.6f}", "user": u, "text": t} for u, t, m in messages
    ]


def test_the_summary_tells_state_people_timeline_and_next_steps(tmp_path: Path) -> None:
    store, inc_id = opened(tmp_path)
    with store.begin() as tx:
        tx.act(inc_id, Action.acknowledge, "slack:U0ALICE42", T0 + 4 * M)
    store.add_silence(
        Silence(
            "s1",
            "decline_spike",
            {"psp": "stripe"},
            "stripe confirmed",
            "slack:U0BOB0007",
            T0 + 6 * M,
            T0 + 66 * M,
            inc_id,
        )
    )
    replies = thread(
        ("U0ALICE42", "looking at stripe dashboards <!channel> card 4111 1111 1111 1111", 5),
        (BOT, "bot noise", 6),
        ("U0CAROL99", "stripe status page confirms elevated errors", 9),
    )
    inc = store.incident(inc_id)
    assert inc is not None
    s = build_summary(
        inc, store.timeline(inc_id), store.audit_log(inc_id), replies, T0 + 20 * M, bot_user=BOT
    )
    body = json.dumps(s.block_dicts(), ensure_ascii=False)
    assert "acknowledged for 23 min" in body  # onset T0-3 min to now
    assert "*Acknowledged:* <@U0ALICE42>" in body
    assert "• 09:04 UTC acknowledge by <@U0ALICE42>" in body
    assert "silence by <@U0BOB0007>: stripe confirmed" in body
    assert "<@U0CAROL99> wrote: “stripe status page confirms elevated errors”" in body
    assert "bot noise" not in body
    assert "<!channel>" not in body and "&lt;!channel&gt;" in body
    assert "4111 1111 1111 1111" not in body
    assert "*Involved:* <@U0ALICE42>, <@U0BOB0007>, <@U0CAROL99>" in body
    assert "*Next steps*" in body and "1. " in body  # the psp-outage runbook's steps
    # The timeline is in time order.
    lines = [ln for ln in json.loads(body)[4]["text"]["text"].splitlines() if ln.startswith("•")]
    assert lines == sorted(lines)


def test_unknowns_are_said_not_invented(tmp_path: Path) -> None:
    store, inc_id = opened(tmp_path)
    inc = store.incident(inc_id)
    assert inc is not None
    s = build_summary(inc, [], [], [], T0 + 5 * M)
    body = json.dumps(s.block_dicts(), ensure_ascii=False)
    assert "Impact: unknown" in body and "not yet" in body and "nobody yet" in body
