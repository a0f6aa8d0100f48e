"""Reference powder patterns of any crystalline phase, computed from its crystal structure.

A :class:`ReferencePhase` holds the reflections of one phase (d-spacings and intensities per
unit weight fraction) computed once by pymatgen's
:class:`~pymatgen.analysis.diffraction.xrd.XRDCalculator` from a
:class:`~pymatgen.core.Structure`. Intensities are ``|F|^2 m LP / (rho V^2)`` (Hill & Howard,
J. Appl. Cryst. 20 (1987) 467): in a mixture the mass absorption coefficient is common to
all phases, so the scale factor that multiplies this profile is proportional to the phase's
weight fraction. This is the reference-intensity-ratio (RIR) conversion with the RIRs
computed from the structures instead of looked up.

:func:`render_phase` turns the reflections into a Cu K-alpha1/K-alpha2 profile on any
2-theta grid: Thompson-Cox-Hastings pseudo-Voigt lines, Lorentzian width from crystallite
size (Scherrer), Gaussian width from the instrument (Caglioti) and microstrain, every line
doubled for K-alpha2 at the instrument's intensity ratio; a relative lattice strain moves all
lines (d -> d (1 + strain)) and a goniometer zero shift moves the whole pattern.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from pymatgen.analysis.diffraction.xrd import XRDCalculator
from pymatgen.core import Structure

from simulators.xrd import (
    CU_KALPHA1_ANGSTROM,
    SCHERRER_K,
    PowderDiffractometer,
    pseudo_voigt_sum,
)

#: Reflections weaker than this fraction of a phase's strongest are dropped.
_MIN_RELATIVE_INTENSITY = 2e-3

#: 2-theta range (deg, at K-alpha1) over which reflections are computed once per phase.
_REFLECTION_RANGE_DEG = (2.0, 150.0)

_DEFAULT_INSTRUMENT = PowderDiffractometer()


@dataclass(frozen=True)
class ProfileShape:
    """What the instrument contributes to every line: wavelengths and Gaussian broadening.

    Attributes
    ----------
    wavelength_angstrom, wavelength2_angstrom, kalpha2_ratio
        K-alpha1 and K-alpha2 wavelengths and their intensity ratio (0.5 for Cu).
    caglioti_u_deg2, caglioti_v_deg2, caglioti_w_deg2
        Instrument FWHM^2 = U tan^2(theta) + V tan(theta) + W, deg^2, as calibrated on a
        line-profile standard (e.g. LaB6).

    Defaults are those of :class:`~simulators.xrd.PowderDiffractometer` (Cu tube).
    """

    wavelength_angstrom: float = _DEFAULT_INSTRUMENT.wavelength_angstrom
    wavelength2_angstrom: float = _DEFAULT_INSTRUMENT.wavelength2_angstrom
    kalpha2_ratio: float = _DEFAULT_INSTRUMENT.kalpha2_ratio
    caglioti_u_deg2: float = _DEFAULT_INSTRUMENT.caglioti_u_deg2
    caglioti_v_deg2: float = _DEFAULT_INSTRUMENT.caglioti_v_deg2
    caglioti_w_deg2: float = _DEFAULT_INSTRUMENT.caglioti_w_deg2

    @classmethod
    def of(cls, instrument: PowderDiffractometer) -> ProfileShape:
        """The profile shape of a (simulated) diffractometer."""
        return cls(
            instrument.wavelength_angstrom,
            instrument.wavelength2_angstrom,
            instrument.kalpha2_ratio,
            instrument.caglioti_u_deg2,
            instrument.caglioti_v_deg2,
            instrument.caglioti_w_deg2,
        )

    def instrument_fwhm_deg(self, two_theta_deg: np.ndarray | float) -> np.ndarray:
        """Gaussian instrument FWHM at these 2-theta, deg."""
        tan = np.tan(np.radians(0.5 * np.asarray(two_theta_deg, dtype=float)))
        fwhm2 = self.caglioti_u_deg2 * tan**2 + self.caglioti_v_deg2 * tan + self.caglioti_w_deg2
        return np.sqrt(np.maximum(fwhm2, 1e-8))


@dataclass(frozen=True, eq=False)
class ReferencePhase:
    """The reflections of one crystalline phase, intensities per unit weight fraction.

    Attributes
    ----------
    name
        The phase's name (what features are keyed by).
    d_spacing_angstrom
        Interplanar spacing of every reflection (multiplets merged), angstrom.
    intensity
        ``|F|^2 m LP / (rho V^2)`` of every reflection at the K-alpha1 wavelength it was
        computed for; comparable between phases, so fitted scale factors are proportional to
        weight fractions.
    """

    name: str
    d_spacing_angstrom: np.ndarray
    intensity: np.ndarray

    @classmethod
    def from_structure(
        cls, name: str, structure: Structure, wavelength_angstrom: float = CU_KALPHA1_ANGSTROM
    ) -> ReferencePhase:
        """Compute the reflections of ``structure`` with pymatgen's XRDCalculator."""
        pattern = XRDCalculator(wavelength=wavelength_angstrom).get_pattern(
            structure, scaled=False, two_theta_range=_REFLECTION_RANGE_DEG
        )
        intensity = np.asarray(pattern.y, dtype=float) / (structure.density * structure.volume**2)
        d_spacing = np.asarray(pattern.d_hkls, dtype=float)
        keep = intensity >= _MIN_RELATIVE_INTENSITY * intensity.max()
        return cls(name, d_spacing[keep], intensity[keep])

    def two_theta_deg(
        self, wavelength_angstrom: float = CU_KALPHA1_ANGSTROM, lattice_strain: float = 0.0
    ) -> np.ndarray:
        """Bragg angles 2-theta of the reflections, deg (NaN where none exists)."""
        sin_theta = wavelength_angstrom / (2.0 * self.d_spacing_angstrom * (1.0 + lattice_strain))
        with np.errstate(invalid="ignore"):
            return np.degrees(2.0 * np.arcsin(np.where(sin_theta < 1.0, sin_theta, np.nan)))

    def strongest_lines(
        self, two_theta_min_deg: float, two_theta_max_deg: float, n: int
    ) -> np.ndarray:
        """K-alpha1 2-theta of the ``n`` strongest reflections inside a range, deg, ascending."""
        two_theta = self.two_theta_deg()
        inside = np.flatnonzero((two_theta >= two_theta_min_deg) & (two_theta <= two_theta_max_deg))
        order = inside[np.argsort(self.intensity[inside])[::-1][:n]]
        return np.sort(two_theta[order])


def library_from_structures(structures: Mapping[str, Structure]) -> dict[str, ReferencePhase]:
    """A phase library (name -> :class:`ReferencePhase`) from crystal structures by name."""
    if not structures:
        raise ValueError("a phase library needs at least one structure")
    return {name: ReferencePhase.from_structure(name, s) for name, s in structures.items()}


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
    low, high = two_theta_deg[0] - 5.0, two_theta_deg[-1] + 5.0
    centres, areas, wavelengths = [], [], []
    for wavelength, ratio in (
        (shape.wavelength_angstrom, 1.0),
        (shape.wavelength2_angstrom, shape.kalpha2_ratio),
    ):
        two_theta = phase.two_theta_deg(wavelength, lattice_strain)
        inside = np.isfinite(two_theta) & (two_theta > low) & (two_theta < high)
        centres.append(two_theta[inside])
        areas.append(ratio * phase.intensity[inside])
        wavelengths.append(np.full(int(inside.sum()), wavelength))
    centre = np.concatenate(centres)
    if centre.size == 0:
        return np.zeros_like(two_theta_deg)
    theta = np.radians(0.5 * centre)
    line_wavelength = np.concatenate(wavelengths)
    lorentz_fwhm_deg = np.degrees(
        SCHERRER_K * line_wavelength / (10.0 * crystallite_size_nm * np.cos(theta))
    )
    strain_fwhm_deg = np.degrees(4.0 * microstrain * np.tan(theta))
    gauss_fwhm_deg = np.hypot(shape.instrument_fwhm_deg(centre), strain_fwhm_deg)
    return pseudo_voigt_sum(
        two_theta_deg,
        centre + zero_shift_deg,
        np.concatenate(areas),
        gauss_fwhm_deg,
        lorentz_fwhm_deg,
    )


def scherrer_size_nm(
    lorentz_fwhm_deg: np.ndarray | float,
    two_theta_deg: np.ndarray | float,
    wavelength_angstrom: float = CU_KALPHA1_ANGSTROM,
) -> np.ndarray:
    """Crystallite size, nm, from the size (Lorentzian) FWHM of a line: K lambda / (B cos theta)."""
    theta = np.radians(0.5 * np.asarray(two_theta_deg, dtype=float))
    breadth_rad = np.radians(np.asarray(lorentz_fwhm_deg, dtype=float))
    return SCHERRER_K * wavelength_angstrom / (10.0 * breadth_rad * np.cos(theta))
