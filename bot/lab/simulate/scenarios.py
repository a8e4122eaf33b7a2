"""Named incident scenarios the simulator can inject, and how to write them on a command line.

A scenario is pure data (what, when, where, how strong); the traffic model in
``paytriage.lab.simulate.model`` decides what it does to each metric and log line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from paytriage.core.types import parse_duration


@dataclass(frozen=True)
class Scenario:
    """One injected event: ``kind`` from SCENARIO_KINDS, starting at ``start`` for ``duration``."""

    kind: str
    start: datetime
    duration: timedelta
    dims: Mapping[str, str] = field(default_factory=dict)
    magnitude: float = 1.0
    id: str = ""

    @property
    def end(self) -> datetime:
        return self.start + self.duration

    @property
    def label(self) -> str:
        return self.id or f"{self.kind}-{self.start:%Y%m%dT%H%M}"


@dataclass(frozen=True)
class ScenarioKind:
    description: str
    dims: tuple[str, ...]  # dimensions it may be scoped by
    required: tuple[str, ...]  # at least one of these must be given (empty: none needed)
    default_duration: timedelta
    expected_detectors: tuple[str, ...]
    harmless: bool = False


_M = timedelta(minutes=1)

SCENARIO_KINDS: dict[str, ScenarioKind] = {
    "psp_outage": ScenarioKind(
        "a PSP times out and answers 5xx: technical errors jump, latency soars",
        ("psp", "country", "method"),
        ("psp",),
        20 * _M,
        ("decline_spike",),
    ),
    "issuer_decline_spike": ScenarioKind(
        "issuers in one country decline far more (do_not_honor, issuer_unavailable, fraud)",
        ("country", "psp", "method"),
        ("country",),
        30 * _M,
        ("decline_spike",),
    ),
    "method_failure": ScenarioKind(
        "one payment method fails (wallet tokens rejected, 3DS authentication broken)",
        ("method", "country", "psp"),
        ("method",),
        30 * _M,
        ("decline_spike",),
    ),
    "webhook_backlog": ScenarioKind(
        "webhook processing slows down and fails: the queue and its oldest age grow",
        ("psp",),
        ("psp",),
        30 * _M,
        ("webhook_lag",),
    ),
    "refund_stall": ScenarioKind(
        "the refund worker stops completing a PSP's refunds: pending ones age past the SLA",
        ("psp",),
        ("psp",),
        120 * _M,
        ("refund_sla",),
    ),
    "capture_failures": ScenarioKind(
        "captures fail at a PSP (expired authorizations, amount mismatches)",
        ("psp",),
        ("psp",),
        45 * _M,
        ("capture_failures",),
    ),
    "traffic_drop": ScenarioKind(
        "checkout silently broken: attempts fall far below normal",
        ("country", "psp", "method"),
        ("country", "psp"),
        30 * _M,
        ("traffic_drop",),
    ),
    "scrape_gap": ScenarioKind(
        "the metrics of a PSP (or all) are missing: a data problem, not a traffic drop",
        ("psp",),
        (),
        15 * _M,
        (),
        harmless=True,
    ),
    "flash_sale": ScenarioKind(
        "a marketing campaign triples traffic in a country; rates stay normal",
        ("country",),
        ("country",),
        60 * _M,
        (),
        harmless=True,
    ),
    "blip": ScenarioKind(
        "a two-minute burst of PSP errors that heals itself",
        ("psp",),
        ("psp",),
        2 * _M,
        (),
        harmless=True,
    ),
}

# Used when a scenario is written without dimensions on the command line.
_DEFAULT_DIMS = {"psp": "stripe", "country": "US", "method": "apple_pay"}

_SPEC = re.compile(
    r"""^(?P<kind>[a-z_]+)
        (?::(?P<dims>[^@+*]*))?
        (?:@(?P<at>[^+*]+))?
        (?:\+(?P<dur>[^*]+))?
        (?:\*(?P<mag>[0-9.]+))?$""",
    re.VERBOSE,
)


def parse_scenario(text: str, start: datetime, end: datetime) -> Scenario:
    """Parse ``KIND[:dim=value,...][@OFFSET|@ISO-TIME][+DURATION][*MAGNITUDE]``.

    OFFSET is from ``start`` (e.g. ``6h``); without it the scenario sits in the middle of
    the window. Raises ValueError naming what is wrong.
    """
    m = _SPEC.match(text.strip())
    if not m:
        raise ValueError(
            f"cannot read scenario {text!r}: expected KIND[:dim=value,...][@OFFSET][+DURATION]"
            "[*MAGNITUDE], e.g. psp_outage:psp=stripe@6h+20m"
        )
    kind_name = m["kind"]
    kind = SCENARIO_KINDS.get(kind_name)
    if kind is None:
        raise ValueError(
            f"unknown scenario kind {kind_name!r}; known: {', '.join(sorted(SCENARIO_KINDS))}"
        )
    dims: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in (m["dims"] or "").split(","))):
        key, sep, value = part.partition("=")
        if not sep or not value.strip():
            raise ValueError(f"scenario {text!r}: dimension {part!r} must be written dim=value")
        dims[key.strip()] = value.strip()
    if kind.required and not dims:
        dims[kind.required[0]] = _DEFAULT_DIMS[kind.required[0]]
    duration = kind.default_duration
    if m["dur"]:
        duration = _duration(m["dur"], text, "duration")
    if m["at"]:
        at_text = m["at"].strip()
        if re.fullmatch(r"[0-9.]+[a-z]+", at_text):
            begin = start + _duration(at_text, text, "offset")
        else:
            try:
                begin = datetime.fromisoformat(at_text.replace("Z", "+00:00"))
            except ValueError:
                raise ValueError(
                    f"scenario {text!r}: {at_text!r} is neither an offset (6h) nor an ISO time"
                ) from None
            if begin.tzinfo is None:
                begin = begin.replace(tzinfo=UTC)
    else:
        begin = start + (end - start - duration) / 2
    magnitude = float(m["mag"]) if m["mag"] else 1.0
    scenario = Scenario(kind_name, begin, duration, dims, magnitude, "")
    scenario = Scenario(kind_name, begin, duration, dims, magnitude, scenario.label)
    check_scenario(scenario, start, end)
    return scenario


def _duration(value: str, text: str, what: str) -> timedelta:
    try:
        return parse_duration(value.strip())
    except ValueError as exc:
        raise ValueError(f"scenario {text!r}: bad {what}: {exc}") from None


def check_scenario(s: Scenario, start: datetime, end: datetime) -> None:
    """Raise ValueError when a scenario cannot be played in [start, end)."""
    kind = SCENARIO_KINDS.get(s.kind)
    if kind is None:
        raise ValueError(f"unknown scenario kind {s.kind!r}")
    unknown = set(s.dims) - set(kind.dims)
    if unknown:
        raise ValueError(
            f"scenario {s.label}: {s.kind} cannot be scoped by {', '.join(sorted(unknown))} "
            f"(allowed: {', '.join(kind.dims)})"
        )
    if kind.required and not set(kind.required) & set(s.dims):
        raise ValueError(f"scenario {s.label}: {s.kind} needs one of {', '.join(kind.required)}")
    if s.duration <= timedelta(0):
        raise ValueError(f"scenario {s.label}: duration must be positive")
    if not 0 < s.magnitude <= 10:
        raise ValueError(f"scenario {s.label}: magnitude must be in (0, 10]")
    if s.start.tzinfo is None:
        raise ValueError(f"scenario {s.label}: start must carry a timezone")
    if s.start < start or s.start >= end:
        raise ValueError(
            f"scenario {s.label}: starts at {s.start.isoformat()}, outside the simulated "
            f"window {start.isoformat()} .. {end.isoformat()}"
        )


# The default plan: incidents and harmless events for a realistic day, never overlapping.
_PLAN_ORDER = (
    "flash_sale",
    "psp_outage",
    "blip",
    "issuer_decline_spike",
    "webhook_backlog",
    "capture_failures",
    "scrape_gap",
    "method_failure",
    "traffic_drop",
    "refund_stall",
)


def default_plan(
    start: datetime,
    end: datetime,
    seed: int,
    *,
    psps: tuple[str, ...] = ("adyen", "stripe", "braintree", "worldpay", "checkout"),
    countries: tuple[str, ...] = ("US", "GB", "DE", "FR", "BR", "JP"),
    methods: tuple[str, ...] = ("card", "apple_pay", "google_pay", "paypal"),
) -> tuple[Scenario, ...]:
    """A seeded day of events in the later part of the window (the first third is history).

    Short windows get fewer events; they never overlap, and each is followed by quiet time so
    a detector's recovery can be seen.
    """
    rng = np.random.default_rng([seed, 9001])
    span = end - start
    cursor = start + span / 3
    gap = max(timedelta(minutes=20), span / 40)
    big_psps = psps[:2] if len(psps) >= 2 else psps
    plan: list[Scenario] = []
    for kind_name in _PLAN_ORDER:
        kind = SCENARIO_KINDS[kind_name]
        duration = kind.default_duration
        if cursor + duration + gap > end:
            break
        dims: dict[str, str] = {}
        if kind_name in ("psp_outage", "webhook_backlog", "blip"):
            dims["psp"] = str(rng.choice(big_psps))
        elif kind_name in ("capture_failures", "refund_stall", "scrape_gap"):
            dims["psp"] = str(rng.choice(psps))
        elif kind_name in ("issuer_decline_spike", "flash_sale", "traffic_drop"):
            dims["country"] = str(rng.choice(countries))
        elif kind_name == "method_failure":
            wallets = [m for m in methods if m != "card"] or list(methods)
            dims["method"] = str(rng.choice(wallets))
        jitter = timedelta(minutes=int(rng.integers(0, 15)))
        begin = (cursor + jitter).replace(second=0, microsecond=0)
        s = Scenario(kind_name, begin, duration, dims, 1.0, "")
        plan.append(Scenario(kind_name, begin, duration, dims, 1.0, s.label))
        cursor = begin + duration + gap
    return tuple(plan)
