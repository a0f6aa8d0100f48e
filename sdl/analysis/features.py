"""Names of the features each instrument's analysis produces, so a campaign can be checked early."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from simulators.sample import AMORPHOUS

#: Features from a micrograph (see :mod:`sdl.analysis.microscopy`).
MICROSCOPY_FEATURES = ("grain_size_nm", "grain_size_cv", "grain_count", "grain_intercept_nm")

#: Properties computed from several instruments' features, with the instruments they need.
DERIVED_FEATURES = {"photoactive_area_m2_g": frozenset({"xrd", "microscope"})}


def xrd_features(phases: Sequence[str]) -> tuple[str, ...]:
    """Features from a powder pattern for these crystalline phases (see :mod:`sdl.analysis.xrd`)."""
    fractions = tuple(f"{phase}_fraction" for phase in (AMORPHOUS, *phases))
    sizes = tuple(f"{phase}_crystallite_size_nm" for phase in phases)
    return (*fractions, *sizes, "rwp", "xrd_zero_shift_deg")


def features_for(instruments: Iterable[str], phases: Sequence[str]) -> set[str]:
    """Every feature (without its ``_std`` sibling) that these instruments together produce."""
    instruments = set(instruments)
    available: set[str] = set()
    if "xrd" in instruments:
        available.update(xrd_features(phases))
    if "microscope" in instruments:
        available.update(MICROSCOPY_FEATURES)
    available.update(name for name, needs in DERIVED_FEATURES.items() if needs <= instruments)
    return available
