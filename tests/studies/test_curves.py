"""log_interp: the one log-log reading of an error curve (the cost curve and the data-efficiency
study both use it)."""

import math

import pytest

from dpot_lab.studies.curves import log_interp


def test_log_log_between_two_points():
    # v = 10 / e²: a straight line in log-log, so any point on it is read back exactly
    assert log_interp(0.5, 1.0, 0.25, 10.0, 160.0) == pytest.approx(40.0, rel=1e-12)
    assert log_interp(1.0, 1.0, 0.25, 10.0, 160.0) == pytest.approx(10.0, rel=1e-12)
    assert log_interp(0.25, 1.0, 0.25, 10.0, 160.0) == pytest.approx(160.0, rel=1e-12)


def test_an_exact_end_point_is_read_linearly_in_the_error():
    # e1 = 0 has no logarithm: halfway in error is halfway in log value
    assert log_interp(0.5, 1.0, 0.0, 2.0, 8.0) == pytest.approx(4.0, rel=1e-12)
    assert math.isfinite(log_interp(1e-9, 1.0, 0.0, 2.0, 8.0))
