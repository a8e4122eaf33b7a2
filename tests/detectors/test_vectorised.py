"""The vectorised hot paths of a wide live cycle give what the obvious loops give."""

from __future__ import annotations

import math
import warnings

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from paytriage.detection.fetch import Grid
from paytriage.detectors.signals import LabelKey, nanquantile_rows, rollup
from paytriage.sources.prometheus import _parse_result

VALUES = st.one_of(
    st.just(math.nan), st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), st.just(0.0)
)
LABELS = st.fixed_dictionaries(
    {"psp": st.sampled_from(["adyen", "stripe", "x"])},
    optional={
        "country": st.sampled_from(["US", "DE"]),
        "method": st.sampled_from(["card", "paypal"]),
    },
)


def naive_rollup(series: dict[LabelKey, np.ndarray], dims: list[str]) -> dict[LabelKey, np.ndarray]:
    out: dict[LabelKey, list[np.ndarray]] = {}
    for key, values in series.items():
        labels = dict(key)
        if all(d in labels for d in dims):
            out.setdefault(tuple((d, labels[d]) for d in sorted(dims)), []).append(values)
    result = {}
    for k, rows in out.items():
        m = np.array(rows)
        result[k] = np.array(
            [
                sum(float(x) for x in col if not math.isnan(x))
                if (~np.isnan(col)).any()
                else math.nan
                for col in m.T
            ]
        )
    return result


@settings(max_examples=150, deadline=None)
@given(
    st.lists(LABELS, min_size=0, max_size=12, unique_by=lambda d: tuple(sorted(d.items()))),
    st.integers(min_value=1, max_value=6),
    st.sampled_from([[], ["psp"], ["country"], ["psp", "method"], ["method", "country"]]),
    st.data(),
)
def test_rollup_sums_groups_and_keeps_missing_points_missing(
    labels: list[dict[str, str]], n: int, dims: list[str], data: st.DataObject
) -> None:
    series = {
        tuple(sorted(lab.items())): np.array(data.draw(st.lists(VALUES, min_size=n, max_size=n)))
        for lab in labels
    }
    got, want = rollup(series, dims), naive_rollup(series, dims)
    assert list(got) == list(want)  # the same groups, in the order they first appear
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-12, atol=1e-9)
        assert (np.isnan(got[k]) == np.isnan(want[k])).all()


def test_rollup_of_series_of_different_lengths_still_sums_each_group() -> None:
    a = (("psp", "adyen"),)
    b = (("country", "US"), ("psp", "adyen"))
    c = (("psp", "stripe"),)
    out = rollup({a: np.array([1.0, np.nan]), b: np.array([2.0, np.nan]), c: np.ones(3)}, ["psp"])
    np.testing.assert_array_equal(out[(("psp", "adyen"),)], [3.0, np.nan])
    np.testing.assert_array_equal(out[(("psp", "stripe"),)], [1.0, 1.0, 1.0])


@settings(max_examples=150, deadline=None)
@given(
    st.lists(LABELS, min_size=1, max_size=10, unique_by=lambda d: tuple(sorted(d.items()))),
    st.integers(min_value=1, max_value=8),
    st.sampled_from([[], ["psp"], ["country"], ["psp", "method"]]),
    st.data(),
)
def test_a_grid_window_sums_as_its_own_rows_do(
    labels: list[dict[str, str]], n: int, dims: list[str], data: st.DataObject
) -> None:
    """A block of the past read further into each minute is summed from the held grid's
    sums: the same as summing the window's own rows, groups without points left out."""
    keys = tuple(tuple(sorted(lab.items())) for lab in labels)
    values = np.array([data.draw(st.lists(VALUES, min_size=n, max_size=n)) for _ in keys])
    values[:, data.draw(st.integers(0, n - 1)) :: 2] = math.nan  # rows and groups go empty
    held = Grid(keys, values)
    first = data.draw(st.integers(0, n - 1))
    count = data.draw(st.integers(1, n - first))
    window = held.columns(first, count)
    plain = {k: np.array(v) for k, v in window.rows().items()}
    for _ in range(2):  # the second time from what the window and the held grid kept
        got, want = rollup(window.rows(), dims), rollup(plain, dims)
        assert list(got) == list(want)
        for k in want:
            # The same sums up to rounding: numpy adds a column of many rows in another
            # order (pairwise) than it adds the rows of a wider block.
            np.testing.assert_allclose(got[k], want[k], rtol=1e-12, atol=1e-9)
            assert (np.isnan(got[k]) == np.isnan(want[k])).all()
            assert not got[k].flags.writeable


@settings(max_examples=150, deadline=None)
@given(
    hnp.arrays(
        float,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=9),
        elements=st.one_of(st.just(math.nan), st.floats(-1e3, 1e3, allow_nan=False)),
    ),
    st.floats(0, 1),
)
def test_row_quantiles_equal_numpys_nanquantile(windows: np.ndarray, q: float) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN row
        want = np.nanquantile(windows, q, axis=1)
    got = nanquantile_rows(windows, q)
    np.testing.assert_array_equal(got, want)


POINT_VALUES = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["NaN", "+Inf", "-Inf", "0", "1e-300"]),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**33), POINT_VALUES), max_size=8))
def test_range_points_parse_as_prometheus_writes_them(points: list[tuple[int, str]]) -> None:
    result = [{"metric": {"psp": "adyen"}, "values": [[t, v] for t, v in points]}]
    (s,) = _parse_result(result, "q")
    assert s.timestamps.tolist() == [float(t) for t, _ in points]
    assert len(s.values) == len(points)
    for got, (_, v) in zip(s.values.tolist(), points, strict=True):
        assert (math.isnan(got) and math.isnan(float(v))) or got == float(v)


def test_a_point_that_is_not_a_number_is_missing_not_an_error() -> None:
    (s,) = _parse_result([{"metric": {}, "values": [[1, "1.5"], [2, "oops"]]}], "q")
    assert s.values[0] == 1.5 and math.isnan(s.values[1])
    assert s.timestamps.tolist() == [1.0, 2.0]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(LABELS, min_size=0, max_size=12),
    st.dictionaries(
        st.sampled_from(["psp", "country", "method"]),
        st.sampled_from(["adyen", "stripe", "US", "DE", "card", "paypal", "x"]),
        max_size=3,
    ),
)
def test_a_slices_members_are_the_series_that_carry_all_its_labels(
    labels: list[dict[str, str]], slice_labels: dict[str, str]
) -> None:
    from paytriage.detectors.signals import Frame, label_key

    frame = Frame(0.0, 60.0, 3)
    series = {label_key(lab): np.full(3, float(k)) for k, lab in enumerate(labels)}
    frame.put("attempts", 0, series)
    key = label_key(slice_labels)
    want = [fine for fine in series if all(dict(fine).get(d) == v for d, v in slice_labels.items())]
    got = frame.members("attempts", key)
    assert list(got) == want  # the frame's order
    assert all(got[fine] is series[fine] for fine in want)
    assert frame.members("attempts", key) is got  # kept for the frame
