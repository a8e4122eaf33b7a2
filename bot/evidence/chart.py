"""A chart of an incident's signal: observed values, the expected value and band, the onset and
the detection time, as a small PNG for Slack.

Rendered with matplotlib's Agg canvas on a ``Figure`` of its own (no pyplot, no display, no
global state, safe from worker threads). Missing points stay gaps: NaN values and holes in
the time grid break the line and are shaded "no data", never drawn as zero. The time axis is
UTC. Images are 800x360 px at 100 dpi by default, with the PNG's software tag left out so
the same input gives the same bytes.

Empty input is refused: ``render_chart`` raises ValueError naming what is wrong when there
are no time points or when a series' length differs from the times'. A window in which every
value is missing is not an error (a metric that stopped reporting is evidence): it is drawn
with its axes, expected band and markers and a "no data in this window" note.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import matplotlib.dates as mdates
import numpy as np
from matplotlib import rcParams
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.ticker import PercentFormatter

from paytriage.detectors.signals import Frame, LabelKey, label_key
from paytriage.domain.findings import Finding

OBSERVED_COLOR = "#1f77b4"
EXPECTED_COLOR = "#2ca02c"
ONSET_COLOR = "#d62728"
DETECTED_COLOR = "#444444"
GAP_COLOR = "#999999"

WIDTH, HEIGHT, DPI = 800, 360, 100
MAX_TITLE = 90
TITLE_SIZE = 10  # points; the margins make room for it

Times = Sequence[datetime] | Sequence[float] | np.ndarray
Values = Sequence[float] | np.ndarray
Level = float | Sequence[float] | np.ndarray | None


def _seconds(t: datetime | float) -> float:
    if isinstance(t, datetime):
        return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()
    return float(t)


def _utc(t: datetime) -> datetime:
    """Naive datetimes are taken as UTC."""
    return t.astimezone(UTC) if t.tzinfo else t.replace(tzinfo=UTC)


def _level(name: str, level: Level, n: int) -> np.ndarray | None:
    """A constant or a series as an array of n floats (non-finite -> NaN); None stays None."""
    if level is None:
        return None
    if isinstance(level, int | float):
        return np.full(n, float(level) if math.isfinite(level) else np.nan)
    arr = np.asarray(level, dtype=float).ravel()
    if len(arr) != n:
        raise ValueError(f"{name} has {len(arr)} points but times has {n}")
    return np.where(np.isfinite(arr), arr, np.nan)


def _insert_gaps(
    t: np.ndarray, series: list[np.ndarray | None]
) -> tuple[np.ndarray, list[np.ndarray | None]]:
    """Break the line where the time grid has a hole (a step over 1.5 times the usual one) by
    putting a NaN point in it, so matplotlib never joins across missing data."""
    if len(t) < 3:
        return t, series
    d = np.diff(t)
    step = float(np.median(d))
    if step <= 0:
        return t, series
    holes = np.flatnonzero(d > 1.5 * step)
    if len(holes) == 0:
        return t, series
    at = holes + 1
    t2 = np.insert(t, at, t[holes] + step)
    return t2, [None if s is None else np.insert(s, at, np.nan) for s in series]


def _nan_runs(values: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) indices of the maximal runs of NaN."""
    runs, start = [], None
    for i, missing in enumerate(np.isnan(values)):
        if missing and start is None:
            start = i
        elif not missing and start is not None:
            runs.append((start, i - 1))
            start = None
    if start is not None:
        runs.append((start, len(values) - 1))
    return runs


def chart_figure(
    times: Times,
    values: Values,
    expected: Level,
    band_low: Level,
    band_high: Level,
    onset: datetime | None,
    detected_at: datetime | None,
    title: str,
    unit: str = "",
    *,
    width: int = WIDTH,
    height: int = HEIGHT,
    dpi: int = DPI,
) -> Figure:
    """The chart as a matplotlib ``Figure`` (``render_chart`` draws it to PNG bytes).

    ``times`` are datetimes (naive ones are UTC) or Unix seconds; ``values`` the observed
    signal; ``expected``, ``band_low`` and ``band_high`` a constant or a series of the same
    length (None: not drawn). ``unit`` labels the y axis; ``"ratio"`` is shown in percent.
    Raises ValueError when ``times`` is empty or a series' length differs from it.
    """
    n = len(times)
    if n == 0:
        raise ValueError("render_chart: times is empty; there is nothing to chart")
    vals = np.asarray(values, dtype=float).ravel()
    if len(vals) != n:
        raise ValueError(f"render_chart: values has {len(vals)} points but times has {n}")
    if width < 100 or height < 80 or dpi < 30:
        raise ValueError(f"render_chart: image too small ({width}x{height} px at {dpi} dpi)")
    vals = np.where(np.isfinite(vals), vals, np.nan)
    exp = _level("expected", expected, n)
    lo = _level("band_low", band_low, n)
    hi = _level("band_high", band_high, n)

    t = np.array([_seconds(x) for x in times], dtype=float)
    order = np.argsort(t, kind="stable")
    t = t[order]
    series = [vals[order], *(None if s is None else s[order] for s in (exp, lo, hi))]
    t, series = _insert_gaps(t, series)
    vals_g, exp_g, lo_g, hi_g = series
    assert vals_g is not None
    x = mdates.date2num([datetime.fromtimestamp(s, UTC) for s in t])

    # No layout engine: a constrained layout costs a second, hidden draw of the whole figure
    # (about 40 % of a chart's time); the margins are measured from the text instead.
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()

    if lo_g is not None and hi_g is not None:
        ok = np.isfinite(lo_g) & np.isfinite(hi_g)
        if ok.any():
            ax.fill_between(
                x,
                np.fmin(lo_g, hi_g),
                np.fmax(lo_g, hi_g),
                where=ok,
                color=EXPECTED_COLOR,
                alpha=0.15,
                linewidth=0,
                label="expected band",
            )
    if exp_g is not None and np.isfinite(exp_g).any():
        ax.plot(x, exp_g, color=EXPECTED_COLOR, linewidth=1.2, linestyle="--", label="expected")

    finite = np.isfinite(vals_g)
    ax.plot(x, vals_g, color=OBSERVED_COLOR, linewidth=1.6, label="observed")
    # A point with missing neighbours has no line segment: show it as a dot.
    prev_ok = np.concatenate([[False], finite[:-1]])
    next_ok = np.concatenate([finite[1:], [False]])
    lonely = finite & ~prev_ok & ~next_ok
    if lonely.any():
        ax.plot(x[lonely], vals_g[lonely], "o", color=OBSERVED_COLOR, markersize=3)

    if finite.any():
        labelled = False
        for a, b in _nan_runs(vals_g):
            left = x[a - 1] if a > 0 else x[a]
            right = x[b + 1] if b + 1 < len(x) else x[b]
            if right <= left:
                continue
            ax.axvspan(
                left,
                right,
                color=GAP_COLOR,
                alpha=0.15,
                linewidth=0,
                label=None if labelled else "no data",
            )
            labelled = True
    else:
        ax.text(
            0.5,
            0.5,
            "no data in this window",
            transform=ax.transAxes,
            ha="center",
            va="center",
            fontsize=11,
            color=GAP_COLOR,
        )

    trans = ax.get_xaxis_transform()
    for when, color, style, text, side in (
        (onset, ONSET_COLOR, "--", "onset", "right"),
        (detected_at, DETECTED_COLOR, ":", "detected", "left"),
    ):
        if when is None:
            continue
        w = _utc(when)
        xv = float(mdates.date2num(w))
        ax.axvline(xv, color=color, linestyle=style, linewidth=1.4)
        ax.text(
            xv,
            0.97,
            f" {text} {w:%H:%M} UTC ",
            transform=trans,
            rotation=90,
            ha=side,
            va="top",
            fontsize=8,
            color=color,
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.7, "pad": 1},
        )

    plotted = [s[np.isfinite(s)] for s in (vals_g, exp_g, lo_g, hi_g) if s is not None]
    low = min((float(s.min()) for s in plotted if len(s)), default=0.0)
    if low >= 0:
        ax.set_ylim(bottom=0)
    if unit == "ratio":
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
        ax.set_ylabel("percent")
    else:
        ax.set_ylabel(unit or "value")
    locator = mdates.AutoDateLocator(tz=UTC)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))
    ax.set_xlabel("time (UTC)")
    short = title if len(title) <= MAX_TITLE else title[: MAX_TITLE - 1] + "…"
    ax.set_title(short, fontsize=TITLE_SIZE)
    ax.grid(True, alpha=0.3, linewidth=0.5)
    ax.legend(loc="upper left", fontsize=8, framealpha=0.8)
    _fit_margins(fig, ax)
    return fig


def _text_px(fig: Figure, text: str, size: float | str) -> tuple[float, float]:
    """Width and height in pixels of ``text`` in the default font at ``size``."""
    if not text:
        return 0.0, 0.0
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    w, h, _ = renderer.get_text_width_height_descent(text, FontProperties(size=size), False)
    return float(w), float(h)


def _fit_margins(fig: Figure, ax: Axes) -> None:
    """Place the axes so that the title, the axis labels and the widest y tick label fit.

    The y tick labels are the ones the axis will draw: its locator over the final limits,
    through its formatter (percent, or plain numbers with matplotlib's offset above the
    axis), measured with the canvas's own text metrics. How many ticks the locator picks
    depends on the axes' height, so the margins are measured again once they are set.
    """
    px = fig.dpi / 72.0  # points to pixels
    width, height = fig.bbox.width, fig.bbox.height
    tick_h = _text_px(fig, "0", rcParams["xtick.labelsize"])[1]
    axis_label_h = _text_px(fig, "time (UTC)", rcParams["axes.labelsize"])[1]
    title_h = _text_px(fig, "T", TITLE_SIZE)[1]
    ticks_pad = (rcParams["ytick.major.size"] + rcParams["ytick.major.pad"]) * px
    label_pad = rcParams["axes.labelpad"] * px
    bottom = 10 + axis_label_h + label_pad + tick_h + ticks_pad
    top = 6 + title_h + rcParams["axes.titlepad"] * px
    right = 24  # the last time label sits on the right edge, half of it outside the axes
    fig.subplots_adjust(
        right=1 - right / width,
        bottom=min(bottom / height, 0.4),
        top=1 - min(top / height, 0.4),
    )
    ymin, ymax = ax.get_ylim()
    locator, formatter = ax.yaxis.get_major_locator(), ax.yaxis.get_major_formatter()
    tick_size = rcParams["ytick.labelsize"]
    last = None
    for _ in range(3):
        ticks = [v for v in locator() if ymin <= v <= ymax]
        labels = tuple(formatter.format_ticks(ticks)) if ticks else ()
        if labels == last:
            break
        last = labels
        label_w = max((_text_px(fig, s, tick_size)[0] for s in labels), default=0.0)
        left = 6 + axis_label_h + label_pad + label_w + ticks_pad
        fig.subplots_adjust(left=min(left / width, 0.4))


def figure_png(fig: Figure) -> bytes:
    """The figure as PNG bytes at its own size (no software tag: same input, same bytes)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi, metadata={"Software": None})
    return buf.getvalue()


def render_chart(
    times: Times,
    values: Values,
    expected: Level,
    band_low: Level,
    band_high: Level,
    onset: datetime | None,
    detected_at: datetime | None,
    title: str,
    unit: str = "",
    *,
    width: int = WIDTH,
    height: int = HEIGHT,
    dpi: int = DPI,
) -> bytes:
    """The chart as PNG bytes (``width`` x ``height`` px); see ``chart_figure``."""
    fig = chart_figure(
        times,
        values,
        expected,
        band_low,
        band_high,
        onset,
        detected_at,
        title,
        unit,
        width=width,
        height=height,
        dpi=dpi,
    )
    return figure_png(fig)


# --- series from a Frame ----------------------------------------------------------------------


@dataclass(frozen=True)
class ChartSeries:
    """A slice's ratio over part of a frame's present grid.

    ``expected`` is the median of the same ratio at the same times in past weeks (else past
    days; ``baseline`` says which, "none" when the frame has neither): NaN where unknown.
    """

    times: tuple[datetime, ...]
    values: np.ndarray
    expected: np.ndarray
    baseline: str


def _ratio(num: np.ndarray | None, den: np.ndarray | None, lo: int, hi: int) -> np.ndarray:
    size = hi - lo + 1
    if num is None or den is None:
        return np.full(size, np.nan)
    pad = max(0, hi + 1 - min(len(num), len(den)))
    n = np.concatenate([num[lo : hi + 1], np.full(pad, np.nan)])[:size]
    d = np.concatenate([den[lo : hi + 1], np.full(pad, np.nan)])[:size]
    ok = np.isfinite(n) & np.isfinite(d) & (d > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ok, n / np.where(ok, d, 1.0), np.nan)


def ratio_series(
    frame: Frame,
    numerator: str,
    denominator: str,
    key: LabelKey,
    *,
    upto: int | None = None,
    span: timedelta | None = None,
) -> ChartSeries:
    """``numerator / denominator`` of the slice ``key`` (signals rolled up into its labels),
    over the ``span`` ending at index ``upto`` (default: the whole present grid).

    A point is NaN where either signal is missing or the denominator is 0 (no attempts is
    no ratio, not a ratio of 0).
    """
    hi = frame.n - 1 if upto is None else min(max(upto, 0), frame.n - 1)
    lo = 0 if span is None else max(0, hi - frame.steps(span) + 1)
    dims = tuple(d for d, _ in key)
    values = _ratio(
        frame.rolled(numerator, 0, dims).get(key),
        frame.rolled(denominator, 0, dims).get(key),
        lo,
        hi,
    )
    expected = np.full(hi - lo + 1, np.nan)
    baseline = "none"
    for kind in ("weekly", "daily"):
        past = [
            _ratio(
                frame.rolled(numerator, k, dims).get(key),
                frame.rolled(denominator, k, dims).get(key),
                lo,
                hi,
            )
            for k in frame.history(kind)
        ]
        stacked = np.vstack(past) if past else np.empty((0, hi - lo + 1))
        have = np.isfinite(stacked).any(axis=0) if len(stacked) else np.zeros(hi - lo + 1, bool)
        if have.any():
            med = np.full(hi - lo + 1, np.nan)
            med[have] = np.nanmedian(stacked[:, have], axis=0)
            expected, baseline = med, kind
            break
    times = tuple(frame.when(i) for i in range(lo, hi + 1))
    return ChartSeries(times, values, expected, baseline)


def level_series(
    frame: Frame,
    signal: str,
    key: LabelKey,
    *,
    upto: int | None = None,
    span: timedelta | None = None,
) -> ChartSeries:
    """One signal of the slice ``key`` (rolled up into its labels) over the ``span`` ending at
    ``upto``, with the median of past weeks (else days) as expected: a count, a lag, an age."""
    hi = frame.n - 1 if upto is None else min(max(upto, 0), frame.n - 1)
    lo = 0 if span is None else max(0, hi - frame.steps(span) + 1)
    dims = tuple(d for d, _ in key)

    def part(k: int) -> np.ndarray:
        arr = frame.rolled(signal, k, dims).get(key)
        out = np.full(hi - lo + 1, np.nan)
        if arr is not None:
            seg = arr[lo : hi + 1]
            out[: len(seg)] = seg
        return out

    values = part(0)
    expected = np.full(hi - lo + 1, np.nan)
    baseline = "none"
    for kind in ("weekly", "daily"):
        past = [part(k) for k in frame.history(kind)]
        if not past:
            continue
        stacked = np.vstack(past)
        have = np.isfinite(stacked).any(axis=0)
        if have.any():
            expected = np.full(hi - lo + 1, np.nan)
            expected[have] = np.nanmedian(stacked[:, have], axis=0)
            baseline = kind
            break
    times = tuple(frame.when(i) for i in range(lo, hi + 1))
    return ChartSeries(times, values, expected, baseline)


def chart_finding(
    frame: Frame,
    finding: Finding,
    numerator: str,
    denominator: str | None = None,
    *,
    span: timedelta = timedelta(hours=3),
    detected: datetime | None = None,
) -> bytes:
    """A detector's ratio (``numerator / denominator``) or level (``numerator`` alone) for the
    finding's slice over ``span`` up to the finding, against the expected value and band it
    was judged by, with its onset and detection time (``detected``, else the finding's own
    time) marked."""
    key = label_key(finding.dimensions)
    upto = frame.index(finding.at)
    if denominator is None:
        series = level_series(frame, numerator, key, upto=upto, span=span)
    else:
        series = ratio_series(frame, numerator, denominator, key, upto=upto, span=span)
    low, high = finding.band
    return render_chart(
        series.times,
        series.values,
        finding.expected,
        low,
        high,
        finding.onset,
        detected or finding.at,
        finding.title,
        finding.unit,
    )
