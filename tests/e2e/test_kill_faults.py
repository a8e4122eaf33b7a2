"""``kill -9`` at random points of the bot's loop, many times, against the real Prometheus
and OpenSearch and the local Slack and PagerDuty servers (tests/support/kill_suite.py):
nothing lost, nothing posted twice, nothing leaked, compared with a run without kills.

``bench/faults.py`` runs the same suite with more kills and prints the report the README
quotes; here it runs with fewer, to keep CI short.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest

from tests.conftest import OUTAGE_START, Stack
from tests.support.kill_suite import run_suite

pytestmark = pytest.mark.integration


def test_killed_at_random_points_and_restarted_nothing_is_lost_doubled_or_leaked(
    stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kills = int(os.environ.get("PAYTRIAGE_KILLS", "6"))
    report = run_suite(
        tmp_path,
        stack.prometheus_url,
        stack.opensearch_url,
        stack.labels,
        OUTAGE_START - timedelta(minutes=5),  # the stripe outage opens, pages and resolves
        OUTAGE_START + timedelta(minutes=30),
        kills=kills,
        seed=20261201,
    )
    with capsys.disabled():
        print("\nkill -9 fault suite\n  " + "\n  ".join(report.lines()))
    assert report.faults_injected == kills
    assert report.incidents_expected >= 1  # the window holds the stripe outage
    assert report.incidents_delivered == report.incidents_expected, report.problems
    assert report.duplicates == 0, report.problems
    assert report.lost_notifications == 0, report.problems
    assert report.leaked_secrets == 0, report.problems
