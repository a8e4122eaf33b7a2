"""Static alerting rules: the file format, Prometheus' state machine, templates, evaluation."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from paytriage.detection.fetch import FIRST_STEPS, MAX_POINTS_PER_QUERY
from paytriage.lab.rules import (
    AlertRule,
    Period,
    RuleList,
    RulesError,
    alert_id,
    alert_periods,
    evaluate,
    humanize,
    humanize_duration,
    load_rules,
    parse_rules,
    prom_duration,
    render_template,
)
from paytriage.sources.base import ErrorKind, Series, SourceError
from tests.support.factories import T0, M


def minutes(pattern: str) -> tuple[list[float], list[bool]]:
    """Evaluation instants one minute apart and presence from a pattern like ``'..##.#'``."""
    return [60.0 * i for i in range(len(pattern))], [c == "#" for c in pattern]


def periods(pattern: str, for_: timedelta, keep: timedelta = timedelta(0)) -> list[Period]:
    times, present = minutes(pattern)
    return alert_periods(times, present, for_, keep)


def at(minute: int) -> float:
    return 60.0 * minute


# --- the state machine -----------------------------------------------------------------------


def test_pending_then_firing_exactly_when_for_has_elapsed() -> None:
    # present from minute 2: pending at 2, 3, 4; 5 - 2 >= 3m fires at 5
    assert periods("..########", 3 * M) == [Period(at(2), at(5), None)]
    # gone one evaluation before `for` elapses: never fired, nothing reported
    assert periods("..###.....", 3 * M) == []
    # gone exactly at the firing instant's successor: fired at 5, resolved at 6
    assert periods("..####....", 3 * M) == [Period(at(2), at(5), at(6))]


def test_a_gap_resets_pending() -> None:
    # pending from 0, gap at 3 clears it; active again at 4, fires at 4 + 3 = 7
    assert periods("###.######", 3 * M) == [Period(at(4), at(7), None)]


def test_for_zero_fires_at_the_first_present_instant() -> None:
    assert periods("...##..#..", timedelta(0)) == [
        Period(at(3), at(3), at(5)),
        Period(at(7), at(7), at(8)),
    ]


def test_resolved_alert_that_returns_is_a_new_period_with_a_new_active_at() -> None:
    assert periods("####..####", 2 * M) == [Period(at(0), at(2), at(4)), Period(at(6), at(8), None)]


def test_keep_firing_for_counts_from_the_first_absent_evaluation() -> None:
    # fired at 0; absent from 4: kept while t - 4 < 2m (4, 5), resolved at 6 (as Prometheus)
    assert periods("####......", timedelta(0), 2 * M) == [Period(at(0), at(0), at(6))]
    # without keep_firing_for it resolves at the first absent evaluation
    assert periods("####......", timedelta(0)) == [Period(at(0), at(0), at(4))]


def test_keep_firing_for_is_reset_when_the_condition_returns() -> None:
    # absent 4-5 (kept), present 6 (clock reset), absent from 7: kept 7, 8; resolved at 9
    assert periods("####..#...", timedelta(0), 2 * M) == [Period(at(0), at(0), at(9))]


def test_keep_firing_for_does_not_protect_a_pending_alert() -> None:
    assert periods("##.##.....", 3 * M, 10 * M) == []


def test_still_firing_at_the_end_has_no_resolution() -> None:
    # kept firing through the last instant: still firing too
    assert periods("#####.", 2 * M, 5 * M) == [Period(at(0), at(2), None)]


def test_state_machine_takes_arrays_and_checks_lengths() -> None:
    times = np.arange(5) * 30.0
    assert alert_periods(times, np.array([1, 1, 1, 0, 0], dtype=bool), M) == [
        Period(0.0, 60.0, 90.0)
    ]
    with pytest.raises(ValueError, match="same length"):
        alert_periods([0.0, 60.0], [True], M)


# --- the file format -------------------------------------------------------------------------


def rules_file(*rules: dict[str, object], **group: object) -> dict[str, object]:
    return {"groups": [{"name": "payments", **group, "rules": list(rules)}]}


def problems_of(data: object) -> list[str]:
    with pytest.raises(RulesError) as info:
        parse_rules(data)
    return info.value.problems


def test_parses_alerting_rules_with_group_labels_merged() -> None:
    rules = parse_rules(
        rules_file(
            {
                "alert": "PSPErrors",
                "expr": " sum by (psp) (x) > 0.05\n",
                "for": "5m",
                "keep_firing_for": "10m",
                "labels": {"severity": "critical", "priority": 1},
                "annotations": {"summary": "{{ $labels.psp }} errors"},
            },
            {"alert": "Quick", "expr": "y > 1", "for": 0},
            interval="30s",
            labels={"team": "payments", "severity": "warning"},
        )
    )
    assert isinstance(rules, RuleList) and rules.skipped == []
    first, second = rules
    assert first == AlertRule(
        name="PSPErrors",
        expr="sum by (psp) (x) > 0.05",
        group="payments",
        index=0,
        for_=5 * M,
        keep_firing_for=10 * M,
        labels={"team": "payments", "severity": "critical", "priority": "1"},
        annotations={"summary": "{{ $labels.psp }} errors"},
        interval=timedelta(seconds=30),
    )
    assert second.for_ == timedelta(0) and second.labels == {
        "team": "payments",
        "severity": "warning",
    }


def test_errors_name_the_group_the_rule_and_the_key() -> None:
    problems = problems_of(
        {
            "groups": [
                {
                    "name": "payments",
                    "rules": [
                        {"alert": "Ok", "expr": "up"},
                        {"alert": "PSPErrors", "expr": "x > 1", "for": "5 minutes"},
                        {"alert": "Typo", "expr": "x", "lables": {}},
                        {"alert": "BadLabel", "expr": "x", "labels": {"bad-name": "v"}},
                        {"alert": "NoExpr"},
                    ],
                },
                {"rules": [{"record": "job:x:rate5m", "expr": "rate(x[5m])", "for": "1m"}]},
            ]
        }
    )
    assert problems == [
        "group 'payments' (groups[0]), rule 'PSPErrors' (rules[1]), key 'for': bad duration "
        "'5 minutes': write whole numbers with units y w d h m s ms in that order, like 30s, "
        "5m, 1h30m",
        "group 'payments' (groups[0]), rule 'Typo' (rules[2]), key 'lables': unknown key "
        "(did you mean 'labels'?); allowed: alert, record, expr, for, keep_firing_for, "
        "labels, annotations",
        "group 'payments' (groups[0]), rule 'BadLabel' (rules[3]), key 'labels.bad-name': "
        "'bad-name' is not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*)",
        "group 'payments' (groups[0]), rule 'NoExpr' (rules[4]), key 'expr': required key "
        "is missing",
        "groups[1], key 'name': required key is missing",
        "groups[1], rule 'job:x:rate5m' (rules[0]): 'for' not allowed in a recording rule",
    ]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"expr": "x"}, "rules[0]: one of 'alert' or 'record' must be set"),
        (
            {"alert": "A", "record": "b", "expr": "x"},
            "rule 'A' (rules[0]): only one of 'alert' and 'record' may be set",
        ),
        ({"alert": "A", "expr": "  "}, "rule 'A' (rules[0]): 'expr' must not be empty"),
        ({"alert": "A", "expr": "x", "for": 300}, "key 'for': bad duration 300 (Prometheus"),
        ({"alert": "A", "expr": "x", "keep_firing_for": "1.5m"}, "key 'keep_firing_for'"),
        ({"record": "not a name", "expr": "x"}, "'not a name' is not a valid metric name"),
        (
            {"alert": "A", "expr": "x", "labels": {"__name__": "y"}},
            "'__name__' cannot be set by a rule",
        ),
    ],
)
def test_rule_problems(rule: dict[str, object], message: str) -> None:
    [problem] = problems_of(rules_file(rule))
    assert problem.startswith("group 'payments' (groups[0]), ")
    assert message in problem


def test_file_level_problems() -> None:
    assert problems_of(["groups"]) == ["the file must be a mapping with a 'groups' list"]
    assert problems_of({"group": []}) == [
        "key 'group': unknown key (did you mean 'groups'?); allowed: groups"
    ]
    assert problems_of({"groups": [{"name": "a", "rules": []}, {"name": "a"}]}) == [
        "group 'a': the name is used by 2 groups; it must be unique"
    ]
    [problem] = problems_of({"groups": [{"name": "a", "intervall": "1m"}]})
    assert problem.startswith("group 'a' (groups[0]), key 'intervall': unknown key (did you mean")
    assert parse_rules(None) == [] and parse_rules({"groups": None}) == []


def test_recording_rules_are_skipped_with_a_warning_naming_the_alerts_that_read_them() -> None:
    rules = parse_rules(
        rules_file(
            {"record": "psp:errors:ratio5m", "expr": "sum by (psp) (rate(x[5m]))"},
            {"alert": "UsesIt", "expr": "psp:errors:ratio5m > 0.05"},
            {"alert": "SimilarName", "expr": "psp:errors:ratio5m_total > 1"},
            {"alert": "Own", "expr": "rate(x[5m]) > 1"},
        )
    )
    assert [r.name for r in rules] == ["UsesIt", "SimilarName", "Own"]
    assert [r.index for r in rules] == [1, 2, 3]
    [warning] = rules.skipped
    assert warning.startswith(
        "recording rule 'psp:errors:ratio5m' (group 'payments', rules[0]) skipped"
    )
    assert "UsesIt read it" in warning and "SimilarName" not in warning


def test_load_rules_reports_the_file_yaml_errors_and_duplicate_keys(tmp_path: Path) -> None:
    good = tmp_path / "rules.yml"
    good.write_text("groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up == 0\n")
    assert [r.name for r in load_rules(good)] == ["A"]

    dup = tmp_path / "dup.yml"
    dup.write_text(
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: x\n"
        "        for: 5m\n        for: 1m\n"
    )
    with pytest.raises(
        RulesError, match=r"dup\.yml: not valid YAML \(line 7\): duplicate key 'for'"
    ):
        load_rules(dup)

    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n  - name: g\n   rules: [\n")
    with pytest.raises(RulesError, match=r"bad\.yml: not valid YAML \(line 3\)"):
        load_rules(bad)

    wrong = tmp_path / "wrong.yml"
    wrong.write_text("groups:\n  - name: g\n    rules:\n      - alert: A\n        exp: x\n")
    with pytest.raises(RulesError) as info:
        load_rules(wrong)
    assert str(info.value).startswith(f"{wrong}: 2 problems:\n")
    assert "rule 'A' (rules[0]), key 'exp': unknown key (did you mean 'expr'?)" in str(info.value)

    with pytest.raises(RulesError, match="cannot read the file"):
        load_rules(tmp_path / "missing.yml")


def test_durations_follow_prometheus() -> None:
    assert prom_duration("1h30m") == timedelta(minutes=90)
    assert prom_duration("0") == prom_duration(0) == timedelta(0)
    assert prom_duration("1w2d") == timedelta(days=9)
    assert prom_duration("1y") == timedelta(days=365)
    assert prom_duration("250ms") == timedelta(milliseconds=250)
    for bad in ("5", "1.5m", "5m1h", "", "5 m", True, 2.5):
        with pytest.raises(ValueError, match="bad duration"):
            prom_duration(bad)


# --- templates -------------------------------------------------------------------------------


def test_templates_substitute_labels_and_value() -> None:
    labels = {"psp": "stripe", "__name__": "x"}
    assert render_template("{{ $labels.psp }} at {{ $value }}", labels, 0.25) == "stripe at 0.25"
    assert render_template("{{$labels.psp}}/{{ .Labels.psp }}", labels, 1.0) == "stripe/stripe"
    assert render_template("{{ $labels.country }}!", labels, 1.0) == "!"  # missingkey=zero
    assert render_template("{{ .Value }} {{ $value }}", labels, 3.0) == "3 3"
    assert render_template("{{ $value }}", labels, float("nan")) == "NaN"
    assert render_template("{{ $value | humanizePercentage }}", labels, 0.0734) == "7.34%"
    assert render_template("{{ $value | humanize }}", labels, 1234567.0) == "1.235M"
    assert render_template("{{ $value | humanizeDuration }}", labels, 547.0) == "9m 7s"
    assert render_template('{{ printf "%.2f" $value }}s', labels, 3.14159) == "3.14s"
    assert render_template('{{ $value | printf "%.1f" }}', labels, 2.25) == "2.2"
    assert render_template("{{ $labels.psp | toUpper }}", labels, 1.0) == "STRIPE"


def test_templates_leave_what_they_do_not_understand() -> None:
    labels = {"psp": "stripe"}
    for text in (
        "{{ range $i := .Alerts }}x{{ end }}",
        '{{ with query "up" }}{{ . }}{{ end }}',
        "{{ $value | reReplaceAll }}",
        '{{ printf "%s %s" $value }}',
        "{{ $labels.psp | humanize }}",
    ):
        assert render_template(text, labels, 1.0) == text
    # rule labels are rendered once per series: $value stays as written
    assert render_template("{{ $labels.psp }}-{{ $value }}", labels, None) == "stripe-{{ $value }}"


def test_humanize_functions_match_prometheus() -> None:
    assert humanize(0.0) == "0"
    assert humanize(0.00123) == "1.23m"
    assert humanize(999.5) == "999.5"
    assert humanize(float("inf")) == "+Inf"
    assert humanize_duration(0.0) == "0s"
    assert humanize_duration(0.25) == "250ms"
    assert humanize_duration(4.5) == "4.5s"
    assert humanize_duration(90061.0) == "1d 1h 1m 1s"
    assert humanize_duration(-3700.0) == "-1h 1m 40s"


# --- evaluation against a fake source --------------------------------------------------------


class FakeSource:
    """A MetricsSource serving fixed series per query, honouring the asked range and step."""

    name = "fake"

    def __init__(self, data: Mapping[str, list[Series] | Exception]) -> None:
        self.data = data
        self.calls: list[tuple[str, datetime, datetime, timedelta]] = []

    def query(self, promql: str, at: datetime | None = None) -> list[Series]:
        raise NotImplementedError

    def query_range(
        self, promql: str, start: datetime, end: datetime, step: timedelta
    ) -> list[Series]:
        self.calls.append((promql, start, end, step))
        found = self.data.get(promql, [])
        if isinstance(found, Exception):
            raise found
        out = []
        lo, hi = start.timestamp(), end.timestamp()
        for s in found:
            keep = (s.timestamps >= lo) & (s.timestamps <= hi)
            if keep.any():
                out.append(Series(s.labels, s.timestamps[keep], s.values[keep]))
        return out


def series(labels: dict[str, str], pattern: str, value: Callable[[int], float] | float) -> Series:
    """A series present at the minutes of ``pattern`` marked '#', counted from T0."""
    idx = [i for i, c in enumerate(pattern) if c == "#"]
    ts = np.array([T0.timestamp() + 60 * i for i in idx], dtype=float)
    vals = np.array([value(i) if callable(value) else value for i in idx], dtype=float)
    return Series(labels, ts, vals)


def rule(name: str, expr: str, **kw: object) -> AlertRule:
    return AlertRule(name=name, expr=expr, group="g", index=0, **kw)  # type: ignore[arg-type]


def iso(minute: int) -> str:
    return (T0 + minute * M).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_evaluate_turns_firing_periods_into_incidents() -> None:
    stripe = {"__name__": "ratio", "psp": "stripe", "instance": "a:9090", "country": "US"}
    adyen = {"psp": "adyen"}
    src = FakeSource(
        {
            "errors > 0.05": [
                series(stripe, "..########....", lambda i: 0.1 + i / 100),
                series(adyen, "###...........", 0.2),  # pending only: nothing
            ],
            "backlog > 300": [series(adyen, "......########", float("nan"))],
        }
    )
    rules = [
        rule(
            "PSPErrors",
            "errors > 0.05",
            for_=3 * M,
            labels={"severity": "critical", "team": "{{ $labels.psp }}-team"},
            annotations={"summary": "{{ $labels.psp }}: {{ $value | humanizePercentage }}"},
        ),
        rule("Backlog", "backlog > 300", for_=2 * M),
    ]
    result = evaluate(src, rules, T0, T0 + 13 * M, M)
    assert result.errors == {} and result.skipped == [] and result.notes == []
    # one range query per rule, on the grid
    assert src.calls == [
        ("errors > 0.05", T0, T0 + 13 * M, M),
        ("backlog > 300", T0, T0 + 13 * M, M),
    ]
    stripe_alert_labels = {
        "psp": "stripe",
        "instance": "a:9090",
        "country": "US",
        "severity": "critical",
        "team": "stripe-team",
        "alertname": "PSPErrors",
    }
    assert result.alerts == [
        {
            "id": alert_id("PSPErrors", stripe_alert_labels, T0.timestamp() + 300),
            "detector": "PSPErrors",
            "opened_at": iso(5),
            "resolved_at": iso(10),
            "severity": "critical",
            "dimensions": {"psp": "stripe", "country": "US"},
            "title": "stripe: 15%",
        },
        {
            # a NaN sample is present; no summary: the title is the name and dimensions
            "id": alert_id(
                "Backlog", {"psp": "adyen", "alertname": "Backlog"}, T0.timestamp() + 480
            ),
            "detector": "Backlog",
            "opened_at": iso(8),
            "resolved_at": None,
            "severity": "warning",
            "dimensions": {"psp": "adyen"},
            "title": "Backlog psp=adyen",
        },
    ]


def test_ids_are_stable_and_distinct() -> None:
    a = alert_id("A", {"psp": "stripe", "alertname": "A"}, 60.0)
    assert a == alert_id("A", {"alertname": "A", "psp": "stripe"}, 60.0)
    assert a != alert_id("A", {"psp": "adyen", "alertname": "A"}, 60.0)
    assert a != alert_id("A", {"psp": "stripe", "alertname": "A"}, 120.0)
    assert a != alert_id("B", {"psp": "stripe", "alertname": "A"}, 60.0)


def test_a_failing_rule_is_reported_and_the_others_carry_on() -> None:
    boom = SourceError("prometheus", ErrorKind.query, "bad(", "parse error")
    src = FakeSource(
        {"bad(": boom, "ok > 1": [series({"country": "GB"}, "#####", 2.0)], "dup": boom}
    )
    rules = [
        rule("Broken", "bad("),
        rule("Works", "ok > 1", labels={"severity": "page"}),
        AlertRule(name="Twice", expr="dup", group="a", index=0),
        AlertRule(name="Twice", expr="dup", group="b", index=3),
    ]
    result = evaluate(src, rules, T0, T0 + 4 * M, M, dimensions=("country",))
    assert set(result.errors) == {
        "Broken",
        "Twice (group 'a', rules[0])",
        "Twice (group 'b', rules[3])",
    }
    assert "parse error" in result.errors["Broken"] and "bad(" in result.errors["Broken"]
    [alert] = result.alerts
    assert alert["detector"] == "Works" and alert["severity"] == "page"
    assert alert["opened_at"] == iso(0) and alert["resolved_at"] is None
    assert alert["dimensions"] == {"country": "GB"}


def test_alerts_are_sorted_and_long_ranges_are_chunked() -> None:
    n = 12_000  # more than one range query's worth of points at this step
    step = timedelta(seconds=1)
    start = T0
    ts = start.timestamp() + np.arange(n, dtype=float)
    pattern = np.zeros(n, dtype=bool)
    pattern[100:200] = pattern[11_000:11_050] = True
    src = FakeSource(
        {
            "late": [Series({"psp": "b"}, ts[pattern], np.ones(int(pattern.sum())))],
            "early": [Series({"psp": "a"}, ts[5000:5010], np.ones(10))],
        }
    )
    result = evaluate(
        src, [rule("Late", "late"), rule("Early", "early")], start, start + (n - 1) * step, step
    )
    # a first request of FIRST_STEPS, then (one series) as many as Prometheus takes
    per_rule = 1 + math.ceil((n - FIRST_STEPS) / MAX_POINTS_PER_QUERY)
    assert per_rule > 1 and len(src.calls) == 2 * per_rule  # chunked, each point once
    assert [(a["detector"], a["opened_at"]) for a in result.alerts] == [
        ("Late", (start + 100 * step).strftime("%Y-%m-%dT%H:%M:%SZ")),
        ("Early", (start + 5000 * step).strftime("%Y-%m-%dT%H:%M:%SZ")),
        ("Late", (start + 11_000 * step).strftime("%Y-%m-%dT%H:%M:%SZ")),
    ]


def test_query_offset_shifts_the_query_not_the_alert_times() -> None:
    src = FakeSource({"x": [series({"psp": "a"}, "#####", 1.0)]})
    r = rule("X", "x", query_offset=2 * M)
    result = evaluate(src, [r], T0 + 2 * M, T0 + 6 * M, M)
    assert src.calls == [("x", T0, T0 + 4 * M, M)]
    [alert] = result.alerts
    assert alert["opened_at"] == iso(2) and alert["resolved_at"] is None


def test_same_labels_after_dropping_the_name_fail_the_rule_like_prometheus() -> None:
    src = FakeSource(
        {
            "a or b": [
                series({"__name__": "a", "psp": "x"}, "###..", 1.0),
                series({"__name__": "b", "psp": "x"}, "..###", 1.0),
            ],
            "c or d": [
                series({"__name__": "c", "psp": "x"}, "##...", 1.0),
                series({"__name__": "d", "psp": "x"}, "...##", 1.0),
            ],
        }
    )
    result = evaluate(src, [rule("Clash", "a or b"), rule("Merged", "c or d")], T0, T0 + 4 * M, M)
    assert "same labels" in result.errors["Clash"] and iso(2) in result.errors["Clash"]
    # never both at one instant: one alert identity, present at 0, 1, 3, 4
    assert [(a["opened_at"], a["resolved_at"]) for a in result.alerts] == [
        (iso(0), iso(2)),
        (iso(3), None),
    ]


def test_evaluate_carries_skipped_rules_and_notes_and_checks_its_arguments() -> None:
    rules = parse_rules(
        rules_file(
            {"record": "r:x", "expr": "x"},
            {"alert": "A", "expr": "r:x > 1"},
            interval="30s",
            limit=5,
        )
    )
    result = evaluate(FakeSource({}), rules, T0, T0 + 5 * M, M)
    assert result.alerts == [] and result.errors == {}
    assert len(result.skipped) == 1 and "'r:x'" in result.skipped[0]
    assert result.notes == [
        "group 'payments' (groups[0]): limit 5 is not applied in the backtest",
        "group 'payments' runs every 30s; replayed every 1m, so 'for' is counted on that grid",
    ]
    with pytest.raises(ValueError, match="timezone-aware"):
        evaluate(FakeSource({}), rules, T0.replace(tzinfo=None), T0 + M, M)
    with pytest.raises(ValueError, match="positive"):
        evaluate(FakeSource({}), rules, T0, T0 + M, timedelta(0))
    with pytest.raises(ValueError, match="before start"):
        evaluate(FakeSource({}), rules, T0 + M, T0, M)


def test_values_render_at_the_firing_instant() -> None:
    src = FakeSource({"v": [series({"psp": "a"}, "######", lambda i: float(i))]})
    r = rule("V", "v", for_=2 * M, annotations={"summary": "{{ $value }}"})
    [alert] = evaluate(src, [r], T0, T0 + 5 * M, M).alerts
    assert alert["title"] == "2" and not math.isnan(float(alert["title"]))
