"""The features a perfect analysis would report for a simulated sample: the score's reference."""

from __future__ import annotations

import math
from collections.abc import Sequence

from physics.phases import AMORPHOUS
from sdl.analysis.properties import photoactive_area_m2_g
from simulators.sample import SampleState


def true_features(sample: SampleState, phases: Sequence[str]) -> dict[str, float]:
    """Ground-truth values under the same names as the measured features (no ``_std``)."""
    all_phases = (AMORPHOUS, *phases)
    fractions = {p: float(sample.phase_fractions.get(p, 0.0)) for p in all_phases}
    features = {f"{p}_fraction": w for p, w in fractions.items()}
    for phase in phases:
        size = sample.crystallite_size_nm.get(phase, math.nan) if fractions[phase] > 0 else math.nan
        features[f"{phase}_crystallite_size_nm"] = float(size)
    features["grain_size_nm"] = float(sample.particle_size_nm)
    features["grain_size_cv"] = float(sample.particle_size_cv)
    features["photoactive_area_m2_g"], _ = photoactive_area_m2_g(
        fractions, dict.fromkeys(fractions, 0.0), sample.particle_size_nm, 0.0
    )
    return features
