"""One error path for the command line (issue 19, findings 6 and 7): a line that names the
file, URL or key at fault, a non-zero exit status, no traceback and no secret."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from paytriage.cli import EXIT_BUG, EXIT_FAILED, app

runner = CliRunner()
PERIOD = ["--start", "2026-12-01T00:00Z", "--end", "2026-12-01T01:00Z"]


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port nothing listens on (bound, never listening: connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


@pytest.fixture
def quiet_config(tmp_path: Path, closed_port: int) -> Path:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "slack: {enabled: false}\n"
        f"sources:\n  prometheus: {{url: 'http://127.0.0.1:{closed_port}', retries: 0}}\n"
        f"store: {{url: 'sqlite:///{tmp_path / 'store.db'}'}}\n"
    )
    return cfg


def no_traceback(output: str) -> None:
    assert "Traceback" not in output and 'File "' not in output


def test_a_password_in_the_prometheus_url_is_refused_and_never_printed(tmp_path: Path) -> None:
    out = tmp_path / "o.json"
    url = "http://ops:s3cr3t-pw@127.0.0.1:9/"
    res = runner.invoke(app, ["backtest", "--prometheus-url", url, *PERIOD, "-o", str(out)])
    assert res.exit_code == 2
    assert "--prometheus-url" in res.output and "password" in res.output
    assert "s3cr3t-pw" not in res.output and not out.exists()


def test_a_malformed_prometheus_url_names_the_option(tmp_path: Path) -> None:
    out = str(tmp_path / "o.json")
    res = runner.invoke(app, ["backtest", "--prometheus-url", "http://[::1", *PERIOD, "-o", out])
    assert res.exit_code == 2 and "--prometheus-url" in res.output
    no_traceback(res.output)
    res = runner.invoke(app, ["detect", "--once", "--prometheus-url", "ftp://x"])
    assert res.exit_code == 2 and "not an http(s) URL" in res.output


def test_backtest_fails_when_nothing_could_be_read(
    tmp_path: Path, quiet_config: Path, closed_port: int
) -> None:
    out = tmp_path / "o.json"
    url = f"http://127.0.0.1:{closed_port}"
    res = runner.invoke(
        app, ["backtest", "--prometheus-url", url, *PERIOD, "-o", str(out), "-c", str(quiet_config)]
    )
    assert res.exit_code == EXIT_FAILED
    assert "nothing could be read" in res.output and url in res.output
    assert not out.exists()  # no "0 incidents" file to be mistaken for a quiet period


def test_detect_fails_when_nothing_could_be_read(quiet_config: Path) -> None:
    res = runner.invoke(app, ["detect", "--once", "-c", str(quiet_config)])
    assert res.exit_code == EXIT_FAILED
    assert "nothing could be read" in res.output and "0 finding(s)" not in res.output


def test_postmortem_never_creates_a_store_and_names_the_one_it_read(
    tmp_path: Path, quiet_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["postmortem", "inc-0123456789ab", "-c", str(quiet_config)])
    assert res.exit_code == EXIT_FAILED
    assert "no store at" in res.output and "store.db" in res.output
    assert not (tmp_path / "store.db").exists() and not (tmp_path / "paytriage.db").exists()


def test_a_corrupt_store_is_named(tmp_path: Path, quiet_config: Path) -> None:
    (tmp_path / "store.db").write_bytes(b"this is not a database " * 100)
    res = runner.invoke(app, ["postmortem", "inc-0123456789ab", "-c", str(quiet_config)])
    assert res.exit_code == EXIT_FAILED
    assert "store.db" in res.output and "not a database" in res.output
    no_traceback(res.output)


def test_a_binary_or_recursive_config_is_named(tmp_path: Path) -> None:
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(bytes(range(256)))
    res = runner.invoke(app, ["config", "check", str(binary)])
    assert res.exit_code == EXIT_FAILED and "bin.yaml" in res.output and "UTF-8" in res.output
    recursive = tmp_path / "rec.yaml"
    recursive.write_text("slack: &s\n  routes: [*s]\n")
    res = runner.invoke(app, ["config", "check", str(recursive)])
    assert res.exit_code == EXIT_FAILED and "recursive alias" in res.output
    no_traceback(res.output)


def test_output_paths_that_cannot_be_written_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a short path: click's error box wraps long lines
    Path("demo.txt").write_text("x")
    res = runner.invoke(app, ["demo", "--out", "demo.txt"])
    assert res.exit_code == 2 and "is a file" in res.output
    res = runner.invoke(app, ["simulate", "--out", "/proc/paytriage-x", "--hours", "1"])
    assert res.exit_code == EXIT_FAILED and "/proc/paytriage-x" in res.output
    no_traceback(res.output)


def test_run_names_the_address_it_cannot_listen_on(tmp_path: Path, quiet_config: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = tmp_path / "run.yaml"
        cfg.write_text(
            quiet_config.read_text()
            + f"server: {{port: {port}}}\nrunbooks: {{dir: '{Path('runbooks').resolve()}'}}\n"
        )
        res = runner.invoke(app, ["run", "-c", str(cfg)])
    assert res.exit_code == EXIT_FAILED
    assert f"127.0.0.1:{port}" in res.output and "server.port" in res.output


def test_an_unexpected_error_is_one_line_and_exit_70(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from paytriage.lab import simulate

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("boom for card 4111 1111 1111 1111")

    monkeypatch.setattr(simulate, "simulate", broken)
    res = runner.invoke(app, ["simulate", "--out", str(tmp_path / "s"), "--hours", "1"])
    assert res.exit_code == EXIT_BUG
    assert "RuntimeError: boom" in res.output and "PAYTRIAGE_DEBUG" in res.output
    assert "4111 1111 1111 1111" not in res.output
    no_traceback(res.output)


def test_redact_reads_the_whole_input_so_a_key_over_lines_is_masked() -> None:
    pem = (
        "-----BEGIN RSA PRIVATE KEY-----\n"
        "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
        "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n"
        "-----END RSA PRIVATE KEY-----\n"
    )
    res = runner.invoke(app, ["redact"], input=f"deploy key:\n{pem}done\n")
    assert res.exit_code == 0
    assert "MIIEowIBAAKCAQEA" not in res.output and "VTLw7onLRnrq0" not in res.output
    assert "deploy key:" in res.output and "done" in res.output


def test_config_check_warns_when_anyone_may_do_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-1")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("slack:\n  bot_token: ${SLACK_BOT_TOKEN}\n  app_token: ${SLACK_APP_TOKEN}\n")
    res = runner.invoke(app, ["config", "check", str(cfg)])
    assert res.exit_code == 0 and "anyone in the workspace may" in res.output
    cfg.write_text(cfg.read_text() + "  permissions:\n    acknowledge: [S0ONCALL]\n")
    res = runner.invoke(app, ["config", "check", str(cfg)])
    assert res.exit_code == 0 and "anyone in the workspace" not in res.output
