"""A configuration file is something a person can mistype or be sent: each of these was
accepted, hung or crashed the bot before (issue 19, findings 6, 8 and 9)."""

from __future__ import annotations

from pathlib import Path

import pytest

from paytriage.config import ConfigError, load_settings, parse_settings
from paytriage.core.files import MAX_TEXT_BYTES
from paytriage.incidents.runbooks import RunbookError, lint, load_runbooks

LAUGHS = "\n".join(
    [f"a0: &a0 [{', '.join(['lol'] * 9)}]"]
    + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
)


def problems(text: str, env: dict[str, str] | None = None) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        parse_settings(text, "t.yaml", env=env or {})
    return {i.path: i.message for i in info.value.issues}


def test_a_billion_laughs_is_refused_before_it_is_expanded() -> None:
    assert len(LAUGHS.splitlines()) == 9  # 9**9 strings once every alias is expanded
    found = problems(LAUGHS)
    assert "aliases expand" in found[""]


def test_a_recursive_alias_is_named_not_a_recursion_error() -> None:
    found = problems("incidents: &x\n  maintenance: [*x]\n")
    assert "recursive alias" in found[""]


def test_aliases_within_bounds_still_work() -> None:
    text = (
        "slack:\n  enabled: false\n  routes:\n"
        "  - &r {channel: '#pay', match: {detector: decline_spike}}\n"
        "  - *r\n"
    )
    assert len(parse_settings(text, env={}).slack.routes) == 2


def test_an_empty_file_is_an_error() -> None:
    assert "empty" in problems("")[""]
    assert "empty" in problems("# only a comment\n")[""]


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan"])
def test_an_infinite_average_ticket_is_refused(value: str) -> None:
    assert "incidents.average_ticket" in problems(f"incidents:\n  average_ticket: {value}\n")


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("evidence:\n  refresh_every: 0s\n", "evidence.refresh_every"),
        ("sources:\n  down_after: 0s\n", "sources.down_after"),
        ("incidents:\n  correlation_window: 0m\n", "incidents.correlation_window"),
        ("detectors:\n  decline_spike:\n    window: 0s\n", "detectors.decline_spike.window"),
    ],
)
def test_a_zero_period_or_window_is_refused(text: str, key: str) -> None:
    assert problems(text)[key] == "must be longer than 0s"


def test_zero_is_still_allowed_where_it_means_never_or_at_once() -> None:
    s = parse_settings("incidents:\n  reopen_within: 0s\n", env={})
    assert s.incidents.reopen_within.total_seconds() == 0


@pytest.mark.parametrize("blank", ["", "   ", "\n"])
def test_a_blank_token_is_a_missing_secret(blank: str) -> None:
    text = "pagerduty:\n  enabled: true\n  routing_key: ${PD_KEY}\n"
    assert "PD_KEY is not set" in problems(text, env={"PD_KEY": blank})["pagerduty.routing_key"]


def test_a_secret_read_from_a_file_loses_its_trailing_newline() -> None:
    text = "pagerduty:\n  enabled: true\n  routing_key: ${PD_KEY}\n"
    s = parse_settings(text, env={"PD_KEY": "R0UTINGKEY\n"})
    assert s.pagerduty.routing_key is not None
    assert s.pagerduty.routing_key.reveal() == "R0UTINGKEY"


def test_a_mistyped_dimension_label_is_named_with_the_label_meant() -> None:
    text = (
        "slack:\n  enabled: false\n  routes:\n"
        "  - channel: '#de'\n    match: {dimensions: {contry: DE}}\n"
        "incidents:\n  maintenance:\n"
        "  - {name: x, start: 2026-01-01T00:00:00Z, end: 2026-01-02T00:00:00Z,"
        " dimensions: {pssp: adyen}}\n"
        "evidence:\n  breakdown_by: [psp, metod]\n"
    )
    found = problems(text)
    assert "'country'" in found["slack.routes[0].match.dimensions"]
    assert "'psp'" in found["incidents.maintenance[0].dimensions"]
    assert "'method'" in found["evidence.breakdown_by"]


def test_a_teams_own_label_is_taken_as_given() -> None:
    text = (
        "slack:\n  enabled: false\n  routes:\n"
        "  - channel: '#m'\n    match: {dimensions: {merchant: acme}}\n"
    )
    assert parse_settings(text, env={}).slack.routes[0].match.dimensions == {"merchant": "acme"}


def test_missing_secrets_come_with_every_other_problem() -> None:
    text = (
        "slack:\n  enabled: true\n  bot_token: ${SLACK_BOT_TOKEN}\n  app_token: ${SLACK_APP_TOKEN}\n"
        "  comand: /triage\n"
        "pagerduty:\n  enabled: true\n  routing_key: ${PD_KEY}\n"
    )
    found = problems(text)
    assert set(found) == {
        "slack.comand",
        "slack.bot_token",
        "slack.app_token",
        "pagerduty.routing_key",
    }
    assert "did you mean 'command'" in found["slack.comand"]


def test_a_disabled_sections_secrets_are_not_asked_for_even_with_other_problems() -> None:
    text = "slack:\n  enabled: false\n  bot_token: ${SLACK_BOT_TOKEN}\nbogus: 1\n"
    assert set(problems(text)) == {"bogus"}


def test_a_database_password_from_the_environment_is_not_printed() -> None:
    env = {"DATABASE_URL": "mysql://pay:hunter2-pw@db.internal:3306/payments"}
    with pytest.raises(ConfigError) as info:
        parse_settings("store:\n  url: ${DATABASE_URL}\n", "t.yaml", env=env)
    assert "store.url" in str(info.value)
    assert "hunter2-pw" not in str(info.value)


def test_a_binary_or_huge_config_file_is_named_not_a_traceback(tmp_path: Path) -> None:
    binary = tmp_path / "c.yaml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
    with pytest.raises(ConfigError) as info:
        load_settings(binary, env={})
    assert "not UTF-8" in str(info.value) and str(binary) in str(info.value)
    huge = tmp_path / "h.yaml"
    huge.write_text("# " + "x" * MAX_TEXT_BYTES + "\n")
    with pytest.raises(ConfigError, match="larger than"):
        load_settings(huge, env={})
    with pytest.raises(ConfigError, match="is a directory"):
        load_settings(tmp_path, env={})


def test_a_hostile_runbook_is_a_runbook_error(tmp_path: Path) -> None:
    (tmp_path / "laughs.md").write_text(f"---\n{LAUGHS}\n---\n# Laughs\n")
    with pytest.raises(RunbookError, match="aliases expand"):
        load_runbooks(tmp_path)
    (tmp_path / "laughs.md").unlink()
    (tmp_path / "binary.md").write_bytes(b"---\xff\xfe\x00---")
    with pytest.raises(RunbookError, match="not UTF-8"):
        load_runbooks(tmp_path)
    assert any("not UTF-8" in p.message for p in lint(tmp_path, {}))
