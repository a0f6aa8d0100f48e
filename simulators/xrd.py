"""Cu K-alpha powder diffraction patterns of simulated samples, from their phases' structures.

Line positions and structure-factor intensities (with multiplicity and Lorentz-polarisation)
come from pymatgen's :class:`~pymatgen.analysis.diffraction.xrd.XRDCalculator` applied to the
structures in :mod:`physics.structures`. Intensities are kept unscaled so that phases share
one absolute scale: in a flat powder sample of infinite thickness, the integrated intensity of
line ``hkl`` of phase ``p`` is (Hill & Howard, J. Appl. Cryst. 20 (1987) 467)

    I_hkl,p = C * w_p * |F_hkl|^2 m_hkl LP / (rho_p * V_p^2 * mu_mix)

with ``w_p`` the weight fraction, ``rho_p`` the density and ``V_p`` the cell volume. All TiO2
polymorphs have the same composition, hence the same mass absorption coefficient ``mu_mix``,
so there is no matrix effect and a phase's profile per unit weight fraction is
``|F|^2 m LP / (rho V^2)`` times one instrument constant. That constant is fixed by
:attr:`PowderDiffractometer.reference_line_cps_deg`, the integrated count rate of the strongest
line of pure anatase; the reference-intensity ratios (RIR) of the other phases follow from
their structures. X-ray amorphous TiO2 scatters into broad humps at the momentum transfers of
its short-range order (:data:`physics.structures.AMORPHOUS_TIO2_HUMPS`).

Each line is a pseudo-Voigt (Thompson, Cox & Hastings, J. Appl. Cryst. 20 (1987) 79; the
formulas are those of :mod:`physics.diffraction`): the Lorentzian width is Scherrer size
broadening ``K lambda / (D cos theta)``, the Gaussian width
combines the instrument (Caglioti ``U tan^2 + V tan + W``) and microstrain ``4 eps tan theta``.
Every line appears twice, for K-alpha1 and K-alpha2 (intensity ratio 0.5). A solid solution
whose lattice is scaled by ``s`` from its reference structure (``SampleState.lattice_scale``)
has its lines at ``d -> s d``; the small change of ``|F|^2 LP / V^2`` with ``s`` is neglected.
The phases of other systems (:mod:`simulators.fegapd`) share the anatase-line scale; their
fractions are then the simulator's (atom) fractions, taken as weight fractions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache, cached_property

import numpy as np

from physics.diffraction import (
    CU_KALPHA1_ANGSTROM,
    CU_KALPHA2_ANGSTROM,
    CU_KALPHA2_RATIO,
    bragg_two_theta_deg,
    caglioti_fwhm2_deg2,
    d_spacing_angstrom,
    pseudo_voigt_sum,
    q_humps_per_deg,
    scherrer_fwhm_deg,
    strain_fwhm_deg,
)
from physics.phases import AMORPHOUS, CRYSTALLINE_PHASES
from physics.structures import (
    AMORPHOUS_TIO2_HUMPS,
    get_structure,
    reflections_per_weight_fraction,
)
from simulators.sample import SampleState

#: Counting time per 2-theta step, s: the default and the instrument's safe range, which the
#: simulated device, the IOC's ``exposure_s`` record and its check all take from here.
EXPOSURE_S = 0.5
EXPOSURE_LIMITS_S = (0.01, 10.0)

#: Every phase a pattern can contain.
XRD_PHASES = (AMORPHOUS, *CRYSTALLINE_PHASES)

#: Lines with less relative intensity than this are left out (invisible, but they cost time).
_MIN_RELATIVE_INTENSITY = 1e-3

#: 2-theta margin, deg, beyond the scan within which lines still add their tails.
_LINE_MARGIN_DEG = 5.0


def _check_phase(phase: str) -> None:
    if phase not in XRD_PHASES:
        raise ValueError(f"unknown phase {phase!r}; known phases are {XRD_PHASES}")


@cache
def _unscaled_lines(
    phase: str, wavelength_angstrom: float, two_theta_min_deg: float, two_theta_max_deg: float
) -> tuple[np.ndarray, np.ndarray]:
    """Line positions (deg) and intensities per unit weight fraction, |F|^2 m LP / (rho V^2)."""
    two_theta_deg, _, intensity = reflections_per_weight_fraction(
        get_structure(phase), wavelength_angstrom, (two_theta_min_deg, two_theta_max_deg)
    )
    return two_theta_deg, intensity


@cache
def _reference_intensity(wavelength_angstrom: float) -> float:
    """Unscaled intensity of the strongest line of anatase, the unit of every phase's lines."""
    _, intensity = _unscaled_lines("anatase", wavelength_angstrom, 2.0, 170.0)
    return float(intensity.max())


@cache
def _stick_pattern(
    phase: str, wavelength_angstrom: float, two_theta_min_deg: float, two_theta_max_deg: float
) -> tuple[np.ndarray, np.ndarray]:
    """K-alpha1 line positions (deg) and areas in units of the reference line, inside the range."""
    low = max(1.0, two_theta_min_deg - _LINE_MARGIN_DEG)
    high = min(175.0, two_theta_max_deg + _LINE_MARGIN_DEG)
    two_theta_deg, intensity = _unscaled_lines(phase, wavelength_angstrom, low, high)
    relative = intensity / _reference_intensity(wavelength_angstrom)
    keep = relative >= _MIN_RELATIVE_INTENSITY
    two_theta_deg, relative = two_theta_deg[keep], relative[keep]
    two_theta_deg.flags.writeable = False
    relative.flags.writeable = False
    return two_theta_deg, relative


@dataclass(frozen=True)
class PowderDiffractometer:
    """A Bragg-Brentano powder diffractometer with a Cu tube and a step scan; settings only.

    Attributes
    ----------
    two_theta_min_deg, two_theta_max_deg, n_points
        The scan: ``n_points`` equally spaced 2-theta steps, both ends included.
    wavelength_angstrom, wavelength2_angstrom, kalpha2_ratio
        K-alpha1 and K-alpha2 wavelengths and the K-alpha2/K-alpha1 intensity ratio.
    caglioti_u_deg2, caglioti_v_deg2, caglioti_w_deg2
        Instrument FWHM^2 = U tan^2(theta) + V tan(theta) + W, deg^2 (Gaussian part).
    reference_line_cps_deg
        Integrated count rate of the strongest line of pure anatase, counts/s x deg; the
        incident flux, which sets the scale of every phase.
    background_cps
        Flat background (fluorescence, detector), counts/s per step.
    air_scatter_cps, air_scatter_decay_deg
        Air and holder scatter ``air_scatter_cps * exp(-2theta / air_scatter_decay_deg)``.
    zero_shift_deg
        Goniometer zero error: every feature appears this much higher in 2-theta.
    scan_overhead_s
        Instrument time per scan beyond counting (sample change, goniometer moves), s.
    """

    two_theta_min_deg: float = 10.0
    two_theta_max_deg: float = 80.0
    n_points: int = 2048
    wavelength_angstrom: float = CU_KALPHA1_ANGSTROM
    wavelength2_angstrom: float = CU_KALPHA2_ANGSTROM
    kalpha2_ratio: float = CU_KALPHA2_RATIO
    caglioti_u_deg2: float = 0.004
    caglioti_v_deg2: float = -0.003
    caglioti_w_deg2: float = 0.004
    reference_line_cps_deg: float = 1000.0
    background_cps: float = 40.0
    air_scatter_cps: float = 400.0
    air_scatter_decay_deg: float = 12.0
    zero_shift_deg: float = 0.0
    scan_overhead_s: float = 20.0

    def __post_init__(self) -> None:
        if not 0.0 < self.two_theta_min_deg < self.two_theta_max_deg < 180.0:
            raise ValueError(
                "need 0 < two_theta_min_deg < two_theta_max_deg < 180, got "
                f"{self.two_theta_min_deg}, {self.two_theta_max_deg}"
            )
        if self.n_points < 2:
            raise ValueError(f"n_points must be >= 2, got {self.n_points}")
        if self.wavelength_angstrom <= 0 or self.wavelength2_angstrom <= 0:
            raise ValueError("wavelengths must be > 0")
        if np.any(self._instrument_fwhm2_deg2(self.two_theta_deg) <= 0):
            raise ValueError(
                "Caglioti U, V, W give a non-positive FWHM^2 inside the scan: "
                f"{self.caglioti_u_deg2}, {self.caglioti_v_deg2}, {self.caglioti_w_deg2}"
            )

    @cached_property
    def two_theta_deg(self) -> np.ndarray:
        """2-theta of every step, deg (read-only)."""
        grid = np.linspace(self.two_theta_min_deg, self.two_theta_max_deg, self.n_points)
        grid.flags.writeable = False
        return grid

    def _instrument_fwhm2_deg2(self, two_theta_deg: np.ndarray) -> np.ndarray:
        return caglioti_fwhm2_deg2(
            two_theta_deg, self.caglioti_u_deg2, self.caglioti_v_deg2, self.caglioti_w_deg2
        )

    def phase_profile(
        self,
        phase: str,
        crystallite_size_nm: float,
        microstrain: float = 0.0,
        lattice_scale: float = 1.0,
    ) -> np.ndarray:
        """Noise-free count rate (counts/s per step) of one phase at unit weight fraction.

        No background; for ``"amorphous"`` the size, strain and lattice scale are ignored. A
        mixture's pattern is the weight-fraction-weighted sum of these profiles plus the
        background.
        """
        _check_phase(phase)
        if phase == AMORPHOUS:
            return self._amorphous_profile()
        if not crystallite_size_nm > 0:
            raise ValueError(f"crystallite_size_nm must be > 0, got {crystallite_size_nm}")
        if not microstrain >= 0:
            raise ValueError(f"microstrain must be >= 0, got {microstrain}")
        if not lattice_scale > 0:
            raise ValueError(f"lattice_scale must be > 0, got {lattice_scale}")
        two_theta1_deg, area = _stick_pattern(
            phase, self.wavelength_angstrom, self.two_theta_min_deg, self.two_theta_max_deg
        )
        d_spacing = lattice_scale * d_spacing_angstrom(two_theta1_deg, self.wavelength_angstrom)
        two_theta_deg = np.concatenate(
            [
                bragg_two_theta_deg(d_spacing, self.wavelength_angstrom),
                bragg_two_theta_deg(d_spacing, self.wavelength2_angstrom),
            ]
        )
        wavelength = np.repeat([self.wavelength_angstrom, self.wavelength2_angstrom], area.size)
        area = np.concatenate([area, self.kalpha2_ratio * area])
        exists = np.isfinite(two_theta_deg)
        two_theta_deg, wavelength, area = two_theta_deg[exists], wavelength[exists], area[exists]
        gauss_fwhm_deg = np.sqrt(
            self._instrument_fwhm2_deg2(two_theta_deg)
            + strain_fwhm_deg(microstrain, two_theta_deg) ** 2
        )
        lorentz_fwhm_deg = scherrer_fwhm_deg(crystallite_size_nm, two_theta_deg, wavelength)
        return self.reference_line_cps_deg * pseudo_voigt_sum(
            self.two_theta_deg,
            two_theta_deg + self.zero_shift_deg,
            area,
            gauss_fwhm_deg,
            lorentz_fwhm_deg,
        )

    def _amorphous_profile(self) -> np.ndarray:
        return self.reference_line_cps_deg * q_humps_per_deg(
            self.two_theta_deg - self.zero_shift_deg, AMORPHOUS_TIO2_HUMPS, self.wavelength_angstrom
        )

    def background(self) -> np.ndarray:
        """Count rate without any sample scattering, counts/s per step."""
        return self.background_cps + self.air_scatter_cps * np.exp(
            -self.two_theta_deg / self.air_scatter_decay_deg
        )

    def ideal_pattern(
        self,
        phase_fractions: Mapping[str, float],
        crystallite_size_nm: Mapping[str, float],
        microstrain: Mapping[str, float] | None = None,
        exposure_s: float = 0.5,
        lattice_scale: Mapping[str, float] | None = None,
    ) -> np.ndarray:
        """Expected counts per step, background included, for ``exposure_s`` seconds per step.

        Phases with zero weight fraction need no crystallite size; phases without a
        ``lattice_scale`` have their reference lattice.
        """
        if not exposure_s > 0:
            raise ValueError(f"exposure_s must be > 0, got {exposure_s}")
        microstrain = microstrain or {}
        lattice_scale = lattice_scale or {}
        rate = self.background()
        for phase, fraction in phase_fractions.items():
            _check_phase(phase)
            if fraction < 0:
                raise ValueError(f"weight fraction of {phase} must be >= 0, got {fraction}")
            if fraction == 0:
                continue
            if phase != AMORPHOUS and phase not in crystallite_size_nm:
                raise ValueError(f"no crystallite_size_nm for {phase} (weight fraction {fraction})")
            size_nm = crystallite_size_nm.get(phase, 1.0)
            rate = rate + fraction * self.phase_profile(
                phase, size_nm, microstrain.get(phase, 0.0), lattice_scale.get(phase, 1.0)
            )
        return exposure_s * rate

    def measure(
        self, sample: SampleState, rng: np.random.Generator, exposure_s: float = 0.5
    ) -> np.ndarray:
        """One scan of ``sample``: Poisson counts per step (float64), ``exposure_s`` s per step."""
        expected = self.ideal_pattern(
            sample.phase_fractions,
            sample.crystallite_size_nm,
            sample.microstrain,
            exposure_s,
            sample.lattice_scale,
        )
        return rng.poisson(expected).astype(np.float64)

    def duration_s(self, exposure_s: float = 0.5) -> float:
        """Instrument time of one scan, s: counting at every step plus the overhead."""
        if not exposure_s > 0:
            raise ValueError(f"exposure_s must be > 0, got {exposure_s}")
        return self.n_points * exposure_s + self.scan_overhead_s
