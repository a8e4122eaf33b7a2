"""The simulator: valid OpenMetrics, consistent counts, realistic shape, scenarios that bite."""

from __future__ import annotations

import itertools
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from typer.testing import CliRunner

from paytriage.cli import app
from paytriage.lab.simulate import (
    SCENARIO_KINDS,
    Scenario,
    SimulatedData,
    SimulationSpec,
    default_plan,
    generate,
    luhn_valid,
    parse_scenario,
    simulate,
)
from paytriage.lab.simulate.logs import MAX_ERRORS_PER_SLICE_STEP
from paytriage.lab.simulate.model import seasonality

START = datetime(2026, 11, 16, 0, 0, tzinfo=UTC)  # a Monday
M = timedelta(minutes=1)


def spec(hours: float = 4, seed: int = 3, *scenarios: Scenario, **kw: object) -> SimulationSpec:
    return SimulationSpec(
        start=START,
        end=START + timedelta(hours=hours),
        seed=seed,
        scenarios=scenarios,
        **kw,  # type: ignore[arg-type]
    )


def at(minutes: float) -> datetime:
    return START + timedelta(minutes=minutes)


def idx(data: SimulatedData, when: datetime) -> int:
    return int((when - data.spec.start) / data.spec.step)


def per_step(values: np.ndarray) -> np.ndarray:
    """Counter increments; a reset counts its new value, as Prometheus' increase() does."""
    d = np.diff(values, prepend=0.0)
    return np.where(d < 0, values, d)


def series(data: SimulatedData, name: str, **labels: str) -> list[np.ndarray]:
    return [
        s.values
        for fam in data.families
        for s in fam.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def total(data: SimulatedData, name: str, **labels: str) -> np.ndarray:
    return np.sum([per_step(v) for v in series(data, name, **labels)], axis=0)


@pytest.fixture(scope="module")
def day() -> SimulatedData:
    return generate(spec(24, 11))


@pytest.fixture(scope="module")
def incidents() -> SimulatedData:
    return generate(
        spec(
            6,
            5,
            Scenario("psp_outage", at(120), 20 * M, {"psp": "stripe"}, 1.0, "outage"),
            Scenario("issuer_decline_spike", at(170), 30 * M, {"country": "BR"}, 1.0, "issuer"),
            Scenario("webhook_backlog", at(210), 30 * M, {"psp": "adyen"}, 1.0, "backlog"),
            Scenario("capture_failures", at(250), 40 * M, {"psp": "adyen"}, 1.0, "capture"),
            Scenario("refund_stall", at(150), 120 * M, {"psp": "stripe"}, 1.0, "refunds"),
            Scenario("scrape_gap", at(300), 10 * M, {"psp": "worldpay"}, 1.0, "gap"),
            Scenario("blip", at(330), 2 * M, {"psp": "adyen"}, 1.0, "blip"),
        )
    )


# --- output format and determinism ----------------------------------------------------------


def test_same_seed_same_bytes_other_seed_other_data(tmp_path: Path) -> None:
    plan = (Scenario("psp_outage", at(60), 20 * M, {"psp": "adyen"}),)
    a = simulate(spec(2, 9, *plan), tmp_path / "a")
    simulate(spec(2, 9, *plan), tmp_path / "b")
    simulate(spec(2, 10, *plan), tmp_path / "c")
    files = ["metrics.om", "labels.json", "opensearch/bulk-0001.ndjson"]
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
        assert (tmp_path / "a" / f).read_bytes() != (tmp_path / "c" / f).read_bytes(), f
    assert a.series > 1000 and a.samples == a.series * 121
    text = str(a)
    assert "metrics.om" in text and f"{a.series:,} series" in text


def test_openmetrics_parses_with_families_contiguous_and_valid(tmp_path: Path) -> None:
    simulate(spec(1, 4, logs=False), tmp_path)
    text = (tmp_path / "metrics.om").read_text()
    assert text.endswith("# EOF\n")
    blocks = ["# TYPE" + b for b in text.removesuffix("# EOF\n").split("# TYPE")[1:]]
    names = [b.split()[2] for b in blocks]
    assert len(names) == len(set(names)), "a family appears twice: promtool would refuse it"
    # prometheus_client's strict parser checks every family but histograms (it cannot check
    # a histogram with several timestamps); histograms are checked by hand below.
    plain = [b for b in blocks if b.split()[3] != "histogram"]
    families = list(text_string_to_metric_families("".join(plain) + "# EOF\n"))
    types = {f.name: f.type for f in families}
    assert types["payment_authorizations"] == "counter"
    assert types["refunds_pending_over_sla"] == "gauge"
    assert {b.split()[2] for b in blocks if b.split()[3] == "histogram"} == {
        "payment_authorization_duration_seconds",
        "webhook_processing_lag_seconds",
    }
    last: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for fam in families:
        for s in fam.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            ts = float(s.timestamp)  # type: ignore[arg-type]
            assert ts > last.get(key, 0.0)  # each series in time order
            last[key] = ts
    lo, hi = START.timestamp(), START.timestamp() + 3600
    assert min(last.values()) >= lo and max(last.values()) == hi
    # A histogram's buckets, count and sum form one MetricPoint per timestamp.
    hist = next(b for b in blocks if "webhook_processing_lag_seconds histogram" in b)
    rows = [line.rsplit(" ", 2) for line in hist.splitlines()[2:]]
    first_point = rows[:13]
    assert len({ts for _, _, ts in first_point}) == 1
    assert [r[0].split("{")[0].rsplit("_", 1)[1] for r in first_point] == ["bucket"] * 11 + [
        "count",
        "sum",
    ]
    assert first_point[10][0].endswith('le="+Inf"}') and first_point[10][1] == first_point[11][1]
    assert rows[13][2] == str(int(START.timestamp()) + 60)


def test_histograms_are_consistent(incidents: SimulatedData) -> None:
    for fam in incidents.families:
        if fam.type != "histogram":
            continue
        groups: dict[tuple[tuple[str, str], ...], list[tuple[float, np.ndarray]]] = {}
        counts = {}
        for s in fam.samples:
            key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
            if s.name.endswith("_bucket"):
                groups.setdefault(key, []).append((float(s.labels["le"]), s.values))
            elif s.name.endswith("_count"):
                counts[key] = s.values
        for key, buckets in groups.items():
            buckets.sort(key=lambda b: b[0])
            stacked = np.stack([v for _, v in buckets])
            ok = np.isfinite(stacked).all(axis=0)
            assert (np.diff(stacked[:, ok], axis=0) >= 0).all(), f"{fam.name} {key}"
            assert np.array_equal(stacked[-1, ok], counts[key][ok])
            assert buckets[-1][0] == float("inf")


def test_declines_by_reason_add_up_to_declined(incidents: SimulatedData) -> None:
    sl = incidents.traffic.slices
    for j in range(0, len(sl.psp), 7):
        dims = {"psp": sl.psp[j], "country": sl.country[j], "method": sl.method[j]}
        [declined] = series(incidents, "payment_authorizations_total", outcome="declined", **dims)
        by_reason = series(incidents, "payment_declines_total", **dims)
        assert len(by_reason) == 8
        assert np.array_equal(np.sum(by_reason, axis=0), declined, equal_nan=True)


def test_one_counter_reset_is_recorded_and_real(day: SimulatedData) -> None:
    [reset] = day.labels["counter_resets"]
    when = datetime.fromisoformat(reset["at"].replace("Z", "+00:00"))
    i = idx(day, when)
    reset_series = series(day, "payment_authorizations_total", psp=reset["psp"])
    assert all(v[i] < v[i - 1] for v in reset_series if v[i - 1] > 0)
    others = [
        v
        for v in series(day, "payment_authorizations_total")
        if not any(v is r for r in reset_series)
    ]
    assert all((np.diff(v) >= 0).all() for v in others)


# --- realism ------------------------------------------------------------------------------


def test_volume_follows_each_countrys_local_day(day: SimulatedData) -> None:
    for country, offset in (("US", -5), ("JP", 9)):
        att = total(day, "payment_authorizations_total", country=country)
        local_hour = ((day.traffic.times / 3600 + offset) % 24).astype(int)
        night = att[(local_hour >= 2) & (local_hour < 5)].mean()
        evening = att[(local_hour >= 19) & (local_hour < 22)].mean()
        assert evening > 3 * night, country


def test_counts_are_overdispersed_not_a_formula(day: SimulatedData) -> None:
    att = total(day, "payment_authorizations_total", country="US")
    sl = slice(idx(day, at(12 * 60)), idx(day, at(13 * 60)))
    trend = np.convolve(att, np.ones(9) / 9, mode="same")
    resid = (att - trend)[sl]
    assert resid.var() > 1.3 * trend[sl].mean()  # more variable than Poisson
    assert len(np.unique(att[sl])) > 20


def test_routing_is_partial_and_covers_every_psp(day: SimulatedData) -> None:
    sl = day.traffic.slices
    combos = set(zip(sl.country, sl.psp, strict=True))
    assert len(combos) < len(day.spec.countries) * len(day.spec.psps)
    assert set(sl.psp) == set(day.spec.psps) == set(day.labels["dimensions"]["psp"])
    paypal_psps = {p for p, m in zip(sl.psp, sl.method, strict=True) if m == "paypal"}
    assert "worldpay" not in paypal_psps and "stripe" not in paypal_psps
    for country, shares in day.labels["routing"].items():
        assert abs(sum(shares.values()) - 1) < 0.01, country


def test_declines_are_higher_at_night_and_differ_by_method(day: SimulatedData) -> None:
    att = total(day, "payment_authorizations_total", country="US", method="card")
    dec = total(
        day, "payment_authorizations_total", country="US", method="card", outcome="declined"
    )
    local_hour = ((day.traffic.times / 3600 - 5) % 24).astype(int)
    night, evening = (local_hour >= 1) & (local_hour < 6), (local_hour >= 18) & (local_hour < 23)
    assert dec[night].sum() / att[night].sum() > 1.1 * dec[evening].sum() / att[evening].sum()
    wallet = total(day, "payment_authorizations_total", method="apple_pay")
    wallet_dec = total(day, "payment_authorizations_total", method="apple_pay", outcome="declined")
    card_all = total(day, "payment_authorizations_total", method="card")
    card_dec = total(day, "payment_authorizations_total", method="card", outcome="declined")
    assert wallet_dec.sum() / wallet.sum() < 0.7 * card_dec.sum() / card_all.sum()


def test_seasonality_weekend_is_quieter() -> None:
    monday_noon = np.array([START.timestamp() + 12 * 3600])
    sunday_noon = monday_noon + 6 * 86400
    assert seasonality(sunday_noon, 0)[0] < 0.9 * seasonality(monday_noon, 0)[0]


# --- scenarios ----------------------------------------------------------------------------


def window(data: SimulatedData, start_min: float, end_min: float) -> slice:
    return slice(idx(data, at(start_min)), idx(data, at(end_min)))


def ratio(num: np.ndarray, den: np.ndarray, w: slice) -> float:
    return float(num[w].sum() / max(den[w].sum(), 1))


def test_psp_outage_hits_only_that_psp(incidents: SimulatedData) -> None:
    before, during = window(incidents, 60, 115), window(incidents, 124, 140)
    for psp, factor in (("stripe", 10), ("adyen", None)):
        att = total(incidents, "payment_authorizations_total", psp=psp)
        err = total(incidents, "payment_authorizations_total", psp=psp, outcome="error")
        if factor:
            assert ratio(err, att, during) > factor * ratio(err, att, before)
            assert ratio(err, att, during) > 0.2
        else:
            assert ratio(err, att, during) < 3 * ratio(err, att, before) + 0.005


def test_issuer_decline_spike_is_declines_with_issuer_reasons(incidents: SimulatedData) -> None:
    before, during = window(incidents, 100, 165), window(incidents, 174, 200)
    att = total(incidents, "payment_authorizations_total", country="BR")
    dec = total(incidents, "payment_authorizations_total", country="BR", outcome="declined")
    assert ratio(dec, att, during) > ratio(dec, att, before) + 0.1
    dnh = total(incidents, "payment_declines_total", country="BR", reason="do_not_honor")
    unavailable = total(
        incidents, "payment_declines_total", country="BR", reason="issuer_unavailable"
    )
    funds = total(incidents, "payment_declines_total", country="BR", reason="insufficient_funds")
    rise = {
        name: ratio(v, att, during) / ratio(v, att, before)
        for name, v in (("dnh", dnh), ("unavailable", unavailable), ("funds", funds))
    }
    assert rise["dnh"] > 2 and rise["unavailable"] > 3 and rise["funds"] < 1.5
    other = total(incidents, "payment_authorizations_total", country="DE", outcome="declined")
    other_att = total(incidents, "payment_authorizations_total", country="DE")
    assert ratio(other, other_att, during) < ratio(other, other_att, before) + 0.02


def test_webhook_backlog_builds_and_drains(incidents: SimulatedData) -> None:
    [age] = series(incidents, "webhook_backlog_oldest_age_seconds", psp="adyen")
    [calm] = series(incidents, "webhook_backlog_oldest_age_seconds", psp="stripe")
    assert age[window(incidents, 100, 205)].max() < 60
    peak = age[window(incidents, 225, 241)].max()
    assert 15 * 60 <= peak <= 31 * 60  # never older than the trouble itself
    assert age[window(incidents, 300, 330)].max() < 60  # drained after
    assert np.nanmax(calm) < 60
    failed = total(incidents, "webhook_events_processed_total", psp="adyen", outcome="failed")
    proc = total(incidents, "webhook_events_processed_total", psp="adyen")
    assert ratio(failed, proc, window(incidents, 215, 240)) > 0.05
    assert ratio(failed, proc, window(incidents, 100, 200)) < 0.02


def test_capture_failures_and_refund_stall(incidents: SimulatedData) -> None:
    failed = total(incidents, "payment_captures_total", psp="adyen", outcome="failed")
    caps = total(incidents, "payment_captures_total", psp="adyen")
    assert ratio(failed, caps, window(incidents, 255, 290)) > 0.02
    assert ratio(failed, caps, window(incidents, 60, 200)) < 0.005
    [pending] = series(incidents, "refunds_pending_over_sla", psp="stripe")
    w0, w1 = idx(incidents, at(150)), idx(incidents, at(268))
    assert pending[w1] > pending[w0] + 10
    done = total(incidents, "refunds_completed_total", psp="stripe")
    assert done[window(incidents, 160, 260)].sum() < 0.2 * done[window(incidents, 40, 140)].sum()
    late = total(incidents, "refunds_completed_total", psp="stripe", within_sla="false")
    assert late[window(incidents, 272, 320)].sum() > 10  # the stuck ones complete late after


def test_scrape_gap_removes_samples_of_that_psp_only(incidents: SimulatedData) -> None:
    gap = window(incidents, 300, 310)
    for v in series(incidents, "payment_authorizations_total", psp="worldpay"):
        assert np.isnan(v[gap]).all() and np.isfinite(v[: gap.start]).all()
    for v in series(incidents, "payment_authorizations_total", psp="adyen"):
        assert np.isfinite(v).all()


def test_blip_lasts_two_minutes(incidents: SimulatedData) -> None:
    att = total(incidents, "payment_authorizations_total", psp="adyen")
    err = total(incidents, "payment_authorizations_total", psp="adyen", outcome="error")
    r = err / np.maximum(att, 1)
    spike = np.flatnonzero(r[window(incidents, 320, 345)] > 0.1)
    assert 1 <= len(spike) <= 2


def test_traffic_drop_and_flash_sale_against_the_same_day_without_them() -> None:
    plain = generate(spec(3, 8))
    drop = generate(
        spec(
            3,
            8,
            Scenario("traffic_drop", at(60), 30 * M, {"country": "DE"}),
            Scenario("flash_sale", at(120), 40 * M, {"country": "US"}),
        )
    )
    w = window(drop, 64, 88)
    de_plain = total(plain, "payment_authorizations_total", country="DE")
    de_drop = total(drop, "payment_authorizations_total", country="DE")
    assert de_drop[w].sum() < 0.3 * de_plain[w].sum()
    outside = slice(0, idx(drop, at(59)))
    assert np.array_equal(de_drop[outside], de_plain[outside])
    s = window(drop, 125, 158)
    us_plain = total(plain, "payment_authorizations_total", country="US")
    us_sale = total(drop, "payment_authorizations_total", country="US")
    assert 2.3 < us_sale[s].sum() / us_plain[s].sum() < 3.7
    dec = total(drop, "payment_authorizations_total", country="US", outcome="declined")
    dec_plain = total(plain, "payment_authorizations_total", country="US", outcome="declined")
    assert abs(ratio(dec, us_sale, s) - ratio(dec_plain, us_plain, s)) < 0.01


# --- logs and changes ---------------------------------------------------------------------


def test_logs_agree_with_metrics_and_follow_the_schema(incidents: SimulatedData) -> None:
    lo = at(124).isoformat().replace("+00:00", "")
    hi = at(140).isoformat().replace("+00:00", "")
    docs = [d for d in incidents.logs if lo <= d["@timestamp"][:19] < hi]
    auth_errors = [
        d
        for d in docs
        if d.get("psp") == "stripe" and d["message"].startswith("authorization failed")
    ]
    # Every technical error is logged (up to the per-slice, per-minute sampling cap).
    tr, w = incidents.traffic, window(incidents, 124, 140)
    stripe = np.array(tr.slices.psp) == "stripe"
    outage = tr.outage_errors[w][:, stripe]
    other = tr.errors[w][:, stripe] - outage
    cap = MAX_ERRORS_PER_SLICE_STEP
    assert len(auth_errors) == np.minimum(outage, cap).sum() + np.minimum(other, cap).sum()
    assert len(auth_errors) > 0.8 * tr.errors[w][:, stripe].sum()
    codes = {d["error_code"] for d in auth_errors}
    assert {"psp_timeout", "psp_5xx"} <= codes
    for d in incidents.logs[:500]:
        assert {"@timestamp", "service", "level", "message"} <= set(d)
        assert d["level"] in {"DEBUG", "INFO", "WARN", "ERROR"}
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", d["@timestamp"])
    stamps = [d["@timestamp"] for d in incidents.logs]
    assert stamps == sorted(stamps)


def test_secrets_are_planted_and_listed(incidents: SimulatedData) -> None:
    planted = incidents.labels["planted_secrets"]
    assert planted["card_numbers"] and planted["emails"] and planted["tokens"]
    assert all(luhn_valid(p) for p in planted["card_numbers"])
    text = "\n".join(d["message"] for d in incidents.logs)
    digits_only = re.sub(r"[ -]", "", text)
    for pan in planted["card_numbers"]:
        assert pan in digits_only
    for secret in planted["emails"] + planted["tokens"]:
        assert secret in text
    assert any(re.search(r"\b\d{4} \d{4} \d{4} \d{3,4}\b", d["message"]) for d in incidents.logs)


def test_bulk_files_and_templates(tmp_path: Path) -> None:
    simulate(spec(2, 6, Scenario("webhook_backlog", at(60), 30 * M, {"psp": "adyen"})), tmp_path)
    templates = json.loads((tmp_path / "opensearch" / "index-templates.json").read_text())
    patterns = {p for t in templates for p in t["body"]["index_patterns"]}
    assert patterns == {"payments-logs-*", "changes-*"}
    lines = (tmp_path / "opensearch" / "bulk-0001.ndjson").read_text().splitlines()
    assert len(lines) % 2 == 0 and len(lines) // 2 <= 5000
    actions = [json.loads(x) for x in lines[::2]]
    assert {a["index"]["_index"] for a in actions} <= {
        "payments-logs-2026.11.16",
        "changes-2026.11.16",
    }
    labels = json.loads((tmp_path / "labels.json").read_text())
    [linked] = labels["related_changes"]
    assert linked["scenario"] == labels["scenarios"][0]["id"] and linked["kind"] == "deploy"
    assert linked["service"] == "webhook-ingest"
    assert labels["scenarios"][0]["start"] > linked["@timestamp"] > "2026-11-16T00:45"


# --- plans, parsing and validation --------------------------------------------------------


def test_default_plan_fills_a_day_without_overlaps() -> None:
    end = START + timedelta(days=1)
    plan = default_plan(START, end, 4)
    assert plan == default_plan(START, end, 4)
    assert {s.kind for s in plan} == set(SCENARIO_KINDS)
    assert any(SCENARIO_KINDS[s.kind].harmless for s in plan)
    for a, b in itertools.pairwise(plan):
        assert a.end < b.start
    assert plan[0].start >= START + timedelta(hours=8) and plan[-1].end <= end
    SimulationSpec(start=START, end=end, scenarios=plan)  # valid for the default platform
    assert len(default_plan(START, START + timedelta(hours=3), 4)) < len(plan)


def test_parse_scenario_forms() -> None:
    end = START + timedelta(hours=12)
    s = parse_scenario("psp_outage:psp=adyen@6h+15m*2", START, end)
    assert (s.kind, dict(s.dims), s.start, s.duration, s.magnitude) == (
        "psp_outage",
        {"psp": "adyen"},
        START + timedelta(hours=6),
        15 * M,
        2.0,
    )
    mid = parse_scenario("refund_stall", START, end)
    assert (
        mid.dims == {"psp": "stripe"}
        and mid.duration == SCENARIO_KINDS["refund_stall"].default_duration
    )
    assert mid.start == START + (end - START - mid.duration) / 2
    iso = parse_scenario("traffic_drop:country=DE,method=card@2026-11-16T03:00Z", START, end)
    assert iso.start == START + timedelta(hours=3) and iso.dims == {
        "country": "DE",
        "method": "card",
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("meteor", "unknown scenario kind 'meteor'"),
        ("psp_outage:country", "must be written dim=value"),
        ("psp_outage:planet=mars", "cannot be scoped by planet"),
        ("traffic_drop:method=card", "needs one of country, psp"),
        ("psp_outage@13h", "outside the simulated window"),
        ("psp_outage+soon", "bad duration"),
        ("psp_outage*0", "magnitude"),
        ("psp outage", "cannot read scenario"),
    ],
)
def test_parse_scenario_errors_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_scenario(text, START, START + timedelta(hours=12))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start": START.replace(tzinfo=None)}, "timezone"),
        ({"end": START}, "must be after start"),
        ({"step": timedelta(seconds=0)}, "step"),
        ({"countries": ("US", "usa")}, "'usa' are not ISO 3166"),
        ({"psps": ()}, "psps must not be empty"),
        ({"volume_scale": 0}, "volume_scale"),
        (
            {"scenarios": (Scenario("psp_outage", at(10), 5 * M, {"psp": "paypal_direct"}),)},
            "psp='paypal_direct' is not simulated",
        ),
    ],
)
def test_spec_validation(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"start": START, "end": START + timedelta(hours=1), **kwargs}
    with pytest.raises(ValueError, match=re.escape(message)):
        SimulationSpec(**args)  # type: ignore[arg-type]


def test_cli_simulate(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "sim"
    res = runner.invoke(
        app,
        [
            "simulate",
            "--out",
            str(out),
            "--hours",
            "2",
            "--end",
            "2026-11-16T02:00:00Z",
            "--seed",
            "5",
            "-s",
            "capture_failures:psp=worldpay@1h+20m",
            "--countries",
            "us,br",
        ],
    )
    assert res.exit_code == 0, res.output
    labels = json.loads((out / "labels.json").read_text())
    assert labels["dimensions"]["country"] == ["US", "BR"]
    [s] = labels["scenarios"]
    assert (s["kind"], s["start"], s["dims"]) == (
        "capture_failures",
        "2026-11-16T01:00:00Z",
        {"psp": "worldpay"},
    )
    assert "scripts/stack load" in res.output
    bad = runner.invoke(app, ["simulate", "--out", str(out), "-s", "psp_outage:psp=nope"])
    assert bad.exit_code == 2 and "psp='nope' is not simulated" in bad.output
