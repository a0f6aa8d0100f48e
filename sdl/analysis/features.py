"""Names of the features each instrument's analysis produces, so a campaign can be checked early."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from physics.phases import AMORPHOUS, LATTICE_RANGE
from sdl.analysis.properties import PHASE_PHOTOACTIVITY
from sdl.plugins import InstrumentPlugin, instrument_plugin

#: Features from a micrograph (see :mod:`sdl.analysis.microscopy.segmentation`); the last is
#: 1.0 where the segmentation is implausible as grains, and has no ``_std``.
MICROSCOPY_FEATURES = (
    "grain_size_nm",
    "grain_size_cv",
    "grain_count",
    "grain_intercept_nm",
    "micrograph_implausible",
)

#: Features from a magnetometer (saturation polarisation mu0 Ms, tesla).
MAGNETOMETRY_FEATURES = ("saturation_polarisation_t",)

#: Goodness of fit of the line-compound whole-pattern fit beside its Rwp: reduced chi-square
#: and 1.0 where the fit is flagged poor (:mod:`sdl.analysis.xrd.whole_pattern`); no ``_std``.
XRD_FIT_QUALITY = ("xrd_reduced_chi2", "xrd_poor_fit")

#: Properties computed from several instruments' features, with the instruments they need.
DERIVED_FEATURES = {"photoactive_area_m2_g": frozenset({"xrd", "microscope"})}


def lattice_range(phases: Sequence[str]) -> float:
    """Largest relative lattice change among these phases (0: all are line compounds).

    Solid solutions need a pattern fit that refines each phase's lattice; line compounds
    are fitted with fixed lattices and the amorphous hump (:mod:`sdl.analysis.xrd.whole_pattern`).
    """
    return max((LATTICE_RANGE.get(phase, 0.0) for phase in phases), default=0.0)


def xrd_features(phases: Sequence[str]) -> tuple[str, ...]:
    """Features from a powder pattern for these crystalline phases (see
    :mod:`sdl.analysis.xrd.whole_pattern` for line compounds, :mod:`sdl.analysis.xrd.quantify`
    for solid solutions)."""
    if lattice_range(phases) > 0:
        fractions = tuple(f"{phase}_fraction" for phase in phases)
        strains = tuple(f"{phase}_lattice_strain" for phase in phases)
        quality: tuple[str, ...] = ()
    else:
        fractions = tuple(f"{phase}_fraction" for phase in (AMORPHOUS, *phases))
        strains = ()
        limits = tuple(f"{phase}_detection_limit" for phase in (AMORPHOUS, *phases))
        quality = (*limits, *XRD_FIT_QUALITY)
    sizes = tuple(f"{phase}_crystallite_size_nm" for phase in phases)
    return (*fractions, *sizes, *strains, "rwp", "xrd_zero_shift_deg", *quality)


def has_photoactivity(phases: Sequence[str]) -> bool:
    """Whether the photoactive area is defined: every phase has a known photoactivity."""
    return all(phase in PHASE_PHOTOACTIVITY for phase in phases)


#: The instruments sdl measures with itself; others are plug-ins (:mod:`sdl.plugins`).
BUILTIN_INSTRUMENTS = ("xrd", "microscope", "magnetometer")


def plugin_instruments(names: Iterable[str]) -> list[InstrumentPlugin]:
    """The plug-ins among these instrument names (a name that loads as none is skipped: the
    campaign file's validation refuses it)."""
    return [
        plugin
        for name in names
        if name not in BUILTIN_INSTRUMENTS and (plugin := instrument_plugin(name)) is not None
    ]


def features_for(instruments: Iterable[str], phases: Sequence[str]) -> set[str]:
    """Every feature (without its ``_std`` sibling) that these instruments together produce,
    plug-ins' included."""
    instruments = set(instruments)
    available: set[str] = set()
    for plugin in plugin_instruments(instruments):
        available.update(plugin.features)
    if "xrd" in instruments:
        available.update(xrd_features(phases))
    if "microscope" in instruments:
        available.update(MICROSCOPY_FEATURES)
    if "magnetometer" in instruments:
        available.update(MAGNETOMETRY_FEATURES)
    if has_photoactivity(phases):
        available.update(name for name, needs in DERIVED_FEATURES.items() if needs <= instruments)
    return available
