"""The command line: config check exit codes and messages; argument errors name the option."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from paytriage.cli import app

runner = CliRunner()


@pytest.fixture
def tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-cli-test")
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-cli-test")


def test_config_check_default_ok(tokens: None) -> None:
    res = runner.invoke(app, ["config", "check"])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("OK:") and "decline_spike" in res.output
    assert "xoxb-cli-test" not in res.output


def test_config_check_missing_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-1")
    res = runner.invoke(app, ["config", "check"])
    assert res.exit_code == 1
    assert "slack.bot_token" in res.output and "SLACK_BOT_TOKEN is not set" in res.output


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "detectors:\n  webhook_lag:\n    slo_p95: 60\n",
            "detectors.webhook_lag.slo_p95 (line 3): unknown key",
        ),
        (
            "detectors:\n  webhook_lag:\n    interval: soon\n",
            "detectors.webhook_lag.interval (line 3): bad duration",
        ),
        (
            "detectors:\n  webhook_lag:\n    enabled: maybe\n",
            "detectors.webhook_lag.enabled (line 3): wrong type",
        ),
        ("detectors:\n  webhook_lag:\n    interval: 1s\n", "interval must be at least 5s"),
        (
            "detectors:\n  webhook_lag:\n    timeout: 500ms\n",
            "detectors.webhook_lag.timeout (line 3): timeout must be at least 1s",
        ),
    ],
)
def test_config_check_bad_file(tmp_path: Path, body: str, expected: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(body)
    res = runner.invoke(app, ["config", "check", str(f)])
    assert res.exit_code == 1
    assert expected in res.output
    assert str(f) in res.output


def test_backtest_refuses_a_bad_period_or_step(tmp_path: Path) -> None:
    base = ["backtest", "--prometheus-url", "http://127.0.0.1:9", "-o", str(tmp_path / "o.json")]
    res = runner.invoke(app, [*base, "--start", "2026-11-17T00:00Z", "--end", "2026-11-16T00:00Z"])
    assert res.exit_code == 2
    assert "--end" in res.output and "after --start" in res.output
    res = runner.invoke(
        app, [*base, "--start", "2026-11-16T00:00Z", "--end", "2026-11-17T00:00Z", "--step", "x"]
    )
    assert res.exit_code == 2
    assert "--step" in res.output and "bad duration" in res.output
    assert not (tmp_path / "o.json").exists()


def test_backtest_validates_times_first() -> None:
    res = runner.invoke(
        app,
        [
            "backtest",
            "--prometheus-url",
            "http://x",
            "-o",
            "o.json",
            "--start",
            "yesterday",
            "--end",
            "now",
        ],
    )
    assert res.exit_code == 2
    assert "ISO 8601" in res.output


def test_help_lists_every_command() -> None:
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for cmd in ("run", "demo", "detect", "backtest", "simulate", "config"):
        assert cmd in res.output


def test_backtest_names_the_option_of_an_unreadable_input(tmp_path: Path) -> None:
    bad = tmp_path / "labels.json"
    bad.write_text("{not json")
    rules = tmp_path / "rules.yml"
    rules.write_text("groups:\n  - name: g\n    rules:\n      - alert: A\n        for: soon\n")
    base = ["backtest", "--prometheus-url", "http://127.0.0.1:9", "-o", str(tmp_path / "o.json")]
    period = ["--start", "2026-11-16T00:00Z", "--end", "2026-11-17T00:00Z"]
    res = runner.invoke(app, [*base, *period, "--labels", str(bad)])
    assert res.exit_code == 2 and "--labels" in res.output and "JSON" in res.output
    res = runner.invoke(app, [*base, *period, "--compare-rules", str(rules)])
    assert res.exit_code == 2 and "--compare-rules" in res.output and "'for'" in res.output
    assert not (tmp_path / "o.json").exists()


def test_runbooks_lint_passes_on_the_shipped_runbooks_and_fails_on_a_broken_one(
    tmp_path: Path,
) -> None:
    res = runner.invoke(app, ["runbooks", "lint"])
    assert res.exit_code == 0, res.output
    shipped = Path(__file__).resolve().parents[1] / "runbooks"
    for f in shipped.glob("*.md"):
        (tmp_path / f.name).write_text(f.read_text())
    (tmp_path / "capture-failures.md").unlink()  # a detector left without a runbook
    res = runner.invoke(app, ["runbooks", "lint", str(tmp_path)])
    assert res.exit_code == 1
    assert "capture_failures" in res.output


def test_redact_masks_what_the_bot_would_never_show() -> None:
    text = "charge failed card=4242-4242-4242-4242 cvv=123 for bob@example.com order ORD-1001\n"
    res = runner.invoke(app, ["redact"], input=text)
    assert res.exit_code == 0, res.output
    assert "4242-4242-4242-4242" not in res.output and "bob@example.com" not in res.output
    assert "cvv=123" not in res.output
    assert "ORD-1001" in res.output and "charge failed" in res.output


def test_postmortem_draft_edit_and_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:

    from paytriage.store import Store
    from tests.support.factories import raised
    from tests.support.pipeline import finding as make_finding
    from tests.support.pipeline import pipeline

    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)  # drafting needs no Slack
    db = tmp_path / "p.db"
    store = Store.open(f"sqlite:///{db}")
    f = make_finding("capture_failures", psp="braintree")
    [inc] = pipeline(store).step([raised(f)], [f], f.at).ids("opened")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"slack: {{enabled: false}}\nstore: {{url: 'sqlite:///{db}'}}\n"
        f"postmortem: {{export_dir: '{tmp_path / 'out'}'}}\n"
    )
    res = runner.invoke(app, ["postmortem", inc, "-c", str(cfg)])
    assert res.exit_code == 0, res.output
    assert "`INC-1`" in res.output and "capture" in res.output.lower()
    edited = tmp_path / "edited.md"
    edited.write_text("# Postmortem (edited)\nRoot cause: expired authorizations.\n")
    res = runner.invoke(app, ["postmortem", inc, "-c", str(cfg), "--from", str(edited)])
    assert res.exit_code == 0 and "as version 2" in res.output
    res = runner.invoke(app, ["postmortem", inc, "-c", str(cfg), "--export"])
    assert res.exit_code == 1 and "no approved postmortem" in res.output
    # Reviewed without Slack, by its short name, as people type it.
    res = runner.invoke(app, ["postmortem", "inc-1", "-c", str(cfg), "--request-changes", "why?"])
    assert res.exit_code == 0 and "INC-1: postmortem version 2 changes_requested" in res.output
    res = runner.invoke(app, ["postmortem", "INC-1", "-c", str(cfg), "--from", str(edited)])
    assert res.exit_code == 0 and "as version 3" in res.output
    res = runner.invoke(app, ["postmortem", "INC-1", "-c", str(cfg), "--approve"])
    assert res.exit_code == 0 and "version 3 approved" in res.output
    [audit] = [a for a in store.audit_log(inc) if a.action == "postmortem.changes_requested"]
    assert audit.actor.startswith("cli:") and audit.data["note"] == "why?"
    res = runner.invoke(app, ["postmortem", inc, "-c", str(cfg), "--export"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "out" / f"{inc}-v3.md").read_text() == edited.read_text()
    bad = runner.invoke(app, ["postmortem", "inc-nothex", "-c", str(cfg)])
    assert bad.exit_code == 2 and "not an incident" in bad.output
    res = runner.invoke(app, ["postmortem", "INC-7", "-c", str(cfg)])
    assert res.exit_code == 1 and "no incident INC-7" in res.output


def test_incidents_and_summary_without_slack(tmp_path: Path) -> None:
    from paytriage.store import Store
    from tests.support.factories import raised
    from tests.support.pipeline import finding as make_finding
    from tests.support.pipeline import pipeline

    db = tmp_path / "p.db"
    store = Store.open(f"sqlite:///{db}")
    p = pipeline(store)
    a = make_finding("decline_spike", psp="stripe")
    b = make_finding("webhook_lag", psp="adyen")
    p.step([raised(a), raised(b)], [a, b], a.at)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"slack: {{enabled: false}}\nstore: {{url: 'sqlite:///{db}'}}\n")
    res = runner.invoke(app, ["incidents", "--open", "-c", str(cfg)])
    assert res.exit_code == 0, res.output
    lines = [line for line in res.output.splitlines() if line.startswith("INC-")]
    assert len(lines) == 2 and any("psp=stripe" in x for x in lines)
    assert all(" open " in x for x in lines)
    res = runner.invoke(app, ["summary", "INC-1", "-c", str(cfg)])
    assert res.exit_code == 0, res.output
    assert "Summary:" in res.output and "INC-1" in res.output and "Timeline" in res.output
    assert "&lt;" not in res.output and "&gt;" not in res.output  # Slack's escapes undone
    assert "*Summary" not in res.output and "*Timeline*" not in res.output  # no bold marks


def test_the_demo_plays_one_to_six_hours_and_says_so_otherwise(tmp_path: Path) -> None:
    from datetime import timedelta

    from paytriage.lab.demo import run_demo

    for hours in ("0", "7"):
        res = runner.invoke(app, ["demo", "--hours", hours, "--out", str(tmp_path / "d")])
        assert res.exit_code == 2 and "--hours" in res.output
    with pytest.raises(ValueError, match="plays 1 to 6 hours"):
        run_demo(tmp_path / "d", played=timedelta(minutes=30))
    assert not (tmp_path / "d").exists()  # refused before anything was written
