"""An Fe-Ga-Pd-like ternary composition spread: composition -> phases -> XRD and magnetisation.

A second materials system of a different shape from TiO2: the knobs are the film's
composition (``x_ga``, ``x_pd``; iron is the balance) and the task is phase mapping, as in
closed-loop phase mapping of the Fe-Ga-Pd spread (Kusne et al., Nat. Commun. 11, 5966
(2020); Long et al., Rev. Sci. Instrum. 78, 072217 (2007)).

The phase diagram is thermodynamic, not drawn by hand: every phase has a model Gibbs
energy of mixing, a paraboloid around its ideal composition, and the equilibrium at an
overall composition is the lower convex hull of all of them (the common-tangent
construction). The hull's facets are the single-phase fields, the two-phase fields with
their tie lines and the three-phase triangles, so phase fractions follow the lever rule
and each phase's own composition is the end of its tie line. Lattice parameters follow
Vegard's law from those phase compositions, so peaks shift across a field as in a real
spread. Magnetisation is the fraction-weighted sum of each phase's saturation
polarisation, diluted by its non-magnetic Ga and Pd.

The phases are honest approximations of those reported in the Fe-Ga-Pd system; their
structures (``bcc``, ``fe3ga_d03``, ``fe3ga_l12``, ``fcc``, ``fepd_l10``, ``pdga_b20``) are
named once, with their sources, in :mod:`physics.structures`.

The free-energy depths and curvatures are invented to give a diagram of the right kind
(a wide bcc field at the Fe corner, ordered Fe3Ga at higher Ga, fcc and L1_0 towards Pd,
a Pd-Ga intermetallic beyond), not fitted to any measurement.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache, cached_property

import numpy as np
from pymatgen.core import Structure
from scipy.spatial import ConvexHull

from physics.diffraction import (
    CU_KALPHA1_ANGSTROM,
    CU_KALPHA2_ANGSTROM,
    CU_KALPHA2_RATIO,
    bragg_two_theta_deg,
    pseudo_voigt_sum,
    scherrer_fwhm_deg,
    strain_fwhm_deg,
)
from physics.phases import FEGAPD_PHASES
from physics.structures import get_structure, reflections
from simulators.fegapd_limits import MIN_X_FE, composition_from_conditions
from simulators.sample import SampleState

#: Boltzmann constant, eV/K.
BOLTZMANN_EV_K = 8.617333262e-5

#: Elements in the order of every composition vector.
ELEMENTS = ("Fe", "Ga", "Pd")


@dataclass(frozen=True)
class PhaseModel:
    """One phase: free-energy paraboloid, Vegard slopes and magnetism.

    Its reference structure (at the ideal composition) is :func:`phase_structure`.

    Attributes
    ----------
    ideal_composition
        ``(x_fe, x_ga, x_pd)`` at the bottom of the free-energy paraboloid.
    depth_ev
        Gibbs energy at the ideal composition (before the mixing entropy), eV/atom.
    curvature_ev
        ``G = depth + curvature * |x - ideal|^2 + kT sum(x ln x)``, eV/atom.
    vegard_slope
        Relative change of the lattice parameters per unit mole fraction of Ga and of Pd
        away from the ideal composition (``da/a / dx_ga``, ``da/a / dx_pd``).
    polarisation_t
        Saturation polarisation mu0 Ms of the phase at its ideal composition, tesla.
    """

    ideal_composition: tuple[float, float, float]
    depth_ev: float
    curvature_ev: float
    vegard_slope: tuple[float, float]
    polarisation_t: float


#: The phases of the model system, each named once (see the module docstring for sources).
PHASES: dict[str, PhaseModel] = dict(
    zip(
        FEGAPD_PHASES,
        (
            PhaseModel((0.90, 0.06, 0.04), -0.13, 0.6, (0.075, 0.12), 2.15),  # bcc
            PhaseModel((0.75, 0.25, 0.0), -0.14, 1.5, (0.06, 0.08), 1.45),  # fe3ga_d03
            PhaseModel((0.70, 0.22, 0.08), -0.14, 1.5, (0.05, 0.09), 1.2),  # fe3ga_l12
            PhaseModel((0.60, 0.05, 0.35), -0.14, 0.5, (0.03, 0.07), 1.5),  # fcc
            PhaseModel((0.5, 0.0, 0.5), -0.17, 1.5, (0.03, 0.06), 1.35),  # fepd_l10
            PhaseModel((0.05, 0.48, 0.47), -0.16, 1.5, (0.02, 0.02), 0.0),  # pdga_b20
        ),
        strict=True,
    )
)

#: Phase names in a fixed order (the order of every phase vector).
PHASE_NAMES = tuple(PHASES)

#: A phase counts as present in a region above this phase fraction.
PRESENT_FRACTION = 0.02

#: Relative loss of polarisation per unit mole fraction of Ga + Pd above a phase's ideal.
_DILUTION_PER_SOLUTE = 1.6

#: Step of the composition grid the hull is built on, mol/mol.
_GRID_STEP = 0.02


@cache
def phase_structure(phase: str) -> Structure:
    """The reference structure of one of :data:`PHASES` (cached; copy before changing it)."""
    return get_structure(phase)


@cache
def _reference_lines(phase: str, wavelength_angstrom: float) -> tuple[np.ndarray, np.ndarray]:
    """d-spacings (A) and intensities per atom of the reference structure's lines."""
    structure = phase_structure(phase)
    _, d_angstrom, intensity = reflections(structure, wavelength_angstrom, (5.0, 150.0))
    # Per atom, so a phase fraction (atoms) weights its pattern directly.
    return d_angstrom, intensity / structure.num_sites**2


@dataclass(frozen=True)
class Equilibrium:
    """The phases at one overall composition (lever rule on the hull facet below it).

    Attributes
    ----------
    fractions
        Atom fraction of each phase, ``PHASE_NAMES`` order, sums to 1.
    compositions
        Composition ``(x_fe, x_ga, x_pd)`` of each phase (its tie-line end), shape (6, 3);
        rows of absent phases are NaN.
    """

    fractions: np.ndarray
    compositions: np.ndarray

    @property
    def present(self) -> tuple[str, ...]:
        """Phases above :data:`PRESENT_FRACTION`, in ``PHASE_NAMES`` order."""
        return tuple(
            p for p, f in zip(PHASE_NAMES, self.fractions, strict=True) if f > PRESENT_FRACTION
        )


class PhaseDiagram:
    """The lower convex hull of the phases' free energies over the composition triangle."""

    def __init__(
        self, phases: Mapping[str, PhaseModel] = PHASES, anneal_temperature_k: float = 873.0
    ) -> None:
        steps = int(round(1.0 / _GRID_STEP))
        ga, pd = np.meshgrid(np.arange(steps + 1), np.arange(steps + 1), indexing="ij")
        keep = ga + pd <= steps
        grid = np.column_stack(
            [1.0 - (ga[keep] + pd[keep]) / steps, ga[keep] / steps, pd[keep] / steps]
        )
        points, owners = [], []
        # Ideal mixing entropy at the anneal temperature: every phase gains it, and its
        # infinite slope at the edges keeps solid solutions stable near the corners.
        with np.errstate(divide="ignore", invalid="ignore"):
            entropy = np.nansum(np.where(grid > 0, grid * np.log(grid), 0.0), axis=1)
        mixing_ev = BOLTZMANN_EV_K * anneal_temperature_k * entropy
        for index, model in enumerate(phases.values()):
            energy = (
                mixing_ev
                + model.depth_ev
                + model.curvature_ev
                * np.sum((grid - np.array(model.ideal_composition)) ** 2, axis=1)
            )
            points.append(np.column_stack([grid[:, 1:], energy]))
            owners.append(np.full(len(grid), index))
        cloud = np.concatenate(points)
        hull = ConvexHull(cloud)
        lower = hull.equations[:, 2] < -1e-12
        self._simplices = hull.simplices[lower]
        self._vertices = cloud[:, :2]
        self._owners = np.concatenate(owners)
        self._phase_count = len(phases)
        corners = self._vertices[self._simplices]  # facets x 3 x 2
        origin = corners[:, 2]
        basis = np.stack([corners[:, 0] - origin, corners[:, 1] - origin], axis=-1)
        determinant = np.linalg.det(basis)
        usable = np.abs(determinant) > 1e-14
        self._simplices = self._simplices[usable]
        self._origin = origin[usable]
        self._inverse = np.linalg.inv(basis[usable])

    def equilibrium(self, composition: np.ndarray) -> Equilibrium:
        """Phase fractions and phase compositions at ``(x_fe, x_ga, x_pd)``."""
        composition = np.asarray(composition, dtype=float)
        point = composition[1:]
        local = np.einsum("fij,fj->fi", self._inverse, point - self._origin)
        barycentric = np.column_stack([local, 1.0 - local.sum(axis=1)])
        facet = int(np.argmax(barycentric.min(axis=1)))
        weights = np.clip(barycentric[facet], 0.0, None)
        weights /= weights.sum()
        vertices = self._simplices[facet]
        fractions = np.zeros(self._phase_count)
        compositions = np.full((self._phase_count, 3), np.nan)
        for phase in np.unique(self._owners[vertices]):
            mine = self._owners[vertices] == phase
            share = weights[mine].sum()
            fractions[phase] = share
            xy = (weights[mine, None] * self._vertices[vertices[mine]]).sum(axis=0) / max(
                share, 1e-300
            )
            compositions[phase] = (1.0 - xy.sum(), xy[0], xy[1])
        return Equilibrium(fractions=fractions, compositions=compositions)


@cache
def default_phase_diagram() -> PhaseDiagram:
    """The phase diagram of :data:`PHASES` (built once, a fraction of a second)."""
    return PhaseDiagram()


@dataclass(frozen=True)
class FeGaPdSample:
    """The truth about one spot of the spread, beyond :class:`SampleState`.

    Attributes
    ----------
    state
        Phase fractions (atom fractions), crystallite sizes and microstrain.
    composition
        ``(x_fe, x_ga, x_pd)`` actually deposited.
    lattice_scale
        Each present phase's lattice parameters relative to its reference structure.
    polarisation_t
        Saturation polarisation mu0 Ms of the spot, tesla.
    region
        The phases present (above :data:`PRESENT_FRACTION`): the phase region's name.
    """

    state: SampleState
    composition: np.ndarray
    lattice_scale: Mapping[str, float]
    polarisation_t: float
    region: tuple[str, ...]


@dataclass(frozen=True)
class FeGaPdSpread:
    """A sputtered Fe-Ga-Pd composition spread annealed to equilibrium.

    Attributes
    ----------
    composition_noise
        Std of the deposited composition about the set point (flux drift), mol/mol.
    crystallite_size_nm
        Mean crystallite size of the film's phases, nm (thin films: small grains).
    crystallite_size_cv
        Spot-to-spot relative scatter of the crystallite size.
    microstrain
        Residual rms microstrain of the film.
    deposition_s
        Instrument time to deposit and anneal one spot, s.
    diagram
        The phase diagram the spots equilibrate on (:func:`default_phase_diagram`).
    """

    composition_noise: float = 0.003
    crystallite_size_nm: float = 18.0
    crystallite_size_cv: float = 0.15
    microstrain: float = 2e-3
    deposition_s: float = 1800.0
    diagram: PhaseDiagram = field(default_factory=default_phase_diagram, repr=False)

    def truth(
        self,
        composition: np.ndarray,
        sample_id: str = "expected",
        crystallite_size_nm: float | None = None,
    ) -> FeGaPdSample:
        """The spot at exactly ``(x_fe, x_ga, x_pd)`` (no deposition noise)."""
        composition = np.asarray(composition, dtype=float)
        equilibrium = self.diagram.equilibrium(composition)
        size_nm = crystallite_size_nm or self.crystallite_size_nm
        fractions, scales, polarisation = {}, {}, 0.0
        for index, phase in enumerate(PHASE_NAMES):
            fraction = float(equilibrium.fractions[index])
            if fraction <= 0.0:
                continue
            model = PHASES[phase]
            offset = equilibrium.compositions[index] - np.array(model.ideal_composition)
            scales[phase] = float(
                1.0 + model.vegard_slope[0] * offset[1] + model.vegard_slope[1] * offset[2]
            )
            # Non-magnetic Ga and Pd beyond the ideal composition dilute the moment.
            magnetic = float(
                np.clip(1.0 - _DILUTION_PER_SOLUTE * (offset[1] + offset[2]), 0.0, 1.3)
            )
            polarisation += fraction * model.polarisation_t * magnetic
            fractions[phase] = fraction
        total = sum(fractions.values())
        fractions = {p: f / total for p, f in fractions.items()}
        state = SampleState(
            sample_id=sample_id,
            conditions={"x_ga": float(composition[1]), "x_pd": float(composition[2])},
            phase_fractions=fractions,
            crystallite_size_nm={p: size_nm for p in fractions},
            microstrain={p: self.microstrain for p in fractions},
            particle_size_nm=2.0 * size_nm,
            particle_size_cv=0.35,
            lattice_scale=scales,
            polarisation_t=polarisation,
        )
        return FeGaPdSample(
            state=state,
            composition=composition,
            lattice_scale=scales,
            polarisation_t=polarisation,
            region=equilibrium.present,
        )

    def deposit(
        self, conditions: Mapping[str, float], rng: np.random.Generator, sample_id: str
    ) -> FeGaPdSample:
        """One spot at the set composition, with deposition noise and size scatter."""
        composition = composition_from_conditions(conditions)
        composition = np.clip(composition + rng.normal(0.0, self.composition_noise, 3), 0.0, None)
        composition /= composition.sum()
        size_nm = self.crystallite_size_nm * float(rng.lognormal(0.0, self.crystallite_size_cv))
        return self.truth(composition, sample_id, size_nm)

    def synthesize(
        self, conditions: Mapping[str, float], rng: np.random.Generator, sample_id: str
    ) -> SampleState:
        """The reactor protocol: the spot's :class:`SampleState` (see :meth:`deposit`)."""
        return self.deposit(conditions, rng, sample_id).state

    def duration_s(self, conditions: Mapping[str, float]) -> float:
        """Instrument time of one spot, s."""
        composition_from_conditions(conditions)
        return self.deposition_s

    @staticmethod
    def check_conditions(conditions: Mapping[str, float]) -> None:
        """Raise ``ValueError`` for a composition the targets cannot deposit (outside the
        spread's triangle): the joint limit no single setpoint can check."""
        composition_from_conditions(conditions)


@dataclass(frozen=True)
class SpreadDiffractometer:
    """A Cu K-alpha diffractometer scanning the window of the Fe-Ga-Pd spread measurements.

    The defaults (37-48 deg in 0.02 deg steps) are the window of the published data;
    peaks are pseudo-Voigt (instrument Gaussian, Scherrer Lorentzian, strain Gaussian),
    with K-alpha2, a sloping background, a fibre texture that scales each line's
    intensity by a random factor per spot, and Poisson counts.
    """

    two_theta_min_deg: float = 37.0
    two_theta_max_deg: float = 48.0
    n_points: int = 551
    instrument_fwhm_deg: float = 0.12
    kalpha2_ratio: float = CU_KALPHA2_RATIO
    line_counts: float = 60.0
    background_counts: float = 8.0
    texture_spread: float = 0.3

    @cached_property
    def two_theta_deg(self) -> np.ndarray:
        """2-theta of every step, deg."""
        return np.linspace(self.two_theta_min_deg, self.two_theta_max_deg, self.n_points)

    def ideal_pattern(
        self, sample: FeGaPdSample, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        """Expected counts per step; ``rng`` draws the texture (None: untextured)."""
        x = self.two_theta_deg
        counts = self.background_counts * (1.0 + 0.3 * (x[-1] - x) / (x[-1] - x[0]))
        for phase, fraction in sample.state.phase_fractions.items():
            d_angstrom, intensity = _reference_lines(phase, CU_KALPHA1_ANGSTROM)
            d_angstrom = d_angstrom * sample.lattice_scale[phase]
            if rng is not None:
                intensity = intensity * rng.lognormal(0.0, self.texture_spread, intensity.size)
            centres, areas, wavelengths = [], [], []
            for wavelength, ratio in (
                (CU_KALPHA1_ANGSTROM, 1.0),
                (CU_KALPHA2_ANGSTROM, self.kalpha2_ratio),
            ):
                two_theta = bragg_two_theta_deg(d_angstrom, wavelength)
                ok = np.isfinite(two_theta)
                centres.append(two_theta[ok])
                areas.append(ratio * intensity[ok])
                wavelengths.append(np.full(ok.sum(), wavelength))
            centre = np.concatenate(centres)
            area = np.concatenate(areas)
            inside = (centre > x[0] - 3.0) & (centre < x[-1] + 3.0)
            if not inside.any():
                continue
            centre, area = centre[inside], area[inside]
            line_wavelength = np.concatenate(wavelengths)[inside]
            size_nm = sample.state.crystallite_size_nm[phase]
            strain = sample.state.microstrain.get(phase, 0.0)
            lorentz = scherrer_fwhm_deg(size_nm, centre, line_wavelength)
            gauss = np.hypot(self.instrument_fwhm_deg, strain_fwhm_deg(strain, centre))
            counts = counts + fraction * self.line_counts * pseudo_voigt_sum(
                x, centre, area / _line_scale(), gauss, lorentz
            )
        return counts

    def measure(self, sample: FeGaPdSample, rng: np.random.Generator) -> np.ndarray:
        """One scan: Poisson counts per step."""
        return rng.poisson(self.ideal_pattern(sample, rng)).astype(np.float64)


@cache
def _line_scale() -> float:
    """Strongest line of pure bcc Fe per atom: the unit of every phase's line areas."""
    return float(_reference_lines("bcc", CU_KALPHA1_ANGSTROM)[1].max())


def spread_compositions(
    step: float = 0.02, min_x_fe: float = MIN_X_FE, max_x_fe: float = 0.9
) -> np.ndarray:
    """A triangular grid of ``(x_fe, x_ga, x_pd)`` over the spread, like a wafer's spots."""
    points = []
    for x_ga in np.arange(0.0, 1.0 + 1e-9, step):
        for x_pd in np.arange(0.0, 1.0 - x_ga + 1e-9, step):
            x_fe = 1.0 - x_ga - x_pd
            if min_x_fe - 1e-9 <= x_fe <= max_x_fe + 1e-9 and x_ga >= 0.02 and x_pd >= 0.02:
                points.append((x_fe, x_ga, x_pd))
    return np.array(points)


def region_labels(regions: list[tuple[str, ...]]) -> np.ndarray:
    """Integer labels, one per distinct phase region, in order of first appearance."""
    index: dict[tuple[str, ...], int] = {}
    return np.array([index.setdefault(region, len(index)) for region in regions])


@dataclass(frozen=True, eq=False)
class SpreadMeasurement:
    """A measured spread with its truth: one row per spot.

    Attributes
    ----------
    compositions
        Deposited ``(x_fe, x_ga, x_pd)`` per spot, ``(n, 3)``.
    two_theta_deg
        The scan's 2-theta grid, deg.
    patterns
        Counts per spot, ``(n, n_points)``.
    polarisation_t
        Saturation polarisation per spot, tesla.
    regions
        The phases present at each spot (the true phase region).
    """

    compositions: np.ndarray
    two_theta_deg: np.ndarray
    patterns: np.ndarray
    polarisation_t: np.ndarray
    regions: list[tuple[str, ...]]


def simulate_spread(
    rng: np.random.Generator,
    n_spots: int = 278,
    *,
    x_fe_range: tuple[float, float] = (0.42, 0.86),
    min_x_ga: float = 0.03,
    min_x_pd: float = 0.04,
    spread: FeGaPdSpread | None = None,
    diffractometer: SpreadDiffractometer | None = None,
) -> SpreadMeasurement:
    """``n_spots`` spots at random compositions inside the spread, deposited and measured.

    The default composition window is that of the published Fe-Ga-Pd wafer.
    """
    spread = spread or FeGaPdSpread()
    diffractometer = diffractometer or SpreadDiffractometer()
    compositions: list[np.ndarray] = []
    while len(compositions) < n_spots:
        candidate = rng.dirichlet((1.0, 1.0, 1.0))
        if (
            x_fe_range[0] <= candidate[0] <= x_fe_range[1]
            and candidate[1] >= min_x_ga
            and candidate[2] >= min_x_pd
        ):
            compositions.append(candidate)
    spots = [
        spread.deposit({"x_ga": c[1], "x_pd": c[2]}, rng, f"spot{index}")
        for index, c in enumerate(compositions)
    ]
    return SpreadMeasurement(
        compositions=np.array([spot.composition for spot in spots]),
        two_theta_deg=diffractometer.two_theta_deg.copy(),
        patterns=np.array([diffractometer.measure(spot, rng) for spot in spots]),
        polarisation_t=np.array([spot.polarisation_t for spot in spots]),
        regions=[spot.region for spot in spots],
    )
