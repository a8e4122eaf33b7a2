"""What to simulate: the window, the platform's shape and the injected scenarios."""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from paytriage.lab.simulate.scenarios import Scenario, check_scenario

PSPS = ("adyen", "stripe", "braintree", "worldpay", "checkout")
METHODS = ("card", "apple_pay", "google_pay", "paypal")
COUNTRIES = ("US", "GB", "DE", "FR", "BR", "JP")
REASONS = (
    "insufficient_funds",
    "do_not_honor",
    "card_expired",
    "suspected_fraud",
    "invalid_card",
    "authentication_failed",
    "issuer_unavailable",
    "other",
)
EVENT_TYPES = (
    "payment.succeeded",
    "payment.failed",
    "refund.succeeded",
    "dispute.created",
    "payout.paid",
)

_LABEL_VALUE = re.compile(r"^[a-z][a-z0-9_.-]{0,62}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
MAX_POINTS = 400_000  # samples per series: keeps a run within memory and minutes


@dataclass(frozen=True)
class CountryProfile:
    utc_offset: float  # hours; DST ignored, the seasonality only needs the rough local clock
    peak_per_min: float  # authorization attempts per minute at the daily peak
    card_decline_rate: float


# Rough shapes of real markets: volume, local time and how often card issuers say no.
_KNOWN: dict[str, CountryProfile] = {
    "US": CountryProfile(-5, 520, 0.085),
    "GB": CountryProfile(0, 260, 0.075),
    "DE": CountryProfile(1, 220, 0.065),
    "FR": CountryProfile(1, 170, 0.08),
    "BR": CountryProfile(-3, 150, 0.16),
    "JP": CountryProfile(9, 110, 0.055),
    "CA": CountryProfile(-5, 90, 0.08),
    "AU": CountryProfile(10, 80, 0.07),
    "NL": CountryProfile(1, 85, 0.06),
    "ES": CountryProfile(1, 95, 0.09),
    "IT": CountryProfile(1, 100, 0.09),
    "MX": CountryProfile(-6, 70, 0.18),
    "IN": CountryProfile(5.5, 120, 0.2),
    "SE": CountryProfile(1, 45, 0.05),
    "PL": CountryProfile(1, 55, 0.08),
    "SG": CountryProfile(8, 40, 0.06),
}


# Real ISO 3166 alpha-2 codes, the reference markets first, then the other profiled ones:
# ``country_codes(n)`` is a platform in ``n`` markets (e.g. a cardinality benchmark).
_OTHER_MARKETS = (
    "AR AT BE CH CL CO CZ DK FI GR HK HU ID IE IL KR MY NG NO NZ PE PH PT RO SA TH TR TW UA VN "
    "ZA AE BG HR LT LV EE SI SK LU EG MA KE PK BD QA KW CR UY EC DO GT PA CY MT IS RS KZ GE"
)
MARKETS = (*COUNTRIES, *(c for c in _KNOWN if c not in COUNTRIES), *_OTHER_MARKETS.split())


def country_codes(n: int) -> tuple[str, ...]:
    """The first ``n`` of ``MARKETS``: the reference countries first, so a bigger platform
    keeps every reference market (and the scenarios written for them)."""
    if not 1 <= n <= len(MARKETS):
        raise ValueError(f"countries: between 1 and {len(MARKETS)} markets, not {n}")
    return MARKETS[:n]


def country_profile(code: str) -> CountryProfile:
    """A known market's profile, or a stable made-up one for any other ISO code."""
    if code in _KNOWN:
        return _KNOWN[code]
    h = zlib.crc32(code.encode())
    offset = (h % 25) - 12
    peak = 25 + (h >> 8) % 90
    decline = 0.05 + ((h >> 16) % 100) / 1000
    return CountryProfile(float(offset), float(peak), decline)


@dataclass(frozen=True)
class SimulationSpec:
    """Everything that decides the simulated data; the same spec gives the same bytes."""

    start: datetime
    end: datetime
    step: timedelta = timedelta(seconds=60)
    seed: int = 42
    countries: tuple[str, ...] = COUNTRIES
    psps: tuple[str, ...] = PSPS
    methods: tuple[str, ...] = METHODS
    scenarios: tuple[Scenario, ...] = ()
    volume_scale: float = 1.0
    logs: bool = True

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("start and end must carry a timezone (e.g. 2026-11-16T06:00Z)")
        if self.end <= self.start:
            raise ValueError(f"end {self.end.isoformat()} must be after start")
        if not timedelta(seconds=1) <= self.step <= timedelta(minutes=10):
            raise ValueError(f"step {self.step} must be between 1s and 10m")
        if self.points > MAX_POINTS:
            raise ValueError(
                f"{self.points} samples per series is too many (max {MAX_POINTS}): "
                "use a larger step or a shorter window"
            )
        if not self.volume_scale > 0:
            raise ValueError("volume_scale must be positive")
        for name, values, pattern in (
            ("countries", self.countries, _COUNTRY),
            ("psps", self.psps, _LABEL_VALUE),
            ("methods", self.methods, _LABEL_VALUE),
        ):
            if not values:
                raise ValueError(f"{name} must not be empty")
            bad = [v for v in values if not pattern.match(v)]
            if bad:
                what = "ISO 3166 alpha-2 codes" if name == "countries" else "lowercase names"
                raise ValueError(f"{name}: {', '.join(map(repr, bad))} are not {what}")
            if len(set(values)) != len(values):
                raise ValueError(f"{name} has duplicates")
        if "card" not in self.methods:
            raise ValueError("methods must include 'card'")
        known = {"psp": self.psps, "country": self.countries, "method": self.methods}
        for s in self.scenarios:
            check_scenario(s, self.start, self.end)
            for dim, value in s.dims.items():
                if value not in known[dim]:
                    raise ValueError(
                        f"scenario {s.label}: {dim}={value!r} is not simulated "
                        f"(have: {', '.join(known[dim])})"
                    )

    @property
    def points(self) -> int:
        return int((self.end - self.start) / self.step) + 1

    @property
    def step_seconds(self) -> float:
        return self.step.total_seconds()
