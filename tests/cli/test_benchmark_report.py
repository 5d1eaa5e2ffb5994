"""The benchmark's scaling slopes (benchmarks/report.py) against numpy's least-squares fit."""
import numpy as np
import pytest

from benchmarks.report import loglog_slope


@pytest.mark.parametrize("power", [0.5, 1.0, 2.0, -1.0])
def test_loglog_slope_recovers_a_power_law(power):
    xs = [16, 64, 128, 300]
    rng = np.random.default_rng(0)
    ys = [3.0 * x ** power * float(np.exp(rng.normal(0, 0.05))) for x in xs]
    expected = np.polyfit(np.log(xs), np.log(ys), 1)[0]
    assert loglog_slope(xs, ys) == pytest.approx(expected, rel=1e-12)


def test_loglog_slope_needs_two_distinct_positive_points():
    assert loglog_slope([16], [1.0]) is None
    assert loglog_slope([16, 16], [1.0, 2.0]) is None
    assert loglog_slope([16, 64, 128], [None, 0.0, 2.0]) is None
