"""The /triage grammar: every subcommand, implied incidents, and what malformed or hostile
input gets (an Invalid naming the problem, never an exception)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from paytriage.detectors import REGISTRY
from paytriage.slack_app.commands import (
    Acknowledge,
    Help,
    Invalid,
    Postmortem,
    Resolve,
    Silence,
    Status,
    Summary,
    help_text,
    parse,
    strip_mention,
)

INC = "inc-3f9a1c2b7d4e"
DETECTORS = set(REGISTRY)


def p(text: str):  # type: ignore[no-untyped-def]
    return parse(text, DETECTORS)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", Help()),
        ("help", Help()),
        ("help silence", Help("silence")),
        ("?", Help()),
        ("status", Status()),
        ("  STATUS  ", Status()),
        ("summary", Summary(None)),
        (f"summary {INC}", Summary(INC)),
        (f"summary {INC.upper()}", Summary(INC)),
        ("ack", Acknowledge(None)),
        (f"acknowledge {INC}", Acknowledge(INC)),
        ("resolve", Resolve(None, "")),
        (f"resolve {INC}", Resolve(INC, "")),
        (f"resolve {INC} rolled back the deploy", Resolve(INC, "rolled back the deploy")),
        ("resolve rolled back", Resolve(None, "rolled back")),
        ("postmortem", Postmortem(None)),
        (f"postmortem {INC}", Postmortem(INC)),
    ],
)
def test_every_subcommand_parses(text: str, expected: object) -> None:
    assert p(text) == expected


def test_silence_forms() -> None:
    assert p(f"silence {INC} 1h PSP maintenance") == Silence(
        INC, None, {}, timedelta(hours=1), "PSP maintenance"
    )
    assert p(f"silence {INC} until-resolved") == Silence(INC, None, {}, None, "")
    assert p("silence 30m noisy") == Silence(None, None, {}, timedelta(minutes=30), "noisy")
    assert p("silence resolved") == Silence(None, None, {}, None, "")
    assert p("silence decline_spike psp=adyen country=BR 4h issuer outage") == Silence(
        None,
        "decline_spike",
        {"psp": "adyen", "country": "BR"},
        timedelta(hours=4),
        "issuer outage",
    )
    assert p("silence * psp=adyen 1h30m") == Silence(
        None, "*", {"psp": "adyen"}, timedelta(minutes=90), ""
    )
    assert p("silence webhook_lag 2d") == Silence(None, "webhook_lag", {}, timedelta(days=2), "")


@pytest.mark.parametrize(
    ("text", "verb", "problem"),
    [
        ("frobnicate", None, "unknown command 'frobnicate'"),
        ("status now", "status", "status takes no arguments"),
        ("summary inc-0123", "summary", "'inc-0123' is not an incident"),
        (f"summary {INC} {INC}", "summary", "at most one incident id"),
        ("ack 42", "ack", "'42' is not an incident"),
        ("resolve inc-zzzzzzzzzzzz", "resolve", "not an incident"),
        ("silence", "silence", "say for how long"),
        (f"silence {INC}", "silence", "say for how long"),
        (f"silence {INC} forever", "silence", "'forever' is not a duration"),
        ("silence 0s", "silence", "from 1 minute to 7 days"),
        ("silence 30d", "silence", "from 1 minute to 7 days"),
        ("silence decline-spike 1h", "silence", "did you mean decline_spike?"),
        ("silence psp=adyen 1h", "silence", "label filters follow a detector"),
        (f"silence {INC} psp=adyen 1h", "silence", "label filters go with a detector"),
        ("silence decline_spike until-resolved", "silence", "until-resolved needs an incident"),
        ("silence * 1h", "silence", "needs at least one label"),
        ("silence decline_spike psp=a psp=b 1h", "silence", "label psp is given twice"),
        ("silence decline_spike 9psp=a 1h", "silence", "'9psp' is not a label name"),
    ],
)
def test_malformed_input_names_the_problem(text: str, verb: str | None, problem: str) -> None:
    cmd = p(text)
    assert isinstance(cmd, Invalid)
    assert cmd.verb == verb
    assert problem in cmd.problem


@pytest.mark.parametrize(
    "text",
    [
        'silence decline_spike psp="x" or 1 1h',
        "silence decline_spike psp=x' 1h",
        "silence decline_spike psp=stripe;drop 1h",
        'silence decline_spike psp=stripe",country!="x 1h',
        "silence decline_spike psp=stripe} 1h",
        "silence decline_spike psp=<!channel> 1h",
        "silence decline_spike psp=&lt;script&gt; 1h",
        "summary inc-3f9a1c2b7d4e' OR '1'='1",
        "ack inc-3f9a1c2b7d4e;DROP",
        "summary <!channel>",
        "ack <@U0ONCALL01>",
        "silence * psp=.* 1h",
    ],
)
def test_injection_attempts_are_refused(text: str) -> None:
    assert isinstance(p(text), Invalid)


def test_slack_markup_in_free_text_becomes_plain() -> None:
    cmd = p(f"resolve {INC} fixed, thanks <@U0ONCALL01|ana> &amp; <!channel> <https://x.io|PR>")
    assert cmd == Resolve(INC, "fixed, thanks @ana & @channel PR")
    assert p("<!here>") == Invalid("unknown command '@here'")


def test_long_notes_are_cut_and_huge_input_refused() -> None:
    cmd = p(f"resolve {INC} " + "x" * 2000)
    assert isinstance(cmd, Resolve) and len(cmd.note) == 500 and cmd.note.endswith("…")
    huge = p("status " + "x" * 5000)
    assert isinstance(huge, Invalid) and "characters" in huge.problem


def test_a_mention_s_text_loses_the_bot_mention() -> None:
    assert strip_mention("<@U0PAYBOT01> ack") == "ack"
    assert strip_mention("<@U0PAYBOT01|paytriage>   summary inc-x") == "summary inc-x"
    assert strip_mention("status <@U0PAYBOT01>") == "status <@U0PAYBOT01>"
    assert p(strip_mention("<@U0PAYBOT01>")) == Help()


def test_help_text_is_short_escaped_and_names_the_problem() -> None:
    full = help_text("/triage")
    for verb in ("status", "summary", "silence", "ack", "resolve", "postmortem"):
        assert f"/triage {verb}" in full
    one = help_text("/oncall", "unknown command '<!channel>'", "silence")
    assert one.startswith(":warning: unknown command '&lt;!channel&gt;'.")
    assert "`/oncall silence [INC-…" in one and "/oncall status" not in one
    assert "<!channel>" not in one
