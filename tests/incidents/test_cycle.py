"""The live cycle's pure parts: routing an incident to its Slack channel, the store URL."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

import pytest

from paytriage.app.compose import pages
from paytriage.config import Settings
from paytriage.config.models import SlackConfig, StoreConfig
from paytriage.domain.findings import Severity
from paytriage.domain.incidents import Incident
from paytriage.incidents.cycle import floor_time
from paytriage.notify.slack.routing import slack_router
from paytriage.store.url import store_url
from tests.support.factories import T0


def incident(detector: str, severity: Severity = Severity.error, **dims: str) -> Incident:
    return Incident("inc-1", detector, dims, "t", severity, T0, None, False)


def slack(routes: list[dict[str, object]]) -> SlackConfig:
    return SlackConfig.model_validate(
        {"enabled": False, "default_channel": "#payments-oncall", "routes": routes}
    )


def test_the_first_matching_route_wins_else_the_default_channel() -> None:
    route = slack_router(
        slack(
            [
                {"match": {"detector": "webhook_lag"}, "channel": "#payments-webhooks"},
                {
                    "match": {"min_severity": "critical", "dimensions": {"psp": "stripe"}},
                    "channel": "#stripe-war-room",
                },
                {"match": {"dimensions": {"psp": "stripe"}}, "channel": "#stripe"},
            ]
        )
    )
    assert str(route(incident("webhook_lag", psp="stripe"))) == "slack:#payments-webhooks"
    assert (
        str(route(incident("decline_spike", Severity.critical, psp="stripe")))
        == "slack:#stripe-war-room"
    )
    assert (
        str(route(incident("decline_spike", Severity.error, psp="stripe", country="DE")))
        == "slack:#stripe"
    )
    assert str(route(incident("decline_spike", psp="adyen"))) == "slack:#payments-oncall"
    assert str(route(incident("decline_spike"))) == "slack:#payments-oncall"


def test_the_store_password_comes_from_its_secret_and_never_from_the_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PGPASSWORD", "s3cr/et@")
    cfg = StoreConfig.model_validate(
        {"url": "postgresql+psycopg://bot@db:5432/paytriage", "password": "${PGPASSWORD}"}
    )
    url = store_url(cfg)
    assert url.startswith("postgresql+psycopg://bot:") and url.endswith("@db:5432/paytriage")
    from sqlalchemy.engine import make_url

    assert make_url(url).password == "s3cr/et@"
    assert store_url(StoreConfig()) == "sqlite:///paytriage.db"


def test_the_clock_is_floored_to_the_step() -> None:
    assert floor_time(datetime(2026, 11, 16, 9, 0, 59, 999, tzinfo=UTC)) == T0


def test_pages_at_or_above_the_configured_severity_and_for_no_data_problem_but_a_blind_bot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PD_KEY", "R0UTINGKEY0123456789abcdef012345")
    settings = Settings.model_validate(
        {"pagerduty": {"enabled": True, "routing_key": "${PD_KEY}", "min_severity": "error"}}
    )
    page = pages(settings)
    assert page(incident("decline_spike", Severity.critical))
    assert page(incident("decline_spike", Severity.error))
    assert not page(incident("webhook_lag", Severity.warning))
    stale = incident("traffic_drop", Severity.critical)
    stale.data_problem = True
    assert not page(stale)
    blind = incident("source_down", Severity.critical, source="prometheus")
    blind.data_problem = True
    assert page(blind)


class Down:
    """A source that fails while ``down`` is set."""

    name = "prometheus"

    def __init__(self) -> None:
        self.down = True

    def check(self) -> None:
        from paytriage.sources.base import ErrorKind, SourceError

        if self.down:
            raise SourceError(
                "prometheus", ErrorKind.connection, "vector(1)", "refused token=abc123secret"
            )


def test_a_source_down_for_long_enough_is_an_incident_of_its_own(tmp_path: Path) -> None:
    from datetime import timedelta

    from paytriage.incidents.cycle import LiveCycle, SourceWatch
    from paytriage.store import Store
    from tests.support.pipeline import pipeline

    store = Store.open(f"sqlite:///{tmp_path / 'p.db'}")
    src = Down()
    cycle = LiveCycle(
        src, [], pipeline(store), checks=[src], watch=SourceWatch(timedelta(minutes=5))
    )  # type: ignore[arg-type]
    M = timedelta(minutes=1)
    for k in range(5):
        assert cycle.run_once(T0 + k * M).changes == {}  # not yet: a blip is not an outage
    [inc_id] = cycle.run_once(T0 + 5 * M).ids("opened")
    inc = store.incident(inc_id)
    assert inc is not None and inc.detector == "source_down" and inc.data_problem
    assert inc.dimensions == {"source": "prometheus"} and inc.runbook == "data-source-down"
    assert inc.onset == T0  # since the first failure
    assert "abc123secret" not in str(inc.members)
    src.down = False
    assert cycle.run_once(T0 + 9 * M).ids("resolved") == [inc_id]


class Empty:
    """A PromQL source with no data at all (every query answers nothing)."""

    name = "prometheus"

    def query(self, promql: str, at: object = None) -> list[object]:
        return []

    def query_range(self, promql: str, start: object, end: object, step: object) -> list[object]:
        return []


def test_a_detector_that_raises_is_isolated_counted_and_reported(tmp_path: Path) -> None:
    from datetime import timedelta

    from paytriage.core.metrics import BotMetrics
    from paytriage.detection.run import runs_for
    from paytriage.detectors import DetectorsConfig
    from paytriage.incidents.cycle import STEP, LiveCycle
    from paytriage.store import Store
    from tests.support.pipeline import pipeline

    cfg = DetectorsConfig()
    runs = runs_for([cfg.decline_spike, cfg.webhook_lag, cfg.traffic_drop], STEP)
    broken = runs[1]

    def bug(*_: object) -> list[object]:
        raise ZeroDivisionError("a bug in webhook_lag")

    broken.step = bug  # type: ignore[method-assign]
    metrics = BotMetrics()
    store = Store.open(f"sqlite:///{tmp_path / 'p.db'}")
    cycle = LiveCycle(Empty(), runs, pipeline(store), metrics=metrics)  # type: ignore[arg-type]
    for k in range(3):
        cycle.run_once(T0 + k * timedelta(minutes=1))
    health = cycle.health.snapshot()
    assert "ZeroDivisionError: a bug in webhook_lag" in health["webhook_lag"]["error"]
    assert health["webhook_lag"]["failures"] == 3
    for other in ("decline_spike", "traffic_drop"):  # the others ran every minute
        assert health[other]["error"] is None and health[other]["last_run"] == T0 + 2 * timedelta(
            minutes=1
        )
    text = metrics.exposition().decode()
    assert 'paytriage_detector_failures_total{detector="webhook_lag"} 3.0' in text


class Counting:
    """A PromQL source whose every series is a known function of time; it records the
    ranges asked for (a test of what the live cycle fetches, minute after minute)."""

    name = "prometheus"

    def __init__(self) -> None:
        self.asked: list[tuple[str, float, float]] = []
        self.late_at: float | None = None  # this minute reads low until it "fills in"

    def query(self, promql: str, at: object = None) -> list[object]:
        return []

    def query_range(
        self, promql: str, start: datetime, end: datetime, step: object
    ) -> list[object]:
        import numpy as np

        from paytriage.sources.base import Series

        self.asked.append((promql, start.timestamp(), end.timestamp()))
        ts = np.arange(start.timestamp(), end.timestamp() + 1, 60.0)
        out = []
        for psp in ("adyen", "stripe"):
            vals = (ts / 60.0) % 97 + len(psp)
            if self.late_at is not None:
                vals[ts == self.late_at] = -1.0
            out.append(Series({"psp": psp}, ts, vals))
        return out


def test_the_range_cache_fetches_only_new_minutes_and_answers_as_a_full_fetch() -> None:
    from datetime import timedelta

    import numpy as np

    from paytriage.detection.fetch import Grid, RangeCache, range_chunked

    src = Counting()
    cache = RangeCache(refresh=timedelta(minutes=5))
    step = timedelta(minutes=1)
    t0, t1 = T0 - timedelta(hours=6), T0
    held = []
    for k in range(4):  # four live minutes
        src.late_at = (t1 + k * step).timestamp()  # the newest minute is read incomplete...
        got = cache.grid(src, "q", 0.0, t0 + k * step, t1 + k * step, step)
        held.append(got)
        src.late_at = None
        mine = len(src.asked)
        full = Grid.place(
            range_chunked(src, "q", t0 + k * step, t1 + k * step, step),
            t0 + k * step,
            step,
            t1 + k * step,
        )
        del src.asked[mine:]
        assert got.keys == full.keys == ((("psp", "adyen"),), (("psp", "stripe"),))
        assert got.values.shape == full.values.shape == (2, 361)
        # ...and the next minute re-reads it: only the newest point may differ
        assert np.array_equal(got.values[:, :-1], full.values[:, :-1])
        assert (got.values[:, -1] == -1.0).all()
    for earlier in held:  # grids handed out (rows a frame holds) are never written over
        assert (earlier.values[:, -1] == -1.0).all()
    first, rest, *later = src.asked
    # the first minute reads the whole range: a first request, then the rest at once
    assert (first[1], rest[2]) == ((t0).timestamp(), t1.timestamp()) and rest[1] == first[2] + 60
    for _, start, end in later:  # later ones only what is new and the 5 minutes before
        assert end - start == 6 * 60
    # another range (a restart far later) is read in full again
    mine = len(src.asked)
    cache.grid(src, "q", 0.0, t0 + timedelta(days=1), t1 + timedelta(days=1), step)
    assert src.asked[-1][2] - src.asked[mine][1] == 6 * 3600


def test_the_range_cache_reads_a_past_block_ahead_once_and_never_again() -> None:
    from datetime import timedelta

    import numpy as np

    from paytriage.detection.fetch import Grid, RangeCache, range_chunked

    src = Counting()
    cache = RangeCache(ahead=timedelta(minutes=30))
    step, day = timedelta(minutes=1), timedelta(days=1)
    margin = timedelta(minutes=30)  # a past block reaches a little after "the same time"
    n_first = 0  # requests of the first minute
    for k in range(45):  # 45 live minutes, each asking for the same block a day earlier
        now = T0 + k * step
        t0, t1 = now - timedelta(hours=3) - day, now - day + margin
        got = cache.grid(src, "q", day.total_seconds(), t0, t1, step, until=now)
        mine = len(src.asked)
        full = Grid.place(range_chunked(src, "q", t0, t1, step), t0, step, t1)
        del src.asked[mine:]
        n_first = n_first or len(src.asked)
        assert got.keys == full.keys
        assert np.array_equal(got.values, full.values)  # ends at t1: no more than asked
        assert all(end <= now.timestamp() for _, _, end in src.asked)  # nothing from the future
    first_t0 = T0 - timedelta(hours=3) - day
    t1_first = T0 - day + margin
    first, later = src.asked[:n_first], src.asked[n_first:]
    assert first[0][2] - first[0][1] == 59 * 60  # 60 points first: the number of series...
    assert len(first) == 2  # ...is known then, and two series fit in one more request
    assert all(b[1] - a[2] == 60 for a, b in pairwise(first))  # no gap
    reach = datetime.fromtimestamp(first[-1][2], UTC)
    assert first[0][1] == first_t0.timestamp()
    # it reaches a query-dependent part of ``ahead`` past what was asked...
    assert t1_first < reach <= t1_first + timedelta(minutes=30)
    # ...and a block in the past is complete: nothing more is read until a minute needs the
    # minute after ``reach``, and then 30 minutes at once
    renewed = reach + step - t1_first  # the live minute that first needs more
    assert renewed < 45 * step
    want = [(reach + step, reach + 31 * step)]
    if renewed + 31 * step < 45 * step:
        want.append((reach + 32 * step, reach + 62 * step))
    assert [(start, end) for _, start, end in later] == [
        (a.timestamp(), b.timestamp()) for a, b in want
    ]


class Churning(Counting):
    """Series that come and go: adyen always, stripe from T0 - 2h, klarna only from
    T0 - 5h to T0 - 4h, and a fourth, fifth and sixth PSP in the last hour (more series in
    a later answer than the first had: the grid grows while it is written)."""

    def query_range(
        self, promql: str, start: datetime, end: datetime, step: object
    ) -> list[object]:
        from datetime import timedelta

        from paytriage.sources.base import Series

        out = []
        for s in super().query_range(promql, start, end, step):
            assert isinstance(s, Series)
            out.append(s)
        adyen = out[0]
        spans = {
            "klarna": (T0 - timedelta(hours=5), T0 - timedelta(hours=4)),
            "stripe": (T0 - timedelta(hours=2), T0 + timedelta(days=1)),
            "braintree": (T0 - timedelta(hours=1), T0 + timedelta(days=1)),
            "worldpay": (T0 - timedelta(hours=1), T0 + timedelta(days=1)),
            "mollie": (T0 - timedelta(hours=1), T0 + timedelta(days=1)),
        }
        for psp, (lo, hi) in spans.items():
            keep = (adyen.timestamps >= lo.timestamp()) & (adyen.timestamps < hi.timestamp())
            if keep.any():
                ts = adyen.timestamps[keep]
                out.append(Series({"psp": psp}, ts, ts / 60.0 % 13 + len(psp)))
        return [out[0], *out[2:]]


def test_a_range_read_in_chunks_is_placed_as_it_arrives_and_equals_the_merged_read() -> None:
    from datetime import timedelta

    import numpy as np

    from paytriage.detection.fetch import Grid, range_chunked, range_grid

    src = Churning()
    step = timedelta(minutes=1)
    t0, t1 = T0 - timedelta(hours=6), T0
    got = range_grid(src, "q", t0, t1, step, points=200)
    chunks = len(src.asked)
    merged = Grid.place(range_chunked(src, "q", t0, t1, step, points=200), t0, step, t1)
    assert chunks > 2  # read in several answers, the first with one series only
    assert got.keys == merged.keys
    order = ["adyen", "klarna", "stripe", "braintree", "worldpay", "mollie"]
    assert [dict(k)["psp"] for k in got.keys] == order
    assert got.values.shape == (6, 361) and got.values.base is None  # no spare rows kept
    assert np.array_equal(got.values, merged.values, equal_nan=True)
    klarna = got.values[1]
    assert np.isfinite(klarna[60:120]).all() and np.isnan(klarna[:60]).all()
    assert np.isnan(klarna[120:]).all()
    # a grid extended from a base keeps the base's columns and writes the rest
    base = Grid(got.keys, got.values[:, :300])
    asked = len(src.asked)
    ext = range_grid(src, "q", t0, t1, step, base, 300, points=200)
    assert src.asked[asked][1] == (t0 + 300 * step).timestamp()
    assert np.array_equal(ext.values, got.values, equal_nan=True)


class Stuck(Counting):
    """Counting's source, whose webhook queries hang until ``release`` is set (a slow query
    on an overloaded Prometheus)."""

    def __init__(self) -> None:
        import threading

        super().__init__()
        self.release = threading.Event()
        self.running = 0

    def query_range(
        self, promql: str, start: datetime, end: datetime, step: object
    ) -> list[object]:
        answer = super().query_range(promql, start, end, step)  # recorded as asked
        if "webhook" in promql:
            self.running += 1
            try:
                assert self.release.wait(30), "never released"
            finally:
                self.running -= 1
        return answer


def test_a_detector_whose_queries_hang_is_cut_off_and_the_others_go_on(tmp_path: Path) -> None:
    import time
    from datetime import timedelta

    from paytriage.core.metrics import BotMetrics
    from paytriage.detection.run import runs_for
    from paytriage.detectors import DetectorsConfig
    from paytriage.incidents.cycle import STEP, LiveCycle
    from paytriage.store import Store
    from tests.support.pipeline import pipeline

    M = timedelta(minutes=1)
    cfg = DetectorsConfig()
    slow = cfg.webhook_lag.model_copy(update={"timeout": timedelta(seconds=1)})
    runs = runs_for([cfg.decline_spike, slow], STEP)
    src = Stuck()
    metrics = BotMetrics()
    cycle = LiveCycle(
        src, runs, pipeline(Store.open(f"sqlite:///{tmp_path / 'p.db'}")), metrics=metrics
    )  # type: ignore[arg-type]

    def webhook_minutes(asked: list[tuple[str, float, float]]) -> float:
        return sum((b - a) / 60 for q, a, b in asked if "webhook" in q)

    began = time.monotonic()
    cycle.run_once(T0)
    assert time.monotonic() - began < 10  # not the 30 s the query hangs for
    health = cycle.health.snapshot()
    assert health["webhook_lag"]["error"] == "cut off: its queries took longer than 1 s"
    assert health["decline_spike"]["error"] is None and health["decline_spike"]["last_run"] == T0
    first = list(src.asked)

    cycle.run_once(T0 + M)  # still hanging: no second read beside it
    health = cycle.health.snapshot()
    assert health["webhook_lag"]["error"] == "cut off: its read from 09:00 UTC is still running"
    assert health["decline_spike"]["last_run"] == T0 + M
    assert webhook_minutes(src.asked) == webhook_minutes(first)

    src.release.set()
    while src.running:
        time.sleep(0.01)
    time.sleep(0.1)  # the late read places its answers in the detector's range cache
    n = len(src.asked)
    cycle.run_once(T0 + 2 * M)
    health = cycle.health.snapshot()
    assert (
        health["webhook_lag"]["error"] is None and health["webhook_lag"]["last_run"] == T0 + 2 * M
    )
    # The late read was not wasted: the next one asks for the new minutes only.
    assert 0 < webhook_minutes(src.asked[n:]) < 0.25 * webhook_minutes(first)
    text = metrics.exposition().decode()
    assert 'paytriage_detector_cutoffs_total{detector="webhook_lag"} 2.0' in text
    assert 'paytriage_detector_failures_total{detector="webhook_lag"} 2.0' in text
    assert 'paytriage_detector_cutoffs_total{detector="decline_spike"}' not in text
    cycle.close()


def test_a_prometheus_answering_garbage_is_a_source_down_that_pages_and_resolves(
    tmp_path: Path,
) -> None:
    """Valid JSON of the wrong shape from the real client, for every detector's query and
    the probe: no cycle fails, after ``down_after`` the "data source down" incident opens
    and is posted and paged, and it resolves once the answers are right again."""
    import json
    from datetime import timedelta

    from paytriage.config.models import PrometheusConfig
    from paytriage.detection.run import runs_for
    from paytriage.detectors import DetectorsConfig
    from paytriage.incidents.cycle import LiveCycle, SourceWatch
    from paytriage.sources import PrometheusSource
    from paytriage.store import Store
    from tests.support.faults import Answer, answering_server
    from tests.support.pipeline import pipeline

    def answer(result: object) -> bytes:
        data = {"resultType": "vector", "result": result}
        return json.dumps({"status": "success", "data": data}).encode()

    garbage = answer([{"metric": ["a"], "value": "zz"}])
    served = Answer(200, garbage, "application/json")
    store = Store.open(f"sqlite:///{tmp_path / 'p.db'}")
    M = timedelta(minutes=1)
    with answering_server(served) as (url, seen):
        src = PrometheusSource(PrometheusConfig(url=url, retries=0))
        runs = runs_for(DetectorsConfig().enabled(), M)
        pipe = pipeline(store, page=lambda inc: inc.detector == "source_down")
        cycle = LiveCycle(src, runs, pipe, checks=[src], watch=SourceWatch(5 * M))
        for k in range(5):
            assert cycle.run_once(T0 + k * M).changes == {}
        assert cycle.health.snapshot()["decline_spike"]["error"]  # the detectors say why
        [inc_id] = cycle.run_once(T0 + 5 * M).ids("opened")
        inc = store.incident(inc_id)
        assert inc is not None and inc.detector == "source_down"
        assert inc.severity is Severity.critical
        kinds = [m.kind for m in store.due(T0 + 60 * M, limit=100) if m.incident_id == inc_id]
        assert sorted(kinds) == ["incident.opened", "page.trigger"]
        served.body = answer([])  # Prometheus answers again (nothing to judge yet)
        assert cycle.run_once(T0 + 6 * M).ids("resolved") == [inc_id]
        kinds = [m.kind for m in store.due(T0 + 60 * M, limit=100) if m.incident_id == inc_id]
        assert "page.resolve" in kinds and "incident.resolved" in kinds
        assert len(seen) > 5 * len(runs)  # every detector kept asking, minute after minute
