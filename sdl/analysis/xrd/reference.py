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

A user's own phases come from CIF files (:func:`structure_from_cif`, pymatgen's parser, no
network). Each may carry a calibration factor ``k``: what the measured intensity per unit
weight fraction is over the computed one, fitted once on a standard of known composition.
It holds what the structure alone cannot give (microabsorption contrast, preferred
orientation, a structure model's errors, amorphous content of the reagent): the phase's
profile is ``k`` times the computed one, so its fitted scale divided by ``k`` is proportional
to its weight fraction. Only ratios of the factors matter. An amorphous component for such
phases (:func:`nanocrystalline_limit`) is their lines broadened to a 1 nm coherence length.

The instrument turns reflections into profiles (:mod:`sdl.analysis.xrd.instrument`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import numpy as np
from pymatgen.core import Structure
from pymatgen.io.cif import CifParser

from physics.diffraction import CU_KALPHA1_ANGSTROM, bragg_two_theta_deg
from physics.phases import AMORPHOUS
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
    calibration_factor
        Measured over computed intensity per unit weight fraction (see the module's
        docstring); profiles are rendered with ``calibration_factor * intensity``.
    """

    name: str
    d_spacing_angstrom: np.ndarray
    intensity: np.ndarray
    calibration_factor: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.calibration_factor) and self.calibration_factor > 0):
            raise ValueError(
                f"{self.name}: calibration_factor must be a finite number > 0, "
                f"got {self.calibration_factor}"
            )

    @classmethod
    def from_structure(
        cls,
        name: str,
        structure: Structure,
        wavelength_angstrom: float = CU_KALPHA1_ANGSTROM,
        *,
        calibration_factor: float = 1.0,
    ) -> ReferencePhase:
        """Compute the reflections of ``structure`` with pymatgen's XRDCalculator."""
        _, d_spacing, intensity = reflections_per_weight_fraction(
            structure, wavelength_angstrom, _REFLECTION_RANGE_DEG
        )
        if intensity.size == 0:
            raise ValueError(f"{name}: the structure has no reflections")
        keep = intensity >= _MIN_RELATIVE_INTENSITY * intensity.max()
        return cls(name, d_spacing[keep], intensity[keep], calibration_factor)

    def calibrated(self, calibration_factor: float) -> ReferencePhase:
        """This phase with another calibration factor."""
        return replace(self, calibration_factor=calibration_factor)

    @property
    def profile_intensity(self) -> np.ndarray:
        """What each reflection contributes to the profile per unit weight fraction."""
        return self.calibration_factor * self.intensity

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


def structure_from_cif(path: Path | str) -> Structure:
    """The one crystal structure in a CIF file, parsed by pymatgen (no network).

    Raises
    ------
    ValueError
        If the file cannot be read, holds no structure pymatgen can build, or several.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read {path}: {error}") from None
    return structure_from_cif_text(text, str(path))


@cache
def structure_from_cif_text(text: str, source: str = "CIF") -> Structure:
    """The one crystal structure in a CIF's text (see :func:`structure_from_cif`)."""
    try:
        with warnings.catch_warnings():
            # pymatgen warns about every rounded occupancy; the result is checked below.
            warnings.simplefilter("ignore")
            structures = CifParser.from_str(text).parse_structures(primitive=False)
    except Exception as error:  # pymatgen raises anything from a malformed file
        raise ValueError(f"{source} is not a CIF pymatgen can read: {error}") from None
    if len(structures) != 1:
        raise ValueError(f"{source} holds {len(structures)} structures; give one per file")
    return structures[0]


def nanocrystalline_limit(phases: Sequence[ReferencePhase]) -> ReferencePhase:
    """An amorphous component for any phases: their lines, in equal parts by weight, to be
    rendered at a 1 nm coherence length.

    An amorphous solid scatters into broad humps where its crystalline form has its strongest
    lines, and the total scattering per unit mass of one composition does not depend on its
    order; so the phases' lines broadened to a 1 nm coherence length (a few coordination
    shells) are a hump whose area per unit weight fraction is on the crystalline phases'
    scale. It is honest for amorphous material of about the phases' mean composition; for
    another it is a broad unknown scatterer whose "fraction" is only indicative. Calibration
    factors are left out (1).
    """
    if not phases:
        raise ValueError("an amorphous component needs at least one crystalline phase")
    return ReferencePhase(
        AMORPHOUS,
        np.concatenate([p.d_spacing_angstrom for p in phases]),
        np.concatenate([p.intensity for p in phases]) / len(phases),
    )


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
