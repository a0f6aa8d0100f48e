"""Material properties derived from several measured features (the multimodal record)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TypeVar

import numpy as np

from physics.phases import AMORPHOUS

#: A size, or an array of sizes.
Size = TypeVar("Size", float, np.ndarray)

#: Density of TiO2 used to turn a particle size into a specific surface area, g/cm^3.
TIO2_DENSITY_G_CM3 = 3.9

#: Relative photocatalytic activity per unit area of each phase. Anatase is the reference;
#: rutile recombines carriers faster, brookite lies between, amorphous TiO2 is nearly inert.
PHASE_PHOTOACTIVITY = {"anatase": 1.0, "brookite": 0.6, "rutile": 0.3, AMORPHOUS: 0.0}


def specific_surface_area_m2_g(particle_size_nm: Size, density_g_cm3: float) -> Size:
    """Surface area per gram of dense spheres of this diameter: 6 / (rho d)."""
    return 6000.0 / (density_g_cm3 * particle_size_nm)


def photoactive_area_m2_g(
    phase_fractions: Mapping[str, float],
    phase_fractions_std: Mapping[str, float],
    grain_size_nm: float,
    grain_size_nm_std: float,
) -> tuple[float, float]:
    """Photoactive surface per gram: specific surface area times phase-weighted activity.

    The trade-off a TiO2 photocatalyst designer faces: crystallinity (and anatase) needs heat,
    a large surface needs small particles, and heat grows particles and makes rutile.

    Returns
    -------
    value, std
        In m^2/g, with the standard deviation propagated to first order from the
        phase-fraction and grain-size uncertainties.
    """
    if not grain_size_nm > 0:
        raise ValueError(f"grain_size_nm must be > 0, got {grain_size_nm}")
    area = specific_surface_area_m2_g(grain_size_nm, TIO2_DENSITY_G_CM3)
    activity = sum(PHASE_PHOTOACTIVITY.get(p, 0.0) * w for p, w in phase_fractions.items())
    activity_var = sum(
        (PHASE_PHOTOACTIVITY.get(p, 0.0) * phase_fractions_std.get(p, 0.0)) ** 2
        for p in phase_fractions
    )
    area_std = area * grain_size_nm_std / grain_size_nm
    value = area * activity
    std = math.sqrt((activity * area_std) ** 2 + area**2 * activity_var)
    return value, std
