"""The powder diffraction simulator: Bragg angles, Scherrer widths, the K-alpha doublet, noise."""

from __future__ import annotations

import math

import numpy as np
import pytest

from physics.diffraction import CU_KALPHA1_ANGSTROM, CU_KALPHA2_ANGSTROM, scherrer_fwhm_deg
from simulators.sample import SampleState
from simulators.xrd import PowderDiffractometer

DIFFRACTOMETER = PowderDiffractometer()

#: An ideal instrument (no instrumental width, no K-alpha2) isolates sample broadening.
SHARP = PowderDiffractometer(
    n_points=8192,
    caglioti_u_deg2=0.0,
    caglioti_v_deg2=0.0,
    caglioti_w_deg2=1e-6,
    kalpha2_ratio=0.0,
)


def make_sample(phase_fractions, crystallite_size_nm):
    return SampleState("s", {}, phase_fractions, crystallite_size_nm)


def peak_position_deg(instrument, profile, low_deg, high_deg):
    two_theta = instrument.two_theta_deg
    window = (two_theta > low_deg) & (two_theta < high_deg)
    return two_theta[window][np.argmax(profile[window])]


def fwhm_deg(instrument, profile, low_deg, high_deg):
    two_theta = instrument.two_theta_deg
    window = np.flatnonzero((two_theta > low_deg) & (two_theta < high_deg))
    peak = window[np.argmax(profile[window])]
    half = 0.5 * profile[peak]
    left = peak - np.argmax(profile[peak::-1] < half)
    right = peak + np.argmax(profile[peak:] < half)
    left_deg = np.interp(half, profile[[left, left + 1]], two_theta[[left, left + 1]])
    right_deg = np.interp(half, profile[[right, right - 1]], two_theta[[right, right - 1]])
    return right_deg - left_deg


def test_scan_axis_spans_the_range_in_n_points():
    two_theta = DIFFRACTOMETER.two_theta_deg
    assert two_theta.shape == (2048,)
    assert two_theta[0] == 10.0 and two_theta[-1] == 80.0


@pytest.mark.parametrize(
    ("phase", "low_deg", "high_deg", "expected_deg"),
    [
        ("anatase", 24, 26.5, 25.3),
        ("rutile", 26.5, 28.5, 27.4),
        ("rutile", 35.5, 36.7, 36.1),
        ("brookite", 30, 31.5, 30.8),
    ],
)
def test_profile_peaks_at_the_known_bragg_angle(phase, low_deg, high_deg, expected_deg):
    profile = DIFFRACTOMETER.phase_profile(phase, crystallite_size_nm=50.0)
    assert peak_position_deg(DIFFRACTOMETER, profile, low_deg, high_deg) == pytest.approx(
        expected_deg, abs=0.1
    )


def test_smaller_crystallites_give_broader_lower_peaks():
    widths, heights = [], []
    for size_nm in (80.0, 30.0, 10.0):
        profile = DIFFRACTOMETER.phase_profile("anatase", size_nm)
        widths.append(fwhm_deg(DIFFRACTOMETER, profile, 23, 28))
        heights.append(profile.max())
    assert widths[0] < widths[1] < widths[2]
    assert heights[0] > heights[1] > heights[2]


@pytest.mark.parametrize("crystallite_size_nm", [10.0, 20.0, 40.0])
def test_peak_width_follows_scherrer(crystallite_size_nm):
    profile = SHARP.phase_profile("anatase", crystallite_size_nm)
    width = fwhm_deg(SHARP, profile, 22, 29)
    expected = scherrer_fwhm_deg(crystallite_size_nm, 25.3, CU_KALPHA1_ANGSTROM)
    assert width == pytest.approx(expected, rel=0.15)


def test_microstrain_broadens_high_angle_lines_more():
    strained = SHARP.phase_profile("rutile", 200.0, microstrain=3e-3)
    relaxed = SHARP.phase_profile("rutile", 200.0)
    low = fwhm_deg(SHARP, strained, 26, 29) / fwhm_deg(SHARP, relaxed, 26, 29)
    high = fwhm_deg(SHARP, strained, 68.5, 69.4) / fwhm_deg(SHARP, relaxed, 68.5, 69.4)
    assert high > low > 1.0


def test_kalpha2_shoulder_appears_at_high_angle_with_half_the_height():
    instrument = PowderDiffractometer(n_points=8192)
    profile = instrument.phase_profile("anatase", crystallite_size_nm=500.0)
    alpha1_deg = peak_position_deg(instrument, profile, 74.5, 75.15)
    sin_theta2 = CU_KALPHA2_ANGSTROM / CU_KALPHA1_ANGSTROM * math.sin(math.radians(75.03 / 2))
    alpha2_deg = math.degrees(2 * math.asin(sin_theta2))
    assert alpha2_deg - alpha1_deg > 0.15
    shoulder_deg = peak_position_deg(instrument, profile, alpha2_deg - 0.05, alpha2_deg + 0.05)
    two_theta = instrument.two_theta_deg
    shoulder, dip = np.searchsorted(two_theta, [shoulder_deg, 0.5 * (alpha1_deg + alpha2_deg)])
    assert profile[shoulder] > profile[dip]
    ratio = profile[shoulder] / profile[np.searchsorted(two_theta, alpha1_deg)]
    assert 0.4 < ratio < 0.7


def test_phases_share_one_absolute_scale_per_unit_weight():
    # Integrated strongest lines per unit weight, rutile (110) / anatase (101): 0.79 in
    # Spurr & Myers (1957), 0.88 in Zhang & Banfield (2000); a cell-volume error is off by 2x.
    two_theta = SHARP.two_theta_deg
    step_deg = two_theta[1] - two_theta[0]
    anatase = SHARP.phase_profile("anatase", 100.0)
    rutile = SHARP.phase_profile("rutile", 100.0)
    anatase_area = anatase[(two_theta > 24.3) & (two_theta < 26.3)].sum() * step_deg
    rutile_area = rutile[(two_theta > 26.4) & (two_theta < 28.4)].sum() * step_deg
    assert 0.65 < rutile_area / anatase_area < 0.95


def test_amorphous_hump_is_broad_and_centred_near_25_deg():
    hump = DIFFRACTOMETER.phase_profile("amorphous", crystallite_size_nm=1.0)
    assert peak_position_deg(DIFFRACTOMETER, hump, 15, 35) == pytest.approx(25.0, abs=1.5)
    assert fwhm_deg(DIFFRACTOMETER, hump, 15, 35) > 5.0


def test_zero_shift_moves_every_peak_by_the_shift():
    shifted = PowderDiffractometer(n_points=8192, zero_shift_deg=0.2)
    reference = PowderDiffractometer(n_points=8192)
    moved_profile = shifted.phase_profile("anatase", 50.0)
    still_profile = reference.phase_profile("anatase", 50.0)
    for low_deg, high_deg in ((24.5, 26.0), (53.5, 54.5)):
        moved = peak_position_deg(shifted, moved_profile, low_deg, high_deg)
        still = peak_position_deg(reference, still_profile, low_deg, high_deg)
        assert moved - still == pytest.approx(0.2, abs=0.02)


def test_ideal_pattern_of_nothing_crystalline_is_the_background():
    exposure_s = 2.0
    pattern = DIFFRACTOMETER.ideal_pattern({"anatase": 0.0}, {}, exposure_s=exposure_s)
    np.testing.assert_allclose(pattern, exposure_s * DIFFRACTOMETER.background())
    assert np.all(np.diff(pattern) <= 0)


def test_ideal_pattern_is_the_weighted_sum_of_profiles_plus_background():
    fractions = {"anatase": 0.6, "rutile": 0.3, "amorphous": 0.1}
    sizes = {"anatase": 20.0, "rutile": 50.0}
    expected = (
        0.6 * DIFFRACTOMETER.phase_profile("anatase", 20.0)
        + 0.3 * DIFFRACTOMETER.phase_profile("rutile", 50.0)
        + 0.1 * DIFFRACTOMETER.phase_profile("amorphous", 1.0)
        + DIFFRACTOMETER.background()
    )
    pattern = DIFFRACTOMETER.ideal_pattern(fractions, sizes, exposure_s=1.0)
    np.testing.assert_allclose(pattern, expected)


def test_measured_counts_are_poisson_around_the_ideal_pattern():
    sample = make_sample({"anatase": 0.7, "amorphous": 0.3}, {"anatase": 15.0})
    expected = DIFFRACTOMETER.ideal_pattern(sample.phase_fractions, sample.crystallite_size_nm)
    counts = DIFFRACTOMETER.measure(sample, np.random.default_rng(0))
    assert counts.dtype == np.float64 and counts.shape == (2048,)
    assert np.all(counts == np.round(counts)) and np.all(counts >= 0)
    pulls = (counts - expected) / np.sqrt(expected)
    assert abs(pulls.mean()) < 0.1
    assert pulls.std() == pytest.approx(1.0, abs=0.1)


def test_seeded_measurements_repeat_and_different_seeds_differ():
    sample = make_sample({"rutile": 1.0}, {"rutile": 40.0})
    first = DIFFRACTOMETER.measure(sample, np.random.default_rng(42))
    again = DIFFRACTOMETER.measure(sample, np.random.default_rng(42))
    other = DIFFRACTOMETER.measure(sample, np.random.default_rng(43))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_longer_exposure_counts_proportionally_more_and_takes_longer():
    sample = make_sample({"anatase": 1.0}, {"anatase": 30.0})
    short = DIFFRACTOMETER.measure(sample, np.random.default_rng(1), exposure_s=0.5)
    long = DIFFRACTOMETER.measure(sample, np.random.default_rng(1), exposure_s=2.0)
    assert long.sum() / short.sum() == pytest.approx(4.0, rel=0.01)
    assert DIFFRACTOMETER.duration_s(2.0) - DIFFRACTOMETER.duration_s(0.5) == pytest.approx(
        1.5 * 2048
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: DIFFRACTOMETER.phase_profile("quartz", 10.0), "known phases are"),
        (lambda: DIFFRACTOMETER.phase_profile("anatase", 0.0), "crystallite_size_nm must be > 0"),
        (lambda: DIFFRACTOMETER.ideal_pattern({"rutile": 1.0}, {}), "no crystallite_size_nm"),
        (lambda: DIFFRACTOMETER.duration_s(0.0), "exposure_s must be > 0"),
        (
            lambda: PowderDiffractometer(two_theta_min_deg=80.0, two_theta_max_deg=10.0),
            "two_theta_min_deg < two_theta_max_deg",
        ),
        (lambda: PowderDiffractometer(caglioti_w_deg2=-1.0), "non-positive FWHM"),
    ],
)
def test_bad_settings_are_refused_with_the_reason(call, message):
    with pytest.raises(ValueError, match=message):
        call()
