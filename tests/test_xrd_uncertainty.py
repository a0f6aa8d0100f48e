"""The whole-pattern fit's uncertainties widen where its residuals run in correlated stretches."""

from __future__ import annotations

import numpy as np
import pytest

from sdl.analysis.xrd.whole_pattern import serial_correlation_factor


def _ar1(rho: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """A first-order autoregressive series: each residual ``rho`` times the one before, plus
    white noise."""
    noise = rng.normal(size=n)
    series = np.empty(n)
    series[0] = noise[0]
    for i in range(1, n):
        series[i] = rho * series[i - 1] + noise[i]
    return series


def test_white_residuals_leave_the_variances_alone():
    factor = serial_correlation_factor(np.random.default_rng(0).normal(size=4096))
    assert 1.0 <= factor < 1.2


@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_correlated_residuals_inflate_by_their_autocorrelation_time(rho):
    # For AR(1) the integrated autocorrelation time is (1 + rho) / (1 - rho): 3 and 9.
    factor = serial_correlation_factor(_ar1(rho, 20000, np.random.default_rng(1)))
    assert factor == pytest.approx((1 + rho) / (1 - rho), rel=0.25)


def test_a_constant_residual_is_no_correlation_to_measure():
    assert serial_correlation_factor(np.full(100, 3.0)) == 1.0
