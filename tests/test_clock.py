"""Simulated time: instrument hours accumulate, wall time follows the speed-up."""

from __future__ import annotations

import math

import pytest

from simulators.clock import SimClock


def test_instant_clock_counts_instrument_time_but_never_waits():
    clock = SimClock()
    assert clock.advance(3600.0) == 0.0
    assert clock.advance(1800.0) == 0.0
    assert clock.elapsed_s == 5400.0


def test_speedup_turns_instrument_hours_into_wall_seconds():
    assert SimClock(speedup=3600.0).advance(7200.0) == pytest.approx(2.0)


@pytest.mark.parametrize("speedup", [0.0, -1.0, math.nan])
def test_clock_refuses_a_speedup_that_is_not_positive(speedup):
    with pytest.raises(ValueError, match="speedup must be > 0"):
        SimClock(speedup=speedup)


def test_negative_duration_is_refused():
    with pytest.raises(ValueError, match="duration_s must be >= 0"):
        SimClock().advance(-1.0)
