"""What every detector shares: its config base, its verdicts (``Assessment``) and the
``Detector`` protocol it declares itself with.

A detector is one module in this package with a ``Config`` model (its PromQL and thresholds,
defaults written for the reference schema of ``docs/telemetry.md``), pure functions over a
``Frame`` and, at its end, ``DETECTOR = Detector(...)``: what the runner, the evidence and the
postmortem need to know of it. It is registered by one line in ``detectors/__init__.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from pydantic import Field, ValidationInfo, field_validator

from paytriage.core.promql import check_label_name, check_template
from paytriage.core.types import Duration, LabelName, PositiveDuration, StrictModel
from paytriage.detectors.signals import Frame, LabelKey, Offset
from paytriage.domain.findings import Finding, Severity


class DetectorConfig(StrictModel):
    """Settings every detector has."""

    id: str
    enabled: bool = True
    interval: Duration = Field(default=timedelta(minutes=1), description="how often it runs")
    timeout: Duration = Field(
        default=timedelta(seconds=30),
        description="how long one run may wait for its queries (at most its interval): past "
        "it the live cycle cuts the detector off for that run, reports it and goes on",
    )
    severity: Severity = Severity.error
    for_: Duration = Field(
        default=timedelta(minutes=3),
        alias="for",
        description="the condition must hold this long before a finding is raised",
    )
    clear_after: Duration = Field(
        default=timedelta(minutes=5),
        description="how long a raised finding's signal must stay back within its band "
        "before it clears (hysteresis): longer than a dip back into band in the middle of a "
        "problem, short enough that the page resolves with the recovery",
    )
    recovery_window: PositiveDuration = Field(
        default=timedelta(minutes=5),
        description="a raised finding holds while its signal over this recent window (whole "
        "minutes, pooled) is still out of its band; once it is back, the minutes since it "
        "came back count towards clear_after, so the window costs no time up to "
        "clear_after, and pooling keeps a quiet minute of a small slice from passing for "
        "a recovery",
    )
    recovery_alpha: float = Field(
        default=0.05,
        gt=0,
        lt=0.5,
        description="how improbable the recovery window must still be for a raised finding "
        "to hold: far looser than raising one (hysteresis)",
    )
    runbook: str | None = Field(
        default=None, description="runbook id; default: matched by front matter"
    )

    @field_validator("interval", "timeout")
    @classmethod
    def _long_enough(cls, v: timedelta, info: ValidationInfo) -> timedelta:
        least = {"interval": 5, "timeout": 1}[str(info.field_name)]
        if v < timedelta(seconds=least):
            raise ValueError(f"{info.field_name} must be at least {least}s")
        return v


class BaselineConfig(StrictModel):
    """Seasonal baseline: the same time of week over past weeks, robust to past incidents."""

    weeks: int = Field(default=4, ge=1, le=12, description="past weeks compared")
    min_weeks: int = Field(default=1, ge=1, description="weeks of history needed to judge")
    days: int = Field(
        default=3,
        ge=1,
        le=6,
        description="past days compared (median) when there are not enough weeks of history",
    )


def default_dimensions() -> list[str]:
    return ["psp", "country", "method"]


DimensionList = list[LabelName]


@dataclass(frozen=True)
class Assessment:
    """A detector's verdict on one key (dimensions) at one step, before persistence.

    ``breach`` is the strict condition that must hold for ``for`` before a finding is raised;
    ``holding`` is what keeps a raised finding open: its signal, read over the detector's
    short recent window, still out of its band (a looser test than ``breach``: hysteresis).
    It is judged on its own, not implied by ``breach``: long windows and trailing tests
    still see a problem minutes after it ended, and a raised finding must clear when its
    signal is back, not when they have forgotten it. ``finding`` is what is reported while
    it is raised. ``since`` is when the data shows the breach began, when the detector
    checked that itself (it counts towards ``for``); ``recovered_since``, for a raised key
    that no longer holds, when the data shows its signal back within its band (it counts
    towards ``clear_after`` and is the finding's *impact ended* time).
    """

    key: tuple[tuple[str, str], ...]
    breach: bool
    holding: bool
    finding: Finding
    since: datetime | None = None
    recovered_since: datetime | None = None


@dataclass(frozen=True)
class ImpactLine:
    """One figure of what an incident of a detector without a failure ratio cost, in its
    own terms, read over the incident's window: ``query`` is a template as
    ``paytriage.core.promql.check_template`` takes it, summed over the incident's slice
    (``{by}`` is left empty); ``what`` says what it counts ("webhook deliveries processed
    after 60 s"); ``shortfall``: the figure is the same count over the same window a
    ``evidence.baseline_offset`` earlier minus now (payments that never came)."""

    what: str
    query: str
    shortfall: bool = False

    def __post_init__(self) -> None:
        check_template(self.query)


@dataclass(frozen=True)
class RatioQueries:
    """PromQL templates of the failure ratio a detector judges, broken down by value (see
    ``paytriage.core.promql.check_template``); the evidence's breakdown and impact read it.

    ``numerator`` / ``denominator`` count failures and attempts by ``{by}``; ``shared`` maps a
    dimension whose failures come from another metric (``reason`` from the declines counter)
    to its numerator template: its values share the slice's total attempts as denominator.
    ``labels`` are the labels the ratio's metrics carry (None: any configured in
    ``evidence.breakdown_by``).
    """

    numerator: str
    denominator: str
    shared: Mapping[str, str] = field(default_factory=dict)
    labels: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        check_template(self.numerator)
        check_template(self.denominator)
        for dim, template in self.shared.items():
            check_label_name(dim)
            check_template(template)


@dataclass(frozen=True)
class Chart:
    """The detector's signal to chart for an incident, and its denominator for a ratio."""

    signal: str
    per: str | None = None


FollowUps = Mapping[str, Sequence[tuple[str, str]]]
"""Money follow-ups for the postmortem, (title, detail with ``{where}``), by the lead
finding's ``details["cause"]``; ``""`` holds those for any other cause."""

C = TypeVar("C", bound=DetectorConfig)


@dataclass(frozen=True)
class Detector(Generic[C]):
    """A detector as the rest of the bot sees it: declared once, at the end of its module.

    ``signals`` names the PromQL it reads (from its config), ``offsets`` the past grids it
    compares with (days and weeks back), ``history_signals`` which signals it reads there
    (None: all), ``lookback`` how much of the present it needs. ``assess`` is pure: a frame,
    a step and the keys it has raised (an open finding may explain a second slice) give its
    verdicts. ``onset`` estimates when a raised finding began. ``remembers`` is how long
    after a finding clears its problem still shows in the detector's long windows: the key
    is handed to ``assess`` with the raised ones that long (None: not at all), and judged
    as they are: it is raised again only with its signal out of its band now, and it still
    explains overlapping slices whose windows hold that problem. ``chart``, ``ratio``,
    ``impact`` (for a detector without a ratio: what its incidents cost), ``follow_ups``
    and ``causes`` (the postmortem's hypothesis for each
    ``details["cause"]`` it names) are what the evidence and the postmortem show of it.
    """

    id: str
    config: type[C]
    signals: Callable[[C], Mapping[str, str]]
    offsets: Callable[[C], Sequence[Offset]]
    lookback: Callable[[C], timedelta]
    assess: Callable[[C, Frame, int, frozenset[LabelKey]], list[Assessment]]
    onset: Callable[[C, Frame, Assessment, int], datetime | None]
    history_signals: Callable[[C], Collection[str]] | None = None
    remembers: Callable[[C], timedelta] | None = None
    chart: Chart | None = None
    ratio: RatioQueries | None = None
    impact: tuple[ImpactLine, ...] = ()
    follow_ups: FollowUps = field(default_factory=dict)
    causes: Mapping[str, str] = field(default_factory=dict)

    def follow_ups_for(self, cause: Any) -> Sequence[tuple[str, str]]:
        return self.follow_ups.get(str(cause), None) or self.follow_ups.get("", ())
