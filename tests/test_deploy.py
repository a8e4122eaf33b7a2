"""The bot watched like any service: its alerting rules pass promtool (checked and unit
tested) and every metric the rules and the Grafana dashboard use is one the bot exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from paytriage.core.metrics import BotMetrics

pytestmark = pytest.mark.integration
DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
NAME = re.compile(r"\b(paytriage_[a-z_]+)\b")


def promtool(*args: str) -> str:
    exe = shutil.which("promtool")
    assert exe, "promtool comes with Debian's prometheus package (scripts/stack install)"
    res = subprocess.run([exe, *args], cwd=DEPLOY, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def test_the_alert_rules_are_valid_and_fire_as_their_tests_say() -> None:
    assert "SUCCESS: 8 rules found" in promtool("check", "rules", "paytriage-alerts.yml")
    assert "SUCCESS" in promtool("test", "rules", "paytriage-alerts.test.yml")


def exported() -> set[str]:
    names = set()
    for fam in BotMetrics().registry.collect():
        for suffix in ("", "_total", "_bucket", "_count", "_sum", "_created"):
            names.add(fam.name + suffix)
    return names


def test_rules_and_dashboard_only_use_metrics_the_bot_exports() -> None:
    rules = yaml.safe_load((DEPLOY / "paytriage-alerts.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    dash = json.loads((DEPLOY / "grafana-paytriage.json").read_text())
    exprs += [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in NAME.findall(e)}
    assert used and used <= exported(), used - exported()
    assert {p["title"] for p in dash["panels"]} >= {"Detector cycle p95", "Data age by detector"}
