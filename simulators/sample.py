"""The ground truth of a synthesised sample: what every simulated instrument looks at."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from physics.phases import AMORPHOUS


@dataclass(frozen=True)
class SampleState:
    """One sample as it really is (the simulator's truth), before any measurement.

    Attributes
    ----------
    sample_id
        Unique name of the physical sample.
    conditions
        The synthesis conditions actually applied (after batch variation), by knob name.
    phase_fractions
        Weight fraction per phase, including ``"amorphous"``; non-negative, sums to 1.
    crystallite_size_nm
        Volume-weighted mean crystallite (coherent domain) size per crystalline phase,
        in nm. Phases absent from the sample may be missing.
    microstrain
        Root-mean-square lattice microstrain per crystalline phase (dimensionless, e.g. 1e-3).
    particle_size_nm
        Mean equivalent-circle diameter of the particles/grains a microscope sees, in nm.
    particle_size_cv
        Coefficient of variation (std / mean) of the log-normal particle size distribution.
    lattice_scale
        Lattice parameters of each crystalline phase relative to its reference structure
        (solid solutions off their ideal composition); phases missing are at 1.
    polarisation_t
        Saturation polarisation mu0 Ms of the sample, tesla (0 for a non-magnetic one).
    """

    sample_id: str
    conditions: Mapping[str, float]
    phase_fractions: Mapping[str, float]
    crystallite_size_nm: Mapping[str, float]
    microstrain: Mapping[str, float] = field(default_factory=dict)
    particle_size_nm: float = 50.0
    particle_size_cv: float = 0.3
    lattice_scale: Mapping[str, float] = field(default_factory=dict)
    polarisation_t: float = 0.0

    def __post_init__(self) -> None:
        fractions = np.array(list(self.phase_fractions.values()), dtype=float)
        if np.any(fractions < 0) or not np.isclose(fractions.sum(), 1.0, atol=1e-6):
            raise ValueError(
                "phase_fractions must be non-negative and sum to 1, "
                f"got {dict(self.phase_fractions)}"
            )
        if self.particle_size_nm <= 0:
            raise ValueError(f"particle_size_nm must be > 0, got {self.particle_size_nm}")

    @property
    def crystalline_phases(self) -> list[str]:
        """Crystalline phases present in the sample (weight fraction > 0)."""
        return [p for p, w in self.phase_fractions.items() if p != AMORPHOUS and w > 0]
