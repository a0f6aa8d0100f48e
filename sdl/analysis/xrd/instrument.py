"""The analysis's own model of the diffractometer: a calibration and the profiles it renders.

The analysis never borrows the simulator's instrument: what it knows of the diffractometer
is :class:`ProfileShape`, the wavelengths, K-alpha2 ratio and Caglioti broadening as
calibrated on a line-profile standard (e.g. LaB6), and what it fits (zero shift, sizes,
strains) is passed to the renderers. The defaults are a Cu-tube lab instrument.

:func:`render_phase` turns the reflections of a :class:`~sdl.analysis.xrd.reference.
ReferencePhase` into a Cu K-alpha1/K-alpha2 profile on any 2-theta grid with the formulas
of :mod:`physics.diffraction`: Thompson-Cox-Hastings pseudo-Voigt lines, Lorentzian width
from crystallite size (Scherrer), Gaussian width from the instrument (Caglioti) and
microstrain, every line doubled for K-alpha2 at the instrument's intensity ratio; a relative
lattice strain moves all lines (d -> d (1 + strain)) and a goniometer zero shift moves the
whole pattern. An instrument Lorentzian (``X / cos theta``), where calibrated, adds to the
Scherrer width. :func:`render_humps` does the same for the humps of an amorphous phase.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from physics.diffraction import (
    CU_KALPHA1_ANGSTROM,
    CU_KALPHA2_ANGSTROM,
    CU_KALPHA2_RATIO,
    caglioti_fwhm2_deg2,
    pseudo_voigt_sum,
    q_humps_per_deg,
    scherrer_fwhm_deg,
    strain_fwhm_deg,
)
from sdl.analysis.xrd.reference import ReferencePhase

#: 2-theta margin, deg, beyond the grid within which lines still add their tails.
_LINE_MARGIN_DEG = 5.0

#: Smallest instrument FWHM^2, deg^2, where a calibration extrapolates to a non-positive one.
_MIN_FWHM2_DEG2 = 1e-8


@dataclass(frozen=True)
class ProfileShape:
    """What the instrument contributes to every line: wavelengths and Gaussian broadening.

    Attributes
    ----------
    wavelength_angstrom, wavelength2_angstrom, kalpha2_ratio
        K-alpha1 and K-alpha2 wavelengths and their intensity ratio (0.5 for Cu).
    caglioti_uvw_deg2
        Caglioti U, V, W: instrument FWHM^2 = U tan^2(theta) + V tan(theta) + W, deg^2, as
        calibrated on a line-profile standard (e.g. LaB6); the default is a typical laboratory
        Bragg-Brentano instrument.
    lorentz_x_deg
        The instrument's Lorentzian FWHM ``X / cos(theta)``, deg (GSAS's LX): what the
        source's emission profile and the slits add that is not Gaussian. It adds to the
        size broadening; 0 for an instrument calibrated as purely Gaussian.
    """

    wavelength_angstrom: float = CU_KALPHA1_ANGSTROM
    wavelength2_angstrom: float = CU_KALPHA2_ANGSTROM
    kalpha2_ratio: float = CU_KALPHA2_RATIO
    caglioti_uvw_deg2: tuple[float, float, float] = (0.004, -0.003, 0.004)
    lorentz_x_deg: float = 0.0

    def instrument_fwhm_deg(self, two_theta_deg: np.ndarray | float) -> np.ndarray:
        """Gaussian instrument FWHM at these 2-theta, deg."""
        fwhm2 = caglioti_fwhm2_deg2(two_theta_deg, *self.caglioti_uvw_deg2)
        return np.sqrt(np.maximum(fwhm2, _MIN_FWHM2_DEG2))

    def instrument_lorentz_fwhm_deg(self, two_theta_deg: np.ndarray | float) -> np.ndarray:
        """Lorentzian instrument FWHM at these 2-theta, deg."""
        theta = np.radians(0.5 * np.asarray(two_theta_deg, dtype=float))
        return self.lorentz_x_deg / np.cos(theta)


def render_phase(
    phase: ReferencePhase,
    two_theta_deg: np.ndarray,
    crystallite_size_nm: float,
    *,
    shape: ProfileShape = ProfileShape(),
    zero_shift_deg: float = 0.0,
    lattice_strain: float = 0.0,
    microstrain: float = 0.0,
) -> np.ndarray:
    """Profile of ``phase`` at unit scale on the grid ``two_theta_deg`` (no background).

    Lines within 5 deg outside the grid still add their tails; lines whose Bragg angle does
    not exist for the wavelength are skipped.
    """
    if not crystallite_size_nm > 0:
        raise ValueError(f"crystallite_size_nm must be > 0, got {crystallite_size_nm}")
    two_theta_deg = np.asarray(two_theta_deg, dtype=float)
    low, high = two_theta_deg[0] - _LINE_MARGIN_DEG, two_theta_deg[-1] + _LINE_MARGIN_DEG
    centres, areas, wavelengths = [], [], []
    for wavelength, ratio in (
        (shape.wavelength_angstrom, 1.0),
        (shape.wavelength2_angstrom, shape.kalpha2_ratio),
    ):
        two_theta = phase.two_theta_deg(wavelength, lattice_strain)
        inside = np.isfinite(two_theta) & (two_theta > low) & (two_theta < high)
        centres.append(two_theta[inside])
        areas.append(ratio * phase.profile_intensity[inside])
        wavelengths.append(np.full(int(inside.sum()), wavelength))
    centre = np.concatenate(centres)
    if centre.size == 0:
        return np.zeros_like(two_theta_deg)
    lorentz_fwhm_deg = scherrer_fwhm_deg(
        crystallite_size_nm, centre, np.concatenate(wavelengths)
    ) + shape.instrument_lorentz_fwhm_deg(centre)
    gauss_fwhm_deg = np.hypot(
        shape.instrument_fwhm_deg(centre), strain_fwhm_deg(microstrain, centre)
    )
    return pseudo_voigt_sum(
        two_theta_deg,
        centre + zero_shift_deg,
        np.concatenate(areas),
        gauss_fwhm_deg,
        lorentz_fwhm_deg,
    )


def render_humps(
    humps: Sequence[tuple[float, float, float]],
    two_theta_deg: np.ndarray,
    *,
    shape: ProfileShape = ProfileShape(),
    zero_shift_deg: float = 0.0,
) -> np.ndarray:
    """Profile of an amorphous phase's humps at unit scale on the grid ``two_theta_deg``.

    ``humps`` are ``(centre Q, FWHM Q, area)`` (Q in 1/angstrom), e.g.
    :func:`~sdl.analysis.xrd.reference.amorphous_tio2_humps`; they are far broader than the
    instrument and the K-alpha doublet, which are neglected.
    """
    two_theta_deg = np.asarray(two_theta_deg, dtype=float)
    return q_humps_per_deg(two_theta_deg - zero_shift_deg, humps, shape.wavelength_angstrom)
