"""Shared fixtures. Integration tests get the real stack (scripts/stack) loaded with simulator data.

PAYTRIAGE_PROMQL_BACKEND picks the PromQL API the `stack` fixture hands out as
``stack.prometheus_url``: ``prometheus`` (the default) or ``victoriametrics`` (Debian's
single-node VictoriaMetrics, loaded with the same data). A VictoriaMetrics run keeps only the
tests that use the stack, less those marked ``prometheus_only`` (each with its reason) and
the modules in NOT_ABOUT_PROMQL.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import settings
from sqlalchemy.engine import make_url

from paytriage.store import Store

# No per-example deadline: the unit tests run on two workers while scripts/test starts the
# stack (a JVM) beside them on a 2-core machine, and a slow example there says nothing about
# the code. The property tests still bound their work with max_examples.
settings.register_profile("paytriage", deadline=None)
settings.load_profile("paytriage")

ROOT = Path(__file__).resolve().parents[1]
STACK = ROOT / "scripts" / "stack"
STACK_DIR = Path(os.environ.get("PAYTRIAGE_STACK_DIR", ROOT / ".stack"))
PROMQL_BACKENDS = ("prometheus", "victoriametrics")
PROMQL_BACKEND = os.environ.get("PAYTRIAGE_PROMQL_BACKEND", "").strip().lower() or "prometheus"

# One fixed, seeded dataset for every integration test: a Monday morning with known incidents
# (and a scrape gap, which is a data problem, not an incident).
DATA_START = datetime(2026, 11, 16, 6, 0, tzinfo=UTC)
DATA_END = DATA_START + timedelta(hours=6)
OUTAGE_START = DATA_START + timedelta(hours=3)  # psp_outage on stripe, 20 minutes
OUTAGE = timedelta(minutes=20)
BACKLOG_START = DATA_START + timedelta(hours=4, minutes=30)  # webhook_backlog on adyen, 30 min
BACKLOG = timedelta(minutes=30)
GAP_START = DATA_START + timedelta(hours=2)  # scrape_gap on worldpay, 15 minutes
GAP = timedelta(minutes=15)
CAPTURE_START = DATA_START + timedelta(hours=3, minutes=40)  # capture_failures on braintree
CAPTURE = timedelta(minutes=40)
DROP_START = DATA_START + timedelta(hours=5, minutes=10)  # traffic_drop in GB, 30 minutes
DROP = timedelta(minutes=30)
STALL_START = DATA_START + timedelta(hours=3, minutes=30)  # refund_stall on adyen, 2 hours
STALL = timedelta(hours=2)

# A second morning, two days later, for the scenario kinds the first one does not hold; its
# first two hours are history (and the first morning is its "two days ago").
DAY2_START = datetime(2026, 11, 18, 6, 0, tzinfo=UTC)
DAY2_END = DAY2_START + timedelta(hours=5)
ISSUER_START = DAY2_START + timedelta(hours=2, minutes=30)  # issuer_decline_spike in BR
ISSUER = timedelta(minutes=30)
METHOD_START = DAY2_START + timedelta(hours=3, minutes=40)  # method_failure of apple_pay
METHOD = timedelta(minutes=30)


# Modules that use the stack but whose subject is not the PromQL API: a VictoriaMetrics run
# leaves them out (tests about Prometheus itself are marked prometheus_only instead).
NOT_ABOUT_PROMQL = {
    "test_kill_faults": "crash safety of the store and outbox under kill -9 (two minutes); "
    "the live loop's queries are test_live's",
    "test_replicas": "leader election on PostgreSQL, detectors off: PromQL is only probed "
    "(test_run probes it)",
    "test_opensearch": "the OpenSearch source only",
    "test_logs_opensearch": "log and change evidence from OpenSearch only",
    "test_readonly": "the filesystem the bot writes to; test_run covers its start-up queries",
}


def pytest_configure(config: pytest.Config) -> None:
    if PROMQL_BACKEND not in PROMQL_BACKENDS:
        raise pytest.UsageError(
            f"PAYTRIAGE_PROMQL_BACKEND={PROMQL_BACKEND!r}: want one of {', '.join(PROMQL_BACKENDS)}"
        )
    config.addinivalue_line(
        "markers",
        "prometheus_only(reason): about Prometheus itself (promtool, its exact answers); "
        "not run when PAYTRIAGE_PROMQL_BACKEND=victoriametrics",
    )


def pytest_report_header(config: pytest.Config) -> str:
    return f"PromQL backend: {PROMQL_BACKEND} (PAYTRIAGE_PROMQL_BACKEND)"


# The fixtures that start or load a real server of scripts/stack: a test that uses one is an
# integration test, whatever its module says.
SERVER_FIXTURES = frozenset({"stack", "postgres_url"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Marks the tests that need a real server ``integration``; on VictoriaMetrics keeps the
    tests that query the stack, less the Prometheus-only ones."""
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
    keep, drop = [], []
    for item in items:
        mark = item.get_closest_marker("prometheus_only")
        if mark is not None and not mark.kwargs.get("reason"):
            raise pytest.UsageError(f"{item.nodeid}: say why it is prometheus_only (reason=...)")
        if PROMQL_BACKEND == "prometheus":
            continue
        uses_stack = "stack" in getattr(item, "fixturenames", ())
        promql = uses_stack and mark is None and item.path.stem not in NOT_ABOUT_PROMQL
        (keep if promql else drop).append(item)
    if PROMQL_BACKEND != "prometheus" and drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A fresh SQLite store (the tests of the store itself also run it on PostgreSQL)."""
    s = Store.open(f"sqlite:///{tmp_path / 'paytriage.db'}")
    yield s
    s.close()


@dataclass(frozen=True)
class Stack:
    prometheus_url: str
    opensearch_url: str
    data_dir: Path
    labels: dict[str, object]
    day2_dir: Path
    day2_labels: dict[str, object]


def stack_env() -> dict[str, str]:
    out = subprocess.run([str(STACK), "env"], check=True, capture_output=True, text=True).stdout
    env = {}
    for line in out.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = value
    return env


def _run(*args: str) -> None:
    res = subprocess.run([str(STACK), *args], capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        raise RuntimeError(
            f"scripts/stack {' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
        )


def simulation_spec():
    from paytriage.lab.simulate import Scenario, SimulationSpec

    return SimulationSpec(
        start=DATA_START,
        end=DATA_END,
        step=timedelta(seconds=60),
        seed=7,
        scenarios=(
            Scenario("psp_outage", OUTAGE_START, OUTAGE, {"psp": "stripe"}, 1.0, "it-psp-outage"),
            Scenario(
                "webhook_backlog", BACKLOG_START, BACKLOG, {"psp": "adyen"}, 1.0, "it-backlog"
            ),
            Scenario("scrape_gap", GAP_START, GAP, {"psp": "worldpay"}, 1.0, "it-gap"),
            Scenario(
                "capture_failures", CAPTURE_START, CAPTURE, {"psp": "braintree"}, 1.0, "it-capture"
            ),
            Scenario("traffic_drop", DROP_START, DROP, {"country": "GB"}, 1.0, "it-drop"),
            Scenario("refund_stall", STALL_START, STALL, {"psp": "adyen"}, 1.0, "it-refunds"),
        ),
    )


def day2_spec():
    from paytriage.lab.simulate import Scenario, SimulationSpec

    return SimulationSpec(
        start=DAY2_START,
        end=DAY2_END,
        step=timedelta(seconds=60),
        seed=11,
        scenarios=(
            Scenario(
                "issuer_decline_spike", ISSUER_START, ISSUER, {"country": "BR"}, 1.0, "it-issuer"
            ),
            Scenario(
                "method_failure", METHOD_START, METHOD, {"method": "apple_pay"}, 1.0, "it-method"
            ),
        ),
    )


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Stack:
    """The real Prometheus and OpenSearch, holding the fixed simulated dataset.

    Starts them with scripts/stack (installing what is missing) and loads the data unless
    the same dataset is loaded already. Fails, never skips, when the stack cannot start.
    With PAYTRIAGE_PROMQL_BACKEND=victoriametrics, VictoriaMetrics is started and loaded as
    well, and ``prometheus_url`` is its URL.
    """
    from paytriage.lab.simulate import simulate

    with _stack_lock():
        _run("up")
    data_dir = tmp_path_factory.mktemp("sim")
    day2_dir = tmp_path_factory.mktemp("sim-day2")
    simulate(simulation_spec(), data_dir)
    simulate(day2_spec(), day2_dir)
    labels_text = (data_dir / "labels.json").read_text()
    day2_text = (day2_dir / "labels.json").read_text()
    env = stack_env()
    promql_url = env["PAYTRIAGE_PROMETHEUS_URL"]
    with _stack_lock():  # pytest-xdist workers: one loads, the others find it loaded
        marker = STACK_DIR / "loaded-labels.json"
        if not marker.exists() or marker.read_text() != labels_text + day2_text:
            _run("load", str(data_dir), str(day2_dir))
            marker.write_text(labels_text + day2_text)
        if PROMQL_BACKEND == "victoriametrics":
            _run("up", "victoriametrics")
            vm_marker = STACK_DIR / "victoriametrics" / "loaded-labels.json"
            if not vm_marker.exists() or vm_marker.read_text() != labels_text + day2_text:
                _run("load-vm", str(data_dir), str(day2_dir))
                vm_marker.write_text(labels_text + day2_text)
            promql_url = env["PAYTRIAGE_VM_URL"]
    return Stack(
        prometheus_url=promql_url,
        opensearch_url=env["PAYTRIAGE_OPENSEARCH_URL"],
        data_dir=data_dir,
        labels=json.loads(labels_text),
        day2_dir=day2_dir,
        day2_labels=json.loads(day2_text),
    )


@contextmanager
def _stack_lock() -> Iterator[None]:
    """Held while starting or loading the stack: pytest-xdist runs the session fixtures once
    per worker, and two workers must not load the same servers at once."""
    STACK_DIR.mkdir(parents=True, exist_ok=True)
    with (STACK_DIR / "tests.lock").open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A real PostgreSQL (Debian's, started by scripts/stack) with an empty database per
    session (per pytest-xdist worker: `paytriage_gw0`, ...): the store's tests run against it
    as well as against SQLite."""
    with _stack_lock():
        _run("up", "postgres")
    base = make_url(stack_env()["PAYTRIAGE_DATABASE_URL"])
    name = f"{base.database}_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
    from sqlalchemy import create_engine, text

    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:  # a clean database: each session migrates from nothing
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return base.set(database=name).render_as_string(hide_password=False)
