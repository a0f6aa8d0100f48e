"""Diffraction formulas checked against known values: Bragg angles, Scherrer widths, peak areas."""

from __future__ import annotations

import math

import numpy as np
import pytest

from physics import diffraction
from physics.phases import AMORPHOUS, CRYSTALLINE_PHASES, TIO2_PHASES, TIO2_POLYMORPHS

#: Anatase (101), d = 3.520 angstrom: 2-theta 25.28 deg with Cu K-alpha1 (ICDD PDF 21-1272).
ANATASE_101_D_ANGSTROM = 3.520


def test_bragg_angle_of_anatase_101_with_cu_kalpha1():
    two_theta = diffraction.bragg_two_theta_deg(
        ANATASE_101_D_ANGSTROM, diffraction.CU_KALPHA1_ANGSTROM
    )
    assert two_theta == pytest.approx(25.28, abs=0.01)
    assert diffraction.d_spacing_angstrom(
        two_theta, diffraction.CU_KALPHA1_ANGSTROM
    ) == pytest.approx(ANATASE_101_D_ANGSTROM)


def test_reflection_beyond_the_wavelength_has_no_bragg_angle():
    assert np.isnan(diffraction.bragg_two_theta_deg(0.7, diffraction.CU_KALPHA1_ANGSTROM))


def test_scherrer_width_of_10_nm_crystallites_at_the_anatase_line():
    # K lambda / (D cos theta) = 0.9 * 1.5406 A / (100 A * cos 12.64 deg) = 0.01421 rad.
    width_deg = diffraction.scherrer_fwhm_deg(10.0, 25.28, diffraction.CU_KALPHA1_ANGSTROM)
    assert width_deg == pytest.approx(0.8142, rel=1e-3)
    breadth_cos_theta_rad = math.radians(width_deg) * math.cos(math.radians(12.64))
    assert diffraction.scherrer_size_nm(
        breadth_cos_theta_rad, diffraction.CU_KALPHA1_ANGSTROM
    ) == pytest.approx(10.0)


def test_strain_and_instrument_widths():
    assert diffraction.strain_fwhm_deg(1e-3, 90.0) == pytest.approx(math.degrees(4e-3))
    assert diffraction.caglioti_fwhm2_deg2(90.0, 0.004, -0.003, 0.004) == pytest.approx(0.005)
    assert diffraction.caglioti_fwhm2_deg2(1e-9, 0.004, -0.003, 0.004) == pytest.approx(0.004)


@pytest.mark.parametrize(
    ("gauss_fwhm_deg", "lorentz_fwhm_deg"), [(0.1, 0.0), (0.0, 0.1), (0.08, 0.05)]
)
def test_pseudo_voigt_has_unit_area_and_the_expected_width(gauss_fwhm_deg, lorentz_fwhm_deg):
    x_deg = np.linspace(-200.0, 200.0, 800_001)
    profile = diffraction.pseudo_voigt_sum(
        x_deg,
        np.array([0.0]),
        np.array([1.0]),
        np.array([gauss_fwhm_deg]),
        np.array([lorentz_fwhm_deg]),
    )
    assert np.trapezoid(profile, x_deg) == pytest.approx(1.0, abs=2e-3)
    above_half = x_deg[profile >= 0.5 * profile.max()]
    # TCH: the FWHM of the Voigt is within about 1 % of its five-term polynomial.
    voigt_fwhm = 0.5346 * lorentz_fwhm_deg + math.hypot(0.4654 * lorentz_fwhm_deg, gauss_fwhm_deg)
    assert above_half.max() - above_half.min() == pytest.approx(voigt_fwhm, rel=0.02)


def test_hump_in_q_keeps_its_area_on_a_two_theta_axis():
    two_theta = np.linspace(1.0, 179.0, 20_001)
    profile = diffraction.q_humps_per_deg(
        two_theta, [(2.0, 0.5, 3.0)], diffraction.CU_KALPHA1_ANGSTROM
    )
    assert np.trapezoid(profile, two_theta) == pytest.approx(3.0, rel=1e-3)
    peak_q = 4 * math.pi * math.sin(math.radians(0.5 * two_theta[profile.argmax()]))
    assert peak_q / diffraction.CU_KALPHA1_ANGSTROM == pytest.approx(2.0, abs=0.01)


def test_phase_lists_are_consistent():
    assert TIO2_PHASES == (AMORPHOUS, *TIO2_POLYMORPHS)
    assert set(TIO2_POLYMORPHS) <= set(CRYSTALLINE_PHASES)
    assert AMORPHOUS not in CRYSTALLINE_PHASES
