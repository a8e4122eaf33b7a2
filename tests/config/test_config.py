"""Configuration: typed models, key-path errors, durations, secrets from the environment."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from paytriage.config import DEFAULT_CONFIG, ConfigError, load_settings, parse_settings
from paytriage.core.types import Secret, format_duration, parse_duration

TOKENS = {"SLACK_BOT_TOKEN": "xoxb-test-1", "SLACK_APP_TOKEN": "xapp-test-1"}


def issues_of(text: str, env: dict[str, str] | None = None) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        parse_settings(text, "t.yaml", env=env if env is not None else {})
    return [(i.path, i.message) for i in info.value.issues]


def test_default_file_is_valid_for_the_reference_schema() -> None:
    s = load_settings(DEFAULT_CONFIG, env=TOKENS)
    assert s.slack.bot_token is not None and s.slack.bot_token.reveal() == "xoxb-test-1"
    assert s.detectors.decline_spike.dimensions == ["psp", "country", "method"]
    assert s.detectors.webhook_lag.slo_p95_seconds == 60
    assert s.detectors.refund_sla.objective == 0.95
    assert s.detectors.capture_failures.objective == 0.995
    assert "payment_authorizations_total" in s.detectors.decline_spike.queries.attempts


def test_env_defaults_and_overrides_in_plain_strings() -> None:
    text = "sources:\n  prometheus:\n    url: ${PROM:-http://127.0.0.1:9090}\n"
    assert parse_settings(text, env={}).sources.prometheus.url == "http://127.0.0.1:9090"
    s = parse_settings(text, env={"PROM": "https://thanos.example:10902/"})
    assert s.sources.prometheus.url == "https://thanos.example:10902"


def test_unknown_key_names_path_and_suggests() -> None:
    issues = issues_of("detectors:\n  decline_spike:\n    min_attempt: 10\n")
    assert issues == [
        (
            "detectors.decline_spike.min_attempt",
            "unknown key 'min_attempt' (did you mean 'min_attempts'?)",
        )
    ]


def test_unknown_detector_is_an_unknown_key() -> None:
    [(path, msg)] = issues_of("detectors:\n  decline_spikes: {}\n")
    assert path == "detectors.decline_spikes"
    assert "unknown key" in msg and "decline_spike" in msg


def test_wrong_type_names_path_and_value() -> None:
    [(path, msg)] = issues_of("detectors:\n  capture_failures:\n    min_attempts: lots\n")
    assert path == "detectors.capture_failures.min_attempts"
    assert msg.startswith("wrong type") and "'lots'" in msg


def test_bad_duration_names_path() -> None:
    [(path, msg)] = issues_of("incidents:\n  auto_resolve_after: half an hour\n")
    assert path == "incidents.auto_resolve_after"
    assert "bad duration 'half an hour'" in msg


def test_list_items_are_indexed_in_paths() -> None:
    text = "slack:\n  enabled: false\n  routes:\n    - channel: '#ok'\n    - channel: '#x'\n      match: {detector: 3m, severity: high}\n"
    [(path, msg)] = issues_of(text)
    assert path == "slack.routes[1].match.severity"
    assert "unknown key" in msg


def test_missing_secret_names_key_and_variable() -> None:
    text = "slack:\n  bot_token: ${SLACK_BOT_TOKEN}\n  app_token: ${SLACK_APP_TOKEN}\n"
    issues = issues_of(text, env={"SLACK_APP_TOKEN": "xapp-1"})
    assert issues == [
        (
            "slack.bot_token",
            "environment variable SLACK_BOT_TOKEN is not set (the secret is read from it)",
        )
    ]


def test_secret_of_a_disabled_section_may_be_unset() -> None:
    s = parse_settings("pagerduty:\n  enabled: false\n  routing_key: ${PD_KEY}\n", env={})
    assert s.pagerduty.routing_key is not None and not s.pagerduty.routing_key.is_set


def test_inline_secret_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings("pagerduty:\n  routing_key: R0UT1NGKEY-abc\n", env={})
    text = str(info.value)
    assert "pagerduty.routing_key" in text and "${NAME}" in text
    assert "R0UT1NGKEY" not in text


def test_secret_never_shows_its_value() -> None:
    s = parse_settings(
        "pagerduty:\n  enabled: true\n  routing_key: ${PD_KEY}\n", env={"PD_KEY": "supersecret-key"}
    )
    rk = s.pagerduty.routing_key
    assert rk is not None and rk.reveal() == "supersecret-key"
    assert "supersecret" not in repr(s) and "supersecret" not in str(rk)
    assert "supersecret" not in s.model_dump_json()


def test_enabled_slack_requires_mode_tokens() -> None:
    [(path, msg)] = issues_of("slack:\n  mode: http\n  bot_token: ${T}\n", env={"T": "xoxb-1"})
    assert path == "slack" and "signing_secret" in msg


def test_url_with_password_is_refused() -> None:
    [(path, msg)] = issues_of("store:\n  url: postgresql+psycopg://bot:hunter2@db/paytriage\n")
    assert path == "store.url" and "password" in msg and "hunter2" not in msg


def test_bad_label_name_in_dimensions() -> None:
    [(path, msg)] = issues_of("detectors:\n  decline_spike:\n    dimensions: [psp, 'country\"}']\n")
    assert path == "detectors.decline_spike.dimensions[1]"
    assert "label name" in msg


def test_several_problems_reported_together_with_lines() -> None:
    text = "timezone: Mars/Base\nserver:\n  port: 70000\n"
    with pytest.raises(ConfigError) as info:
        parse_settings(text, "t.yaml", env={})
    by_path = {i.path: i for i in info.value.issues}
    assert set(by_path) == {"timezone", "server.port"}
    assert by_path["server.port"].line == 3


def test_yaml_syntax_error_has_a_line() -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings("slack:\n  routes: [\n", "t.yaml", env={})
    [issue] = info.value.issues
    assert "not valid YAML" in issue.message and issue.line is not None


def test_top_level_must_be_a_mapping() -> None:
    assert issues_of("- a\n- b\n") == [("", "the file must be a mapping of keys")]


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path / "nope.yaml", env={})
    assert "cannot read" in str(info.value)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("1h30m", 5400),
        ("2d", 172800),
        ("1w", 604800),
        ("250ms", 0.25),
        ("1.5h", 5400),
        (45, 45),
    ],
)
def test_parse_duration(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "5", "m5", "5 m", "five minutes", "-5m", "1h-30m", True])
def test_parse_duration_rejects(text: object) -> None:
    with pytest.raises(ValueError, match="bad duration"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["30s", "5m", "1h30m", "2d", "1w", "1w2d3h4m5s"])
def test_format_duration_round_trips(text: str) -> None:
    assert format_duration(parse_duration(text)) == text


def test_secret_equality_is_by_variable_only() -> None:
    assert Secret("A", "x") == Secret("A", "y")
    assert Secret("A", "x") != Secret("B", "x")


def test_registry_ids_match_config_keys() -> None:
    from paytriage.detectors import REGISTRY, DetectorsConfig

    assert set(REGISTRY) == {
        "decline_spike",
        "webhook_lag",
        "refund_sla",
        "capture_failures",
        "traffic_drop",
        "anomaly",
    }
    # every declared detector has its section in the configuration, with its own model
    assert list(DetectorsConfig.model_fields) == list(REGISTRY)
    for name, det in REGISTRY.items():
        assert det.id == name
        assert det.config().id == name
        assert DetectorsConfig.model_fields[name].annotation is det.config


def test_maintenance_windows_are_checked_and_name_the_bad_item() -> None:
    ok = parse_settings(
        "slack: {enabled: false}\nincidents:\n  maintenance:\n"
        "    - {name: adyen, dimensions: {psp: adyen}, weekday: sun, start_time: '02:00', duration: 2h}\n"
        "    - {name: cutover, start: '2026-12-06T01:00:00Z', end: '2026-12-06T03:00:00'}\n",
        "t.yaml",
        env={},
    )
    weekly, once = (m.window() for m in ok.incidents.maintenance)
    assert weekly.duration == timedelta(hours=2) and weekly.dimensions == {"psp": "adyen"}
    assert once.end is not None and once.end.tzinfo is not None  # naive times are UTC

    [(path, msg)] = issues_of(
        "slack: {enabled: false}\nincidents:\n  maintenance:\n"
        "    - {name: ok, weekday: sun, start_time: '02:00', duration: 2h}\n"
        "    - {name: half, weekday: sun}\n"
    )
    assert path == "incidents.maintenance[1]"
    assert "weekday, start_time and duration" in msg
    [(path, _)] = issues_of(
        "slack: {enabled: false}\nincidents:\n  maintenance:\n"
        "    - {name: x, weekday: someday, start_time: '02:00', duration: 2h}\n"
    )
    assert path == "incidents.maintenance[0].weekday"
