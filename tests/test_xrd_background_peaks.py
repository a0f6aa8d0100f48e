"""Background removal, K-alpha doublet peak fitting and size/strain from line breadths."""

from __future__ import annotations

import math

import numpy as np
import pytest

from physics.diffraction import CU_KALPHA1_ANGSTROM, CU_KALPHA2_ANGSTROM
from physics.structures import get_structure
from sdl.analysis.xrd.background import estimate_background
from sdl.analysis.xrd.instrument import ProfileShape
from sdl.analysis.xrd.peaks import (
    doublet_profile,
    find_peaks,
    fit_peaks,
    phase_lines,
    phase_size_strain,
    size_strain,
)
from sdl.analysis.xrd.reference import library_from_structures
from simulators.sample import SampleState
from simulators.xrd import PowderDiffractometer

DIFFRACTOMETER = PowderDiffractometer()
LIBRARY = library_from_structures({p: get_structure(p) for p in ("anatase", "rutile", "brookite")})


def measure(phase_fractions, sizes, strain=None, seed=0, instrument=DIFFRACTOMETER):
    sample = SampleState("s", {}, phase_fractions, sizes, strain or {})
    return instrument.two_theta_deg, instrument.measure(sample, np.random.default_rng(seed))


def test_snip_background_follows_the_true_background_between_the_lines():
    two_theta, counts = measure({"anatase": 1.0}, {"anatase": 30.0})
    background = estimate_background(two_theta, counts)
    truth = 0.5 * DIFFRACTOMETER.background()
    ideal = DIFFRACTOMETER.ideal_pattern({"anatase": 1.0}, {"anatase": 30.0})
    between_lines = (ideal - truth) < 0.05 * truth
    assert between_lines.sum() > 500
    relative = (background - truth)[between_lines] / truth[between_lines]
    assert np.median(np.abs(relative)) < 0.03
    assert np.percentile(np.abs(background - truth) / truth, 95) < 0.08
    assert np.all(background <= counts.max())


def test_background_refuses_mismatched_input():
    with pytest.raises(ValueError, match="one length"):
        estimate_background(np.arange(10.0), np.ones(9))


def test_kalpha2_component_sits_at_the_bragg_angle_of_the_longer_wavelength():
    x = np.linspace(40.0, 60.0, 4001)
    profile = doublet_profile(x, 50.0, 1.0, 0.02, 0.01)
    theta2 = math.asin(math.sin(math.radians(25.0)) * CU_KALPHA2_ANGSTROM / CU_KALPHA1_ANGSTROM)
    second = x > 50.06
    assert x[second][np.argmax(profile[second])] == pytest.approx(
        2 * math.degrees(theta2), abs=0.01
    )
    ratio = profile[second].max() / profile[~second].max()
    assert ratio == pytest.approx(0.5, abs=0.03)
    assert np.trapezoid(profile, x) == pytest.approx(1.0, rel=0.02)


def test_doublet_fit_recovers_position_area_and_widths_within_their_uncertainty():
    rng = np.random.default_rng(3)
    x = np.linspace(30.0, 40.0, 1000)
    truth = dict(centre=35.0, area=4.0, lorentz=0.12)
    shape = ProfileShape()
    background = np.full_like(x, 200.0)
    counts = rng.poisson(
        background
        + doublet_profile(
            x, truth["centre"], truth["area"], shape.instrument_fwhm_deg(35.0), truth["lorentz"]
        )
        / (x[1] - x[0])
    ).astype(float)
    (fit,) = fit_peaks(x, counts, background, [35.05], shape)
    assert fit is not None
    assert abs(fit.two_theta_deg - 35.0) < 3 * fit.two_theta_deg_std + 1e-3
    assert abs(fit.area * (x[1] - x[0]) - 4.0) < 3 * fit.area_std * (x[1] - x[0])
    assert abs(fit.lorentz_fwhm_deg - 0.12) < 3 * fit.lorentz_fwhm_deg_std
    assert fit.lorentz_fwhm_deg_std < 0.03


def test_overlapping_lines_are_found_and_share_the_intensity():
    rng = np.random.default_rng(4)
    x = np.linspace(30.0, 40.0, 2000)
    step = x[1] - x[0]
    model = doublet_profile(x, [34.9, 35.2], [300.0, 150.0], [0.06, 0.06], [0.05, 0.05])
    counts = rng.poisson(100.0 + model / step).astype(float)
    background = estimate_background(x, counts)
    found = find_peaks(x, counts, background)
    assert np.any(np.abs(found - 34.9) < 0.03) and np.any(np.abs(found - 35.2) < 0.03)
    fits = fit_peaks(x, counts, background, [34.9, 35.2])
    areas = [f.area * step for f in fits]
    assert areas == pytest.approx([300.0, 150.0], rel=0.1)


@pytest.mark.parametrize(
    ("phase", "size_nm", "strain"),
    [("anatase", 12.0, None), ("rutile", 40.0, 5e-4), ("anatase", 80.0, 0.0)],
)
def test_scherrer_and_williamson_hall_sizes_of_a_simulated_powder(phase, size_nm, strain):
    """Sizes always; microstrain only where lines are narrow enough (WH slope is biased low
    for 5-15 nm crystallites, see docs/analysis-xrd.md)."""
    two_theta, counts = measure({phase: 1.0}, {phase: size_nm}, {phase: strain or 0.0})
    background = estimate_background(two_theta, counts)
    result = phase_size_strain(two_theta, counts, background, LIBRARY[phase])
    assert result is not None and result.n_lines >= 3
    assert result.scherrer_size_nm == pytest.approx(size_nm, rel=0.1)
    assert 0 < result.scherrer_size_nm_std < 0.1 * size_nm
    assert result.williamson_hall_size_nm == pytest.approx(size_nm, rel=0.3)
    assert result.williamson_hall_size_nm_std > 0
    if strain is not None:
        assert abs(result.microstrain - strain) < max(3 * result.microstrain_std, 5e-4)


def test_phase_lines_skip_reflections_that_overlap_another_phase():
    lines = phase_lines(LIBRARY["anatase"], DIFFRACTOMETER.two_theta_deg, [LIBRARY["brookite"]])
    brookite = LIBRARY["brookite"].two_theta_deg()
    strong = brookite[LIBRARY["brookite"].intensity > 0.05 * LIBRARY["brookite"].intensity.max()]
    assert all(np.min(np.abs(strong - line)) >= 0.5 for line in lines)


def test_size_strain_needs_a_line():
    with pytest.raises(ValueError, match="at least one"):
        size_strain([])
