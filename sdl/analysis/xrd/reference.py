"""Reference powder patterns of any crystalline phase, computed from its crystal structure.

A :class:`ReferencePhase` holds the reflections of one phase (d-spacings and intensities per
unit weight fraction) computed once by pymatgen's
:class:`~pymatgen.analysis.diffraction.xrd.XRDCalculator` from a
:class:`~pymatgen.core.Structure`. Intensities are ``|F|^2 m LP / (rho V^2)`` (Hill & Howard,
J. Appl. Cryst. 20 (1987) 467): in a mixture the mass absorption coefficient is common to
all phases, so the scale factor that multiplies this profile is proportional to the phase's
weight fraction. This is the reference-intensity-ratio (RIR) conversion with the RIRs
computed from the structures instead of looked up. Amorphous TiO2 has humps instead of
reflections (:func:`amorphous_tio2_humps`), on the same scale.

The instrument turns reflections into profiles (:mod:`sdl.analysis.xrd.instrument`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

import numpy as np
from pymatgen.core import Structure

from physics.diffraction import CU_KALPHA1_ANGSTROM, bragg_two_theta_deg
from physics.structures import (
    AMORPHOUS_TIO2_HUMPS,
    get_structure,
    reflections_per_weight_fraction,
)

#: Reflections weaker than this fraction of a phase's strongest are dropped.
_MIN_RELATIVE_INTENSITY = 2e-3

#: 2-theta range (deg, at K-alpha1) over which reflections are computed once per phase.
_REFLECTION_RANGE_DEG = (2.0, 150.0)


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
        _, d_spacing, intensity = reflections_per_weight_fraction(
            structure, wavelength_angstrom, _REFLECTION_RANGE_DEG
        )
        keep = intensity >= _MIN_RELATIVE_INTENSITY * intensity.max()
        return cls(name, d_spacing[keep], intensity[keep])

    def two_theta_deg(
        self, wavelength_angstrom: float = CU_KALPHA1_ANGSTROM, lattice_strain: float = 0.0
    ) -> np.ndarray:
        """Bragg angles 2-theta of the reflections, deg (NaN where none exists)."""
        return bragg_two_theta_deg(
            self.d_spacing_angstrom * (1.0 + lattice_strain), wavelength_angstrom
        )

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


@cache
def amorphous_tio2_humps() -> tuple[tuple[float, float, float], ...]:
    """Humps of amorphous TiO2 on the scale of :attr:`ReferencePhase.intensity`.

    ``(centre Q, FWHM Q, area)`` with Q in 1/angstrom and the area per unit weight fraction
    (:data:`physics.structures.AMORPHOUS_TIO2_HUMPS`, whose areas are relative to the
    strongest line of anatase), so an amorphous scale factor compares with crystalline ones.
    """
    anatase = ReferencePhase.from_structure("anatase", get_structure("anatase"))
    unit = float(anatase.intensity.max())
    return tuple((q, q_fwhm, area * unit) for q, q_fwhm, area in AMORPHOUS_TIO2_HUMPS)
