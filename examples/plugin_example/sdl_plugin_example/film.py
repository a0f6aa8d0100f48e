"""Spin-coated, annealed MAPb(Br_x I_(1-x))3 films: conditions in, a film's truth out.

A methylammonium lead mixed-halide perovskite rather than CsPb(Br_x I_(1-x))3: the caesium
films need ~300 degC and more to reach their black alpha phase (Eperon et al., J. Mater.
Chem. A 3 (2015) 19688), above this hot plate's range, while MAPb(Br_x I_(1-x))3 forms at
~100 degC and decomposes within it, so the anneal has an optimum inside the box.

What each condition does, and on what grounds:

* ``bromide_fraction`` sets the band gap (:func:`sdl_plugin_example.optics.band_gap_ev`, Noh
  et al. 2013) and adds alloy disorder to the Urbach tail in the mixed films, largest at
  x = 0.5 (an assumption of this model: 6 meV at most).
* ``spin_speed_rpm`` sets the wet film's thinning, hence the thickness: h ~ omega^(-1/2) when
  solvent evaporation ends the thinning (Meyerhofer, J. Appl. Phys. 49 (1978) 3993). 400 nm
  at 4000 rpm is typical of ~1.2 M precursor in DMF/DMSO (a model value).
* ``anneal_temperature_c`` (10 min on a hot plate) converts the solvated intermediate into
  perovskite, a logistic step centred at 85 degC, and above ~165 degC (MAPbI3) decomposes the
  perovskite into PbI2 and volatile methylammonium halide, later for bromide-rich films:
  MAPbBr3 survives heat and light that decompose MAPbI3 (Misra et al., J. Phys. Chem. Lett. 6
  (2015) 326). The onset moves linearly with x here, an assumption: under strong light mixed
  films degrade faster than either end member (Misra et al., arXiv:1603.08683), which this
  thermal-only model leaves out. The centres and widths of both steps are model values of
  the right order, not fits to one study. Only the perovskite absorbs here (the PbI2 edge
  near 2.4 eV is left out, so a fully decomposed film shows no edge); unconverted and
  decomposed material broadens its Urbach tail (15 meV when well ordered, De Wolf et al.
  2014; up to 35 and 25 meV more, model values matching the 30-60 meV of poor films).

Light-induced halide segregation in the mixed films (Hoke et al., Chem. Sci. 6 (2015) 613)
needs illumination of the order of one sun for seconds to minutes; the spectrometer's
monochromatic probe is far weaker, so it is not modelled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from sdl_plugin_example.optics import URBACH_ENERGY_ORDERED_MEV, band_gap_ev

#: Safe range and unit of each condition: (low, high, unit).
FILM_CONDITION_LIMITS: dict[str, tuple[float, float, str]] = {
    "bromide_fraction": (0.0, 1.0, "mol/mol"),
    "anneal_temperature_c": (60.0, 250.0, "degC"),
    "spin_speed_rpm": (1000.0, 6000.0, "rpm"),
}

#: Film thickness at the reference spin speed, nm, and that speed, rpm.
THICKNESS_REF_NM = 400.0
SPIN_SPEED_REF_RPM = 4000.0

#: Conversion of the intermediate into perovskite: logistic centre and width, degC.
CONVERSION_CENTRE_C = 85.0
CONVERSION_WIDTH_C = 8.0

#: Decomposition: logistic centre for MAPbI3, its rise per unit bromide fraction, width, degC.
DECOMPOSITION_CENTRE_IODIDE_C = 165.0
DECOMPOSITION_SHIFT_BROMIDE_C = 60.0
DECOMPOSITION_WIDTH_C = 12.0

#: Urbach broadening, meV: alloy disorder at x = 0.5, fully unconverted, fully decomposed.
URBACH_ALLOY_MEV = 6.0
URBACH_UNCONVERTED_MEV = 35.0
URBACH_DECOMPOSED_MEV = 25.0

#: Batch-to-batch scatter: bromide fraction (absolute), hot-plate temperature (degC),
#: thickness and Urbach energy (relative, log-normal).
BROMIDE_SCATTER = 0.01
TEMPERATURE_SCATTER_C = 2.0
THICKNESS_SCATTER = 0.04
URBACH_SCATTER = 0.05

#: Steps of one film, s: dispense and spin, anneal, cool to handle.
SPIN_S = 30.0
ANNEAL_S = 600.0
COOL_S = 120.0


@dataclass(frozen=True)
class PerovskiteFilmSample:
    """One film as it really is (the simulator's truth), before any measurement.

    Attributes
    ----------
    sample_id
        Unique name of the film.
    conditions
        The conditions actually applied (after batch variation), by condition name.
    band_gap_ev
        Direct band gap of the perovskite, eV.
    thickness_nm
        Film thickness, nm.
    urbach_energy_mev
        Width of the exponential absorption tail below the gap, meV.
    perovskite_fraction
        Volume fraction of the film that is perovskite (converted, not decomposed), 0 to 1.
    """

    sample_id: str
    conditions: Mapping[str, float]
    band_gap_ev: float
    thickness_nm: float
    urbach_energy_mev: float
    perovskite_fraction: float

    def __post_init__(self) -> None:
        if self.thickness_nm <= 0:
            raise ValueError(f"thickness_nm must be > 0, got {self.thickness_nm}")
        if not 0 <= self.perovskite_fraction <= 1:
            raise ValueError(
                f"perovskite_fraction must lie in [0, 1], got {self.perovskite_fraction}"
            )


def _logistic(value: float, centre: float, width: float) -> float:
    return float(1.0 / (1.0 + np.exp(-(value - centre) / width)))


def converted_fraction(anneal_temperature_c: float) -> float:
    """Fraction of the solvated intermediate turned into perovskite by a 10 min anneal."""
    return _logistic(anneal_temperature_c, CONVERSION_CENTRE_C, CONVERSION_WIDTH_C)


def decomposed_fraction(anneal_temperature_c: float, bromide_fraction: float) -> float:
    """Fraction of the perovskite lost to PbX2 and volatile MAX in a 10 min anneal."""
    centre_c = DECOMPOSITION_CENTRE_IODIDE_C + DECOMPOSITION_SHIFT_BROMIDE_C * bromide_fraction
    return _logistic(anneal_temperature_c, centre_c, DECOMPOSITION_WIDTH_C)


def thickness_nm(spin_speed_rpm: float) -> float:
    """Dry film thickness at this spin speed, nm (h ~ omega^(-1/2), Meyerhofer 1978)."""
    if spin_speed_rpm <= 0:
        raise ValueError(f"spin_speed_rpm must be > 0, got {spin_speed_rpm}")
    return THICKNESS_REF_NM * float(np.sqrt(SPIN_SPEED_REF_RPM / spin_speed_rpm))


def urbach_energy_mev(bromide_fraction: float, converted: float, decomposed: float) -> float:
    """Urbach energy of the perovskite, meV: ordered film plus each source of disorder."""
    alloy = URBACH_ALLOY_MEV * 4 * bromide_fraction * (1 - bromide_fraction)
    return (
        URBACH_ENERGY_ORDERED_MEV
        + alloy
        + URBACH_UNCONVERTED_MEV * (1 - converted)
        + URBACH_DECOMPOSED_MEV * decomposed
    )


class PerovskiteFilm:
    """Spin coating and annealing of MAPb(Br_x I_(1-x))3 films, with batch-to-batch noise.

    Conditions: ``bromide_fraction`` (mol/mol), ``anneal_temperature_c`` (degC),
    ``spin_speed_rpm`` (rpm), within :data:`FILM_CONDITION_LIMITS`.
    """

    def synthesize(
        self, conditions: Mapping[str, float], rng: np.random.Generator, sample_id: str
    ) -> PerovskiteFilmSample:
        """One film made at ``conditions``; ``rng`` draws its batch variation."""
        missing = sorted(set(FILM_CONDITION_LIMITS) - set(conditions))
        if missing:
            raise ValueError(
                f"conditions lack {missing}; a film needs {list(FILM_CONDITION_LIMITS)}"
            )
        bromide = float(
            np.clip(conditions["bromide_fraction"] + rng.normal(0, BROMIDE_SCATTER), 0, 1)
        )
        temperature_c = float(conditions["anneal_temperature_c"]) + rng.normal(
            0, TEMPERATURE_SCATTER_C
        )
        spin_rpm = float(conditions["spin_speed_rpm"])
        converted = converted_fraction(temperature_c)
        decomposed = decomposed_fraction(temperature_c, bromide)
        return PerovskiteFilmSample(
            sample_id=sample_id,
            conditions={
                "bromide_fraction": bromide,
                "anneal_temperature_c": temperature_c,
                "spin_speed_rpm": spin_rpm,
            },
            band_gap_ev=float(band_gap_ev(bromide)),
            thickness_nm=thickness_nm(spin_rpm) * float(rng.lognormal(0, THICKNESS_SCATTER)),
            urbach_energy_mev=urbach_energy_mev(bromide, converted, decomposed)
            * float(rng.lognormal(0, URBACH_SCATTER)),
            perovskite_fraction=converted * (1 - decomposed),
        )

    def duration_s(self, conditions: Mapping[str, float]) -> float:
        """Time to make one film, s: spin, anneal on a preheated plate, cool."""
        return SPIN_S + ANNEAL_S + COOL_S
