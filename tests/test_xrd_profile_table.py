"""The tabulated profiles the whole-pattern fit uses agree with rendering every line."""

from __future__ import annotations

import math

import numpy as np
import pytest

from physics.structures import get_structure
from sdl.analysis.xrd.instrument import ProfileShape, render_humps, render_phase
from sdl.analysis.xrd.profile_table import lagrange_weights, profile_table
from sdl.analysis.xrd.reference import ReferencePhase, amorphous_tio2_humps

GRID = np.linspace(10.0, 80.0, 2048)
STEP = float(GRID[1] - GRID[0])


@pytest.fixture(scope="module")
def brookite() -> ReferencePhase:
    return ReferencePhase.from_structure("brookite", get_structure("brookite"))


@pytest.mark.parametrize("size_nm", [1.7, 6.3, 31.0, 240.0, 900.0])
@pytest.mark.parametrize("zero_shift_deg", [-0.43, 0.0, 0.071])
def test_a_tabulated_profile_matches_the_rendered_one(brookite, size_nm, zero_shift_deg):
    table = profile_table(brookite, ProfileShape(), 10.0, STEP, GRID.size)
    profile, _, _ = table.evaluate(math.log(size_nm), zero_shift_deg)
    rendered = render_phase(brookite, GRID, size_nm, zero_shift_deg=zero_shift_deg)
    # Near the scan's ends the table, rendered on a wider grid, has the tails of a few more
    # lines beyond the scan (at 1.7 nm lines are 5 deg wide).
    inside = slice(150, -150)
    error = np.abs(profile - rendered)[inside]
    assert np.max(error) < 2e-3 * rendered.max()


def test_derivatives_match_finite_differences(brookite):
    table = profile_table(brookite, ProfileShape(), 10.0, STEP, GRID.size)
    log_size, shift, step = math.log(23.0), 0.02, 1e-4
    _, by_log_size, by_shift = table.evaluate(log_size, shift)
    up, _, _ = table.evaluate(log_size + step, shift)
    down, _, _ = table.evaluate(log_size - step, shift)
    assert np.allclose(by_log_size, (up - down) / (2 * step), atol=1e-3 * np.abs(up).max())
    up, _, _ = table.evaluate(log_size, shift + step)
    down, _, _ = table.evaluate(log_size, shift - step)
    assert np.allclose(by_shift, (up - down) / (2 * step), atol=1e-3 * np.abs(by_shift).max())


def test_an_amorphous_hump_only_moves_with_the_zero_shift():
    humps = amorphous_tio2_humps()
    table = profile_table(humps, ProfileShape(), 10.0, STEP, GRID.size)
    profile, by_size, _ = table.evaluate(math.log(5.0), 0.2)
    rendered = render_humps(humps, GRID, zero_shift_deg=0.2)
    assert np.allclose(profile, rendered, atol=1e-6 * rendered.max())
    assert not by_size.any()


def test_interpolation_weights_reproduce_cubics():
    nodes = np.array([-1.0, 0.0, 1.0, 2.0])
    for t in (0.0, 0.3, 0.99):
        weights, derivatives = lagrange_weights(t)
        assert weights @ nodes**3 == pytest.approx(t**3)
        assert derivatives @ nodes**3 == pytest.approx(3 * t**2)


@pytest.mark.parametrize(
    ("log_size", "shift", "message"),
    [(0.0, 1.5, "zero_shift_deg must be within"), (math.log(1e5), 0.0, "crystallite size")],
)
def test_out_of_range_requests_are_refused_by_name(brookite, log_size, shift, message):
    table = profile_table(brookite, ProfileShape(), 10.0, STEP, GRID.size)
    with pytest.raises(ValueError, match=message):
        table.evaluate(log_size, shift)
