"""Property-based tests (hypothesis) over what comes from outside: slash-command text, data
shown in Slack, text through the redactor, hostile numbers in findings. No crash, clear
answers, no unescaped mrkdwn, no secret left."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from paytriage.core.redact import is_card_number, redact
from paytriage.domain.findings import Finding, Severity
from paytriage.notify.slack.render import mrkdwn
from paytriage.notify.slack.text import cut, safe
from paytriage.slack_app.commands import Invalid, help_text, parse
from paytriage.store.store import dumps, finding_from_dict, finding_to_dict

DETECTORS = ("decline_spike", "webhook_lag", "refund_sla", "capture_failures", "traffic_drop")
MENTION = re.compile(r"<[!@#]|<https?:")
text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), max_size=400
) | st.sampled_from(
    [
        'silence decline_spike psp="x" or 1 1h <!channel>',
        "ack inc-' OR '1'='1",
        "summary inc-00000000000g",
        "silence * 1h",
        "resolve inc-0123456789ab <https://evil.example|click here>",
        "silence inc-0123456789ab 99999d",
        "\u202e\u0000 ack",
    ]
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(text)
def test_any_command_text_parses_to_a_command_or_a_clear_problem(t: str) -> None:
    cmd = parse(t, DETECTORS)  # never raises
    if isinstance(cmd, Invalid):
        assert cmd.problem.strip()
        shown = help_text("/triage", cmd.problem, cmd.verb)
        assert not MENTION.search(shown), shown  # the user's text is escaped in the answer


@settings(max_examples=300)
@given(text)
def test_data_in_mrkdwn_can_never_mention_or_link(t: str) -> None:
    for shown in (mrkdwn(t), safe(t), safe(t, 50)):
        assert "<" not in shown and ">" not in shown
        assert re.sub(r"&(amp|lt|gt);", "", shown).count("&") == 0


@settings(max_examples=200)
@given(text, st.integers(min_value=8, max_value=200))
def test_cut_respects_the_limit_and_never_splits_an_entity(t: str, limit: int) -> None:
    out = cut(safe(t), limit)
    assert len(out) <= limit
    assert not re.search(r"&(a|am|amp|l|lt|g|gt)?$", out.removesuffix("… (cut)"))


cards = st.sampled_from(
    [
        "4111111111111111",
        "5555555555554444",
        "378282246310005",
        "6011111111111117",
        "4012888888881881",
    ]
)
seps = st.sampled_from(["", " ", "-"])


@settings(max_examples=300)
@given(text, cards, seps, text)
def test_a_card_number_anywhere_in_text_never_survives_redaction(
    before: str, card: str, sep: str, after: str
) -> None:
    groups = [card[i : i + 4] for i in range(0, len(card), 4)]
    out = redact(f"{before} {sep.join(groups)} {after}")
    digits = re.sub(r"\D", "", out)
    assert card not in digits or card in re.sub(r"\D", "", before + after)
    assert redact(out) == out  # idempotent


@settings(max_examples=200)
@given(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(allow_nan=True, allow_infinity=True),
    st.dictionaries(st.text(max_size=20), st.text(max_size=50), max_size=4),
)
def test_hostile_numbers_and_labels_round_trip_through_the_store_format(
    observed: float, expected: float, dims: dict[str, str]
) -> None:
    f = Finding(
        "decline_spike",
        Severity.error,
        dims,
        "t",
        observed,
        expected,
        (expected, observed),
        None,
        datetime(2026, 11, 16, tzinfo=UTC),
    )
    stored = finding_to_dict(f)
    dumps(stored)  # JSON-safe: NaN and Inf become null
    back = finding_from_dict(stored)
    for a, b in ((back.observed, observed), (back.expected, expected)):
        assert (math.isnan(a) and not math.isfinite(b)) or a == b


def test_the_card_check_itself_is_luhn_and_prefix_aware() -> None:
    assert is_card_number("4111111111111111") and not is_card_number("4111111111111112")


# -- configuration files ----------------------------------------------------------------------

_SECTIONS = {
    "sources": ["prometheus", "opensearch", "down_after"],
    "detectors": ["decline_spike", "webhook_lag", "refund_sla", "traffic_drop", "anomaly"],
    "slack": ["enabled", "mode", "default_channel", "routes", "permissions", "command"],
    "pagerduty": ["enabled", "routing_key", "min_severity"],
    "incidents": ["correlation_window", "maintenance", "reopen_within"],
    "replicas": ["lease_ttl", "renew_every"],
    "store": ["url", "password"],
    "server": ["host", "port"],
}
_LEAF = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**12), max_value=10**12)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(["5m", "-1s", "0s", "1e9h", "${UNSET_VAR}", "${HOME:-x}", "abc", "[", "{"])
)
_VALUE = st.recursive(
    _LEAF,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=3)
    ),
    max_leaves=10,
)


@st.composite
def _config(draw: st.DrawFn) -> object:
    doc: dict[str, object] = {}
    for section in draw(st.lists(st.sampled_from(sorted(_SECTIONS)), max_size=4, unique=True)):
        keys = draw(st.lists(st.sampled_from(_SECTIONS[section]) | st.text(max_size=8), max_size=3))
        doc[section] = draw(st.fixed_dictionaries(dict.fromkeys(keys, _VALUE)) | _VALUE)
    return doc


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_config() | _VALUE)
@example({"replicas": {"lease_ttl": 8.64e13}})  # found by hypothesis: timedelta overflowed
@example({"sources": {"down_after": float("nan")}, "server": {"port": 10**30}})
def test_any_configuration_loads_or_names_what_is_wrong(doc: object) -> None:
    import yaml

    from paytriage.config import ConfigError, Settings
    from paytriage.config.loader import parse_settings

    text = yaml.safe_dump(doc, allow_unicode=True)
    error: ConfigError | None = None
    try:
        s = parse_settings(text, "cfg.yaml", env={}, secrets_for=())
    except ConfigError as exc:  # anything else escapes and fails the test
        error = exc
    if error is None:
        assert isinstance(s, Settings)
        return
    assert error.issues, text
    for issue in error.issues:  # each says where and what, in words
        assert issue.message.strip(), text
        assert "Traceback" not in issue.message
    assert "cfg.yaml" in str(error)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_text_as_a_config_file_loads_or_says_why(text: str) -> None:
    from paytriage.config import ConfigError
    from paytriage.config.loader import parse_settings

    error: ConfigError | None = None
    try:
        parse_settings(text, "cfg.yaml", env={}, secrets_for=())
    except ConfigError as exc:  # anything else escapes and fails the test
        error = exc
    assert error is None or (error.issues and all(i.message.strip() for i in error.issues))
