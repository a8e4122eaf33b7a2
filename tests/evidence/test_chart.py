"""Chart evidence: a small PNG of the signal with its expected band, onset and detection time;
gaps stay gaps; series built from a Frame."""

from __future__ import annotations

import io
import math
from datetime import UTC, datetime, timedelta

import matplotlib.dates as mdates
import numpy as np
import pytest
from matplotlib.axis import Axis
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.text import Text
from PIL import Image

from paytriage.detectors.signals import Frame, LabelKey, Offset
from paytriage.domain.findings import Finding, Severity
from paytriage.evidence.chart import (
    OBSERVED_COLOR,
    chart_figure,
    chart_finding,
    figure_png,
    ratio_series,
    render_chart,
)

T0 = datetime(2026, 11, 16, 8, 0, tzinfo=UTC)
N = 180
TIMES = [T0 + timedelta(minutes=i) for i in range(N)]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def step_values() -> np.ndarray:
    v = np.full(N, 0.04)
    v[120:] = 0.30
    return v


def render(onset: datetime | None, detected: datetime | None = None, **kw: object) -> bytes:
    args: dict[str, object] = {
        "times": TIMES,
        "values": step_values(),
        "expected": 0.04,
        "band_low": 0.03,
        "band_high": 0.05,
        "onset": onset,
        "detected_at": detected,
        "title": "Technical errors up at psp=stripe",
        "unit": "ratio",
    }
    args.update(kw)
    return render_chart(**args)  # type: ignore[arg-type]


def pixels(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as im:
        return np.asarray(im.convert("RGB"), dtype=int)


def changed_columns(a: bytes, b: bytes) -> np.ndarray:
    return np.flatnonzero(np.any(pixels(a) != pixels(b), axis=(0, 2)))


def test_a_valid_small_png_of_the_requested_size() -> None:
    png = render(T0 + timedelta(minutes=120), T0 + timedelta(minutes=124))
    assert png.startswith(PNG_SIGNATURE)
    with Image.open(io.BytesIO(png)) as im:
        assert im.format == "PNG" and im.size == (800, 360)
    assert len(png) < 150_000
    assert render(T0 + timedelta(minutes=120), T0 + timedelta(minutes=124)) == png, (
        "the same input gives the same bytes"
    )
    small = render(None, width=400, height=200, dpi=80)
    with Image.open(io.BytesIO(small)) as im:
        assert im.size == (400, 200)


def test_the_onset_line_moves_with_the_onset() -> None:
    plain = render(None)
    early = render(T0 + timedelta(minutes=30))
    late = render(T0 + timedelta(minutes=150))
    assert early != late and early != plain
    e, lt = changed_columns(plain, early), changed_columns(plain, late)
    assert len(e) and len(lt)
    # each marker changes a narrow band of columns (the line and its vertical label) ...
    assert e.max() - e.min() < 40 and lt.max() - lt.min() < 40
    # ... at the position of its time on the axis
    assert e.max() < lt.min()
    width = pixels(plain).shape[1]
    assert e.mean() < 0.4 * width < 0.6 * width < lt.mean()


def test_onset_and_detection_are_both_marked_and_labelled() -> None:
    onset, detected = T0 + timedelta(minutes=120), T0 + timedelta(minutes=124)
    fig = chart_figure(TIMES, step_values(), 0.04, 0.03, 0.05, onset, detected, "title", "ratio")
    ax = fig.axes[0]
    texts = [t.get_text().strip() for t in ax.texts]
    assert "onset 10:00 UTC" in texts and "detected 10:04 UTC" in texts
    assert ax.get_xlabel() == "time (UTC)" and ax.get_ylabel() == "percent"
    assert ax.get_title() == "title"
    leg = ax.get_legend()
    assert leg is not None
    legend = [t.get_text() for t in leg.get_texts()]
    assert legend == ["expected band", "expected", "observed"]


def test_nan_gaps_are_not_drawn_as_zero() -> None:
    v = np.full(N, 0.5)
    v[60:120] = np.nan
    fig = chart_figure(TIMES, v, None, None, None, None, None, "gap", "ratio")
    ax = fig.axes[0]
    observed = next(ln for ln in ax.lines if ln.get_label() == "observed")
    y = np.asarray(observed.get_ydata(), dtype=float)
    assert np.isnan(y[60:120]).all() and not (y == 0).any()
    spans = [p for p in ax.patches if isinstance(p, Rectangle) and p.get_label() == "no data"]
    assert len(spans) == 1

    # In the image, the gap's columns hold no pixel of the observed line; the data's do.
    png = figure_png(fig)
    img = pixels(png)
    height = img.shape[0]
    target = np.array([int(OBSERVED_COLOR[i : i + 2], 16) for i in (1, 3, 5)])
    line_px = np.all(np.abs(img - target) < 30, axis=2)

    def column(t: datetime, level: float = 0.5) -> np.ndarray:
        """The pixels within 6 px of ``level`` at time t."""
        x, y = ax.transData.transform((mdates.date2num(t), level))
        row = height - round(y)
        return line_px[row - 6 : row + 7, round(x)]

    assert column(T0 + timedelta(minutes=30)).any()
    assert not column(T0 + timedelta(minutes=90)).any()
    assert not column(T0 + timedelta(minutes=90), 0.0).any()
    zero_filled = render_chart(
        TIMES, np.nan_to_num(v), None, None, None, None, None, "gap", "ratio"
    )
    assert zero_filled != png


def test_holes_in_the_time_grid_break_the_line() -> None:
    times = TIMES[:60] + TIMES[120:]
    values = np.full(len(times), 0.2)
    fig = chart_figure(times, values, None, None, None, None, None, "holes", "")
    observed = next(ln for ln in fig.axes[0].lines if ln.get_label() == "observed")
    y = np.asarray(observed.get_ydata(), dtype=float)
    assert len(y) == len(times) + 1 and np.isnan(y).sum() == 1
    assert isinstance(observed, Line2D)


def test_all_missing_values_still_chart_with_a_note() -> None:
    values = np.full(N, np.nan)
    fig = chart_figure(TIMES, values, 0.04, 0.03, 0.05, T0 + timedelta(minutes=120), None, "x")
    assert "no data in this window" in [t.get_text() for t in fig.axes[0].texts]
    png = figure_png(fig)
    assert png.startswith(PNG_SIGNATURE)


def test_empty_or_mismatched_series_are_refused_with_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="times is empty"):
        render_chart([], [], None, None, None, None, None, "t", "")
    with pytest.raises(ValueError, match="values has 3 points but times has 4"):
        render_chart(TIMES[:4], [1.0, 2.0, 3.0], None, None, None, None, None, "t", "")
    with pytest.raises(ValueError, match="band_high has 2 points but times has 4"):
        render_chart(TIMES[:4], [1.0] * 4, 1.0, 0.5, [1.0, 2.0], None, None, "t", "")


@pytest.mark.parametrize(
    ("values", "unit"),
    [
        (step_values(), "ratio"),
        (np.linspace(120_000.0, 9_000_000.0, N), "attempts/min"),  # an offset ("1e6") on top
        (np.linspace(-2.5e6, 2.5e6, N), "EUR"),
        (np.linspace(0.0, 3.0, N), ""),
    ],
    ids=["percent", "large", "negative", "small"],
)
@pytest.mark.parametrize(("width", "height"), [(800, 360), (400, 200)])
def test_every_label_fits_in_the_image_and_none_overlaps_the_plot(
    values: np.ndarray, unit: str, width: int, height: int
) -> None:
    """The margins are measured, not laid out by matplotlib: the widest y tick label, the
    axis labels, the date offset and the title all stay inside the image and outside the
    plot, whatever the size of the numbers."""
    fig = chart_figure(
        TIMES, values, None, None, None, None, None, "A title", unit, width=width, height=height
    )
    fig.canvas.draw()  # type: ignore[attr-defined]
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    ax = fig.axes[0]
    plot = ax.get_window_extent(renderer)
    image = fig.bbox
    ticks = {axis: _drawn_tick_labels(axis) for axis in (ax.xaxis, ax.yaxis)}
    texts = [
        *ticks[ax.yaxis],
        *ticks[ax.xaxis],
        ax.yaxis.label,
        ax.xaxis.label,
        ax.title,
        ax.yaxis.get_offset_text(),
        ax.xaxis.get_offset_text(),
    ]
    drawn = [t for t in texts if t.get_visible() and t.get_text()]
    assert len(drawn) >= 6
    for t in drawn:
        box = t.get_window_extent(renderer)
        inside = (
            box.x0 >= image.x0 - 0.5
            and box.x1 <= image.x1 + 0.5
            and box.y0 >= image.y0 - 0.5
            and box.y1 <= image.y1 + 0.5
        )
        assert inside, f"{t.get_text()!r} at {box} leaves the {width}x{height} image"
        assert not box.overlaps(plot), f"{t.get_text()!r} at {box} is drawn over the plot"
    # The y axis label does not run into the widest tick label.
    label = ax.yaxis.label.get_window_extent(renderer)
    assert label.x1 <= min(t.get_window_extent(renderer).x0 for t in ticks[ax.yaxis])


def _drawn_tick_labels(axis: Axis) -> list[Text]:
    """The tick labels matplotlib draws: those of ticks inside the axis's view."""
    lo, hi = sorted(axis.get_view_interval())
    return [
        tick.label1
        for tick in axis.get_major_ticks()
        if lo <= tick.get_loc() <= hi and tick.label1.get_text()
    ]


def test_unix_seconds_and_naive_datetimes_are_utc() -> None:
    secs = [t.timestamp() for t in TIMES]
    naive = [t.replace(tzinfo=None) for t in TIMES]
    a = render(None, times=secs)
    b = render(None, times=naive)
    assert a == b == render(None)


# --- series from a Frame ----------------------------------------------------------------------

STRIPE = (("psp", "stripe"),)


def frame_with_history() -> Frame:
    offsets = (Offset(0, "present"), Offset(7 * 86400.0, "weekly"), Offset(14 * 86400.0, "weekly"))
    f = Frame(T0.timestamp(), 60.0, N, offsets)
    de: LabelKey = (("country", "DE"), ("psp", "stripe"))
    fr: LabelKey = (("country", "FR"), ("psp", "stripe"))
    attempts: dict[LabelKey, np.ndarray] = {de: np.full(N, 300.0), fr: np.full(N, 100.0)}
    attempts[de][50] = 0.0
    attempts[fr][50] = 0.0  # no attempts at all: no ratio, not 0
    attempts[de][70] = np.nan
    attempts[fr][70] = np.nan  # missing data
    fails: dict[LabelKey, np.ndarray] = {de: np.full(N, 12.0), fr: np.full(N, 4.0)}
    fails[de][120:] = 120.0
    f.put("attempts", 0, attempts)
    f.put("failures", 0, fails)
    for k, rate in ((1, 0.03), (2, 0.05)):
        f.put("attempts", k, {de: np.full(N + 30, 300.0), fr: np.full(N + 30, 100.0)})
        f.put("failures", k, {de: np.full(N + 30, 300 * rate), fr: np.full(N + 30, 100 * rate)})
    return f


def test_ratio_series_rolls_a_slice_up_and_reads_the_past_weeks() -> None:
    fr = frame_with_history()
    s = ratio_series(fr, "failures", "attempts", STRIPE, upto=150, span=timedelta(hours=2))
    assert len(s.times) == len(s.values) == 120
    assert s.times[0] == T0 + timedelta(minutes=31) and s.times[-1] == T0 + timedelta(minutes=150)
    assert s.values[0] == pytest.approx(16 / 400)
    assert math.isnan(s.values[50 - 31]) and math.isnan(s.values[70 - 31])
    assert s.values[120 - 31] == pytest.approx(124 / 400)
    assert s.baseline == "weekly"
    assert s.expected == pytest.approx(np.full(120, 0.04))


def test_ratio_series_of_an_unknown_slice_is_all_missing() -> None:
    s = ratio_series(frame_with_history(), "failures", "attempts", (("psp", "nope"),))
    assert len(s.values) == N and np.isnan(s.values).all() and s.baseline == "none"


def test_a_finding_is_charted_from_its_frame() -> None:
    fr = frame_with_history()
    finding = Finding(
        detector="decline_spike",
        severity=Severity.critical,
        dimensions={"psp": "stripe"},
        title="Issuer declines up at psp=stripe",
        observed=0.31,
        expected=0.04,
        band=(0.03, 0.05),
        onset=T0 + timedelta(minutes=120),
        at=T0 + timedelta(minutes=124),
        unit="ratio",
    )
    png = chart_finding(fr, finding, "failures", "attempts", span=timedelta(hours=2))
    with Image.open(io.BytesIO(png)) as im:
        assert im.size == (800, 360)
    later = chart_finding(
        fr,
        Finding(**{**finding.__dict__, "onset": T0 + timedelta(minutes=100)}),
        "failures",
        "attempts",
        span=timedelta(hours=2),
    )
    assert later != png


def test_a_refreshed_chart_keeps_the_incidents_title_band_and_detection_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 20, finding 1: refreshed charts were titled after the latest reading, drew the
    band learnt during the incident (0-83 %, swallowing the spike) and marked the refresh
    as "detected"."""
    from paytriage.config.models import EvidenceConfig
    from paytriage.domain.incidents import Grouper
    from paytriage.evidence import gather

    drawn: list[tuple[Finding, datetime | None]] = []

    def capture(
        frame: Frame, f: Finding, *_: object, detected: datetime | None = None, **__: object
    ) -> bytes:
        drawn.append((f, detected))
        return b"png"

    monkeypatch.setattr(gather, "chart_finding", capture)
    paged = Finding(
        "decline_spike", Severity.critical, {"psp": "stripe"}, "Technical errors up at psp=stripe",
        0.31, 0.04, (0.03, 0.05), T0 + timedelta(minutes=120), T0 + timedelta(minutes=124),
        unit="ratio",
    )  # fmt: skip
    g = Grouper(timedelta(minutes=15), timedelta(hours=2))
    inc = g.raised(paged, paged.at)
    later = Finding(
        **{
            **paged.__dict__,
            "title": "Issuer declines up at psp=stripe",
            "expected": 0.3,
            "band": (0.0, 0.83),
            "at": T0 + timedelta(minutes=150),
        }
    )
    g.updated(later)
    gatherer = gather.EvidenceGatherer(None, None, EvidenceConfig())  # type: ignore[arg-type]
    assert gatherer._chart(inc, later, frame_with_history()) == b"png"
    [(shown, detected)] = drawn
    assert shown.title == "Technical errors up at psp=stripe"
    assert (shown.expected, shown.band) == (0.04, (0.03, 0.05))
    assert shown.at == later.at  # the data run up to now
    assert detected == paged.at


def test_a_chart_zooms_on_the_incident_with_context_before_its_onset() -> None:
    """Issue 20, finding 1: three hours of traffic made a 10-minute outage a blip."""
    from paytriage.evidence.gather import zoom

    onset = T0 + timedelta(hours=5)
    widest = timedelta(hours=3)
    assert zoom(onset, onset + timedelta(minutes=10), widest) == timedelta(hours=1)
    assert zoom(onset, onset + timedelta(minutes=40), widest) == timedelta(minutes=120)
    assert zoom(onset, onset + timedelta(hours=2), widest) == widest
    assert zoom(onset, onset - timedelta(minutes=5), widest) == timedelta(hours=1)
