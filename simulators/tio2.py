"""TiO2 by sol-gel and calcination: a kinetic model from synthesis conditions to sample truth.

The sol (titanium isopropoxide hydrolysed at a molar H2O:Ti ratio, at a given pH) dries to an
amorphous gel of primary particles. Calcination then

1. crystallises the gel to anatase, with brookite as a minor phase from acidic sols and
   a little rutile directly from very acidic sols (JMAK kinetics, Arrhenius rate);
2. transforms anatase and brookite to rutile (JMAK, higher activation energy, onset lowered
   by acidic sols and low hydrolysis ratios, raised by basic sols);
3. coarsens crystallites (``D^n - D0^n = k t``, Arrhenius ``k``; rutile grows faster and from
   larger nuclei) while microstrain anneals out;
4. agglomerates and sinters particles, so the size a microscope sees follows the crystallite
   size, the sol's pH (most agglomeration near the isoelectric point) and its water content
   (fast uncontrolled hydrolysis at high ratios precipitates agglomerates).

The heating and cooling ramps add an equivalent isothermal time ``R T^2 / (Ea * rate)`` to
every thermally activated process, so short dwells are not instantaneous.

All parameters of the physics are fields of :class:`TiO2SolGel`, so a campaign can be run
against a randomised variant of the same chemistry.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from physics.phases import AMORPHOUS, TIO2_PHASES
from simulators.sample import SampleState

#: Molar gas constant, J/(mol K).
GAS_CONSTANT_J_MOL_K = 8.314462618

#: Celsius to kelvin offset.
KELVIN_OFFSET = 273.15

#: Safe range and unit of every synthesis knob: name -> (low, high, unit).
TIO2_CONDITION_LIMITS: dict[str, tuple[float, float, str]] = {
    "temperature_c": (200.0, 1000.0, "degC"),
    "duration_h": (0.25, 24.0, "h"),
    "ph": (1.0, 10.0, "pH"),
    "h2o_ti_ratio": (1.0, 60.0, "mol/mol"),
}


def check_conditions(
    conditions: Mapping[str, float], limits: Mapping[str, tuple[float, float, str]]
) -> dict[str, float]:
    """Conditions as floats, after checking every knob is known, present, finite and in range.

    Raises
    ------
    ValueError
        Naming the offending knob and its allowed range.
    """
    unknown = sorted(set(conditions) - set(limits))
    if unknown:
        raise ValueError(f"unknown condition(s) {unknown}; the knobs are {sorted(limits)}")
    checked = {}
    for name, (low, high, unit) in limits.items():
        if name not in conditions:
            raise ValueError(f"missing condition {name!r}: give a value in [{low}, {high}] {unit}")
        value = float(conditions[name])
        if not (math.isfinite(value) and low <= value <= high):
            raise ValueError(
                f"condition {name!r} = {value} is outside its safe range [{low}, {high}] {unit}"
            )
        checked[name] = value
    return checked


def _sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))


@dataclass(frozen=True)
class TiO2SolGel:
    """Sol-gel TiO2 calcined in a box furnace, from conditions to the sample's ground truth.

    Rates are written as ``k(T) = 1/h * exp(-Ea/R (1/T - 1/T_ref))``: ``*_t_ref_c`` is the
    temperature at which a process runs at one JMAK time constant per hour, which is easier
    to reason about (and to randomise) than a pre-exponential factor. Shifts in ``*_c`` move
    those reference temperatures with the sol chemistry.
    """

    # amorphous -> anatase (+ brookite, + direct rutile)
    crystallisation_ea_kj_mol: float = 180.0
    crystallisation_t_ref_c: float = 400.0
    crystallisation_avrami_n: float = 2.0
    #: Extra heat needed to crystallise incompletely hydrolysed gels (residual alkoxide).
    low_water_crystallisation_delay_c: float = 60.0
    #: Acidic, peptised sols crystallise earlier.
    acid_crystallisation_advance_c: float = 30.0
    #: Hydrolysis ratio over which hydrolysis of Ti(OiPr)4 completes (4 is stoichiometric).
    hydrolysis_ratio_scale: float = 4.0
    #: Largest brookite share of the crystallised material, reached in strongly acidic sols.
    brookite_max_fraction: float = 0.35
    brookite_ph: float = 3.0
    #: Largest share crystallising directly as rutile, in very acidic sols.
    direct_rutile_max_fraction: float = 0.2
    direct_rutile_ph: float = 1.5
    ph_transition_width: float = 0.6

    # anatase -> rutile and brookite -> rutile
    anatase_rutile_ea_kj_mol: float = 350.0
    anatase_rutile_t_ref_c: float = 700.0
    anatase_rutile_avrami_n: float = 1.5
    acid_rutile_advance_c: float = 80.0
    low_water_rutile_advance_c: float = 60.0
    #: Hydrolysis ratio below which gels transform early (denser, defect-rich networks).
    low_water_rutile_ratio: float = 8.0
    base_rutile_delay_c: float = 30.0
    base_rutile_ph: float = 8.0
    brookite_rutile_ea_kj_mol: float = 300.0
    #: Brookite transforms this much below anatase.
    brookite_rutile_advance_c: float = 60.0

    #: Disordered (XRD-amorphous) surface shell on fresh crystallites, and its annealing.
    disordered_shell_nm: float = 0.8
    shell_annealing_ea_kj_mol: float = 100.0
    shell_annealing_t_ref_c: float = 500.0

    # crystallite sizes
    #: Primary particle (and first crystallite) size at the reference sol.
    primary_size_nm: float = 8.0
    primary_reference_ratio: float = 20.0
    #: More water -> more nuclei -> smaller primary particles: D0 ~ ratio^-exponent.
    primary_ratio_exponent: float = 0.25
    #: Base-catalysed condensation makes larger particles: D0 ~ exp(coef * (pH - 4)).
    primary_ph_coefficient: float = 0.05
    growth_exponent: float = 4.0
    anatase_growth_ea_kj_mol: float = 90.0
    #: Anatase coarsening rate at ``growth_t_ref_c``, nm^n / h.
    anatase_growth_rate_nm_n_h: float = 9.5e4
    growth_t_ref_c: float = 600.0
    brookite_size_ratio: float = 0.8
    brookite_growth_ratio: float = 0.6
    #: Rutile nucleates from coalesced anatase: at least this size, or a multiple of anatase.
    rutile_nucleus_nm: float = 30.0
    rutile_nucleus_anatase_ratio: float = 1.5
    rutile_growth_exponent: float = 4.0
    rutile_growth_ea_kj_mol: float = 70.0
    #: Rutile coarsening rate at ``rutile_growth_t_ref_c``, nm^n / h.
    rutile_growth_rate_nm_n_h: float = 3.0e6
    rutile_growth_t_ref_c: float = 800.0

    # microstrain: size-dependent (surface stress, defects) plus a floor
    strain_reference: float = 2.4e-3
    strain_reference_size_nm: float = 10.0
    strain_floor: float = 2.0e-4
    rutile_strain_ratio: float = 0.6

    # particles a microscope sees
    agglomeration_base: float = 1.6
    #: Extra agglomeration near the isoelectric point, where particles carry no charge.
    agglomeration_iep_gain: float = 0.8
    isoelectric_ph: float = 6.0
    isoelectric_width_ph: float = 1.5
    #: Extra agglomeration from fast, uncontrolled hydrolysis at high water ratios.
    agglomeration_water_gain: float = 0.4
    agglomeration_water_ratio: float = 40.0
    #: Crystallites well above this size are resolved as individual grains.
    agglomeration_size_nm: float = 20.0
    sintering_ea_kj_mol: float = 300.0
    sintering_t_ref_c: float = 800.0
    sintering_gain: float = 0.3
    size_cv_base: float = 0.25
    size_cv_water_gain: float = 0.12
    size_cv_mixture_gain: float = 0.15

    # furnace and batch variation
    heating_rate_c_min: float = 5.0
    #: Furnace cooling time constant (Newtonian cooling to ambient), h.
    cooling_time_constant_h: float = 1.5
    unload_temperature_c: float = 100.0
    ambient_c: float = 25.0
    #: Relative std of per-batch perturbations of duration, pH, ratio and every rate constant.
    batch_variation: float = 0.03
    #: Std of the furnace's actual dwell temperature about its setpoint, degC.
    furnace_temperature_std_c: float = 4.0

    def expected(self, conditions: Mapping[str, float], sample_id: str = "expected") -> SampleState:
        """The noise-free sample these conditions make (no batch variation)."""
        applied = check_conditions(conditions, TIO2_CONDITION_LIMITS)
        return self._sample(applied, np.ones(6), sample_id)

    def synthesize(
        self, conditions: Mapping[str, float], rng: np.random.Generator, sample_id: str
    ) -> SampleState:
        """One batch: conditions and rates perturbed as a real furnace and sol would.

        The applied (perturbed) conditions are recorded in the sample's ``conditions``.
        """
        nominal = check_conditions(conditions, TIO2_CONDITION_LIMITS)
        relative = rng.normal(0.0, self.batch_variation, size=3)
        applied = {
            "temperature_c": nominal["temperature_c"]
            + rng.normal(0.0, self.furnace_temperature_std_c),
            "duration_h": nominal["duration_h"] * math.exp(relative[0]),
            "ph": nominal["ph"] * math.exp(relative[1]),
            "h2o_ti_ratio": nominal["h2o_ti_ratio"] * math.exp(relative[2]),
        }
        rate_factors = np.exp(rng.normal(0.0, self.batch_variation, size=6))
        return self._sample(applied, rate_factors, sample_id)

    def duration_s(self, conditions: Mapping[str, float]) -> float:
        """Furnace time: ramp up from ambient, dwell, then cool until the sample can be unloaded."""
        applied = check_conditions(conditions, TIO2_CONDITION_LIMITS)
        temperature_c = applied["temperature_c"]
        heating_h = (temperature_c - self.ambient_c) / self.heating_rate_c_min / 60.0
        cooling_h = self.cooling_time_constant_h * math.log(
            (temperature_c - self.ambient_c) / (self.unload_temperature_c - self.ambient_c)
        )
        return 3600.0 * (heating_h + applied["duration_h"] + cooling_h)

    def _rate_per_h(self, temperature_k, ea_kj_mol: float, t_ref_c) -> np.ndarray:
        """Arrhenius rate that equals 1/h at ``t_ref_c``."""
        t_ref_k = np.asarray(t_ref_c) + KELVIN_OFFSET
        return np.exp(
            -ea_kj_mol * 1e3 / GAS_CONSTANT_J_MOL_K * (1.0 / temperature_k - 1.0 / t_ref_k)
        )

    def _effective_time_h(self, temperature_k, duration_h, ea_kj_mol: float) -> np.ndarray:
        """Dwell plus the isothermal-equivalent time of the heating and cooling ramps."""
        thermal_width_k = GAS_CONSTANT_J_MOL_K * temperature_k**2 / (ea_kj_mol * 1e3)
        heating_rate_k_h = self.heating_rate_c_min * 60.0
        cooling_rate_k_h = (
            temperature_k - KELVIN_OFFSET - self.ambient_c
        ) / self.cooling_time_constant_h
        return duration_h + thermal_width_k * (1.0 / heating_rate_k_h + 1.0 / cooling_rate_k_h)

    def _jmak(self, rate_per_h, time_h, avrami_n: float) -> np.ndarray:
        return -np.expm1(-((rate_per_h * time_h) ** avrami_n))

    def state_arrays(
        self,
        temperature_c: np.ndarray | float,
        duration_h: np.ndarray | float,
        ph: np.ndarray | float,
        h2o_ti_ratio: np.ndarray | float,
        rate_factors: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """The model on (broadcast) arrays of conditions, without range checks.

        For maps of the landscape; :meth:`expected` and :meth:`synthesize` are the checked
        single-sample entry points. ``rate_factors`` multiplies the six rate constants
        (crystallisation, anatase->rutile, brookite->rutile, anatase, rutile growth, sintering).

        Returns
        -------
        dict
            ``fraction_<phase>``, ``size_nm_<phase>``, ``strain_<phase>`` for crystalline
            phases, ``particle_size_nm`` and ``particle_size_cv``, each broadcast over inputs.
        """
        factors = np.ones(6) if rate_factors is None else np.asarray(rate_factors, dtype=float)
        temperature_k = np.asarray(temperature_c, dtype=float) + KELVIN_OFFSET
        duration_h = np.asarray(duration_h, dtype=float)
        ph = np.asarray(ph, dtype=float)
        ratio = np.asarray(h2o_ti_ratio, dtype=float)
        acidic = _sigmoid((self.brookite_ph - ph) / self.ph_transition_width)
        unhydrolysed = np.exp(-ratio / self.hydrolysis_ratio_scale)

        def progress(ea_kj_mol, t_ref_c, avrami_n, factor):
            rate = factor * self._rate_per_h(temperature_k, ea_kj_mol, t_ref_c)
            return self._jmak(
                rate, self._effective_time_h(temperature_k, duration_h, ea_kj_mol), avrami_n
            )

        crystallised = progress(
            self.crystallisation_ea_kj_mol,
            self.crystallisation_t_ref_c
            + self.low_water_crystallisation_delay_c * unhydrolysed
            - self.acid_crystallisation_advance_c * acidic,
            self.crystallisation_avrami_n,
            factors[0],
        )
        rutile_t_ref_c = (
            self.anatase_rutile_t_ref_c
            - self.acid_rutile_advance_c * acidic
            - self.low_water_rutile_advance_c * np.exp(-ratio / self.low_water_rutile_ratio)
            + self.base_rutile_delay_c
            * _sigmoid((ph - self.base_rutile_ph) / self.ph_transition_width)
        )
        anatase_to_rutile = progress(
            self.anatase_rutile_ea_kj_mol, rutile_t_ref_c, self.anatase_rutile_avrami_n, factors[1]
        )
        brookite_to_rutile = progress(
            self.brookite_rutile_ea_kj_mol,
            rutile_t_ref_c - self.brookite_rutile_advance_c,
            self.anatase_rutile_avrami_n,
            factors[2],
        )
        brookite_share = self.brookite_max_fraction * acidic
        direct_rutile_share = self.direct_rutile_max_fraction * _sigmoid(
            (self.direct_rutile_ph - ph) / (0.5 * self.ph_transition_width)
        )
        anatase_share = 1.0 - brookite_share - direct_rutile_share
        crystalline_shares = {
            "anatase": crystallised * anatase_share * (1.0 - anatase_to_rutile),
            "brookite": crystallised * brookite_share * (1.0 - brookite_to_rutile),
            "rutile": crystallised
            * (
                direct_rutile_share
                + brookite_share * brookite_to_rutile
                + anatase_share * anatase_to_rutile
            ),
        }

        primary_nm = (
            self.primary_size_nm
            * (self.primary_reference_ratio / ratio) ** self.primary_ratio_exponent
            * np.exp(self.primary_ph_coefficient * (ph - 4.0))
        )
        n = self.growth_exponent
        anatase_k = (
            factors[3]
            * self.anatase_growth_rate_nm_n_h
            * self._rate_per_h(temperature_k, self.anatase_growth_ea_kj_mol, self.growth_t_ref_c)
        )
        anatase_time_h = self._effective_time_h(
            temperature_k, duration_h, self.anatase_growth_ea_kj_mol
        )
        anatase_nm = (primary_nm**n + anatase_k * anatase_time_h) ** (1.0 / n)
        brookite_nm = (
            (self.brookite_size_ratio * primary_nm) ** n
            + self.brookite_growth_ratio * anatase_k * anatase_time_h
        ) ** (1.0 / n)
        m = self.rutile_growth_exponent
        rutile_nucleus_nm = np.maximum(
            self.rutile_nucleus_nm, self.rutile_nucleus_anatase_ratio * anatase_nm
        )
        rutile_k = (
            factors[4]
            * self.rutile_growth_rate_nm_n_h
            * self._rate_per_h(
                temperature_k, self.rutile_growth_ea_kj_mol, self.rutile_growth_t_ref_c
            )
        )
        rutile_time_h = self._effective_time_h(
            temperature_k, duration_h, self.rutile_growth_ea_kj_mol
        )
        rutile_nm = (rutile_nucleus_nm**m + rutile_k * rutile_time_h) ** (1.0 / m)
        sizes = {
            AMORPHOUS: primary_nm,
            "anatase": anatase_nm,
            "brookite": brookite_nm,
            "rutile": rutile_nm,
        }

        # A disordered surface shell, amorphous to XRD, anneals away with time at temperature;
        # it is a large share of small crystallites, so short dwells leave them poorly ordered.
        shell_nm = self.disordered_shell_nm * np.exp(
            -factors[3]
            * self._rate_per_h(
                temperature_k, self.shell_annealing_ea_kj_mol, self.shell_annealing_t_ref_c
            )
            * self._effective_time_h(temperature_k, duration_h, self.shell_annealing_ea_kj_mol)
        )
        fractions = {AMORPHOUS: 1.0 - crystallised}
        for phase, share in crystalline_shares.items():
            ordered = np.clip(1.0 - 2.0 * shell_nm / sizes[phase], 0.0, 1.0) ** 3
            fractions[phase] = share * ordered
            fractions[AMORPHOUS] = fractions[AMORPHOUS] + share * (1.0 - ordered)

        sintered = progress(self.sintering_ea_kj_mol, self.sintering_t_ref_c, 0.5, factors[5])
        sol_agglomeration = (
            self.agglomeration_base
            + self.agglomeration_iep_gain
            * np.exp(-(((ph - self.isoelectric_ph) / self.isoelectric_width_ph) ** 2))
            + self.agglomeration_water_gain * (ratio / self.agglomeration_water_ratio) ** 2
        )
        mean_size_nm = sum(fractions[p] * sizes[p] for p in TIO2_PHASES)
        # Sintering necks agglomerates together; large crystallites are resolved as grains.
        agglomeration = 1.0 + (
            sol_agglomeration * (1.0 + self.sintering_gain * sintered) - 1.0
        ) * self.agglomeration_size_nm / (self.agglomeration_size_nm + mean_size_nm)
        particle_nm = mean_size_nm * agglomeration
        mixing = 1.0 - sum(fractions[p] ** 2 for p in TIO2_PHASES)
        particle_cv = (
            self.size_cv_base
            + self.size_cv_water_gain * ratio / 60.0
            + self.size_cv_mixture_gain * mixing
        )

        arrays = {
            f"fraction_{p}": np.broadcast_to(f, particle_nm.shape) for p, f in fractions.items()
        }
        for phase in TIO2_PHASES[1:]:
            ratio_to_reference = self.strain_reference_size_nm / sizes[phase]
            scale = self.rutile_strain_ratio if phase == "rutile" else 1.0
            arrays[f"size_nm_{phase}"] = np.broadcast_to(sizes[phase], particle_nm.shape)
            arrays[f"strain_{phase}"] = np.broadcast_to(
                scale * self.strain_reference * ratio_to_reference + self.strain_floor,
                particle_nm.shape,
            )
        arrays["particle_size_nm"] = particle_nm
        arrays["particle_size_cv"] = np.broadcast_to(particle_cv, particle_nm.shape)
        return arrays

    def _sample(
        self, applied: dict[str, float], rate_factors: np.ndarray, sample_id: str
    ) -> SampleState:
        arrays = self.state_arrays(
            applied["temperature_c"],
            applied["duration_h"],
            applied["ph"],
            applied["h2o_ti_ratio"],
            rate_factors,
        )
        fractions = {p: max(float(arrays[f"fraction_{p}"]), 0.0) for p in TIO2_PHASES}
        total = sum(fractions.values())
        fractions = {p: w / total for p, w in fractions.items()}
        crystalline = TIO2_PHASES[1:]
        return SampleState(
            sample_id=sample_id,
            conditions=dict(applied),
            phase_fractions=fractions,
            crystallite_size_nm={p: float(arrays[f"size_nm_{p}"]) for p in crystalline},
            microstrain={p: float(arrays[f"strain_{p}"]) for p in crystalline},
            particle_size_nm=float(arrays["particle_size_nm"]),
            particle_size_cv=float(arrays["particle_size_cv"]),
        )
