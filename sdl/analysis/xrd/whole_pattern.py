"""Phase fractions and crystallite sizes from a powder pattern, by whole-pattern fitting.

The measured pattern is modelled as a non-negative combination of reference profiles, one per
phase, computed from the crystal structures (:mod:`sdl.analysis.xrd.reference`) and rendered
with the analysis's own instrument model (:mod:`sdl.analysis.xrd.instrument`), plus a smooth
background:

    counts(2theta) = sum_p s_p * profile_p(2theta; D_p, zero) + sum_k b_k T_k(2theta)

The profiles are normalised per unit weight fraction (intensities ``|F|^2 m LP / (rho V^2)``,
Hill & Howard), so the scale factors ``s_p`` are the weight fractions times one unknown
overall factor (flux times counting time), and ``w_p = s_p / sum s``: a standardless
quantification in which the amorphous hump is one more phase. The phases are the TiO2
polymorphs by name, or any phases given as :class:`~sdl.analysis.xrd.reference.ReferencePhase`
(e.g. from a user's CIF files); a phase's calibration factor multiplies its profile, so its
scale divided by the factor is what is normalised. With such phases the amorphous component
is their nanocrystalline limit (:func:`~sdl.analysis.xrd.reference.nanocrystalline_limit`),
not the TiO2 hump.

The background is a low-order Chebyshev series fitted together with the phases rather than
subtracted beforehand: a separate baseline step (SNIP, iterative polynomial) cannot tell a
broad amorphous hump from background and would remove it. Crystallite sizes (as ``log D``)
and the goniometer zero shift are the nonlinear parameters; for each trial value the linear
scale factors are solved exactly with bounds (variable projection, Golub & Pereyra), so
``least_squares`` only searches a few dimensions. Trial profiles come from tables
interpolated in size and zero shift (:mod:`sdl.analysis.xrd.profile_table`) with their
derivatives, so the Jacobian is analytic (Kaufman's variable-projection form). Points are
weighted by ``1/max(counts, 1)`` (Poisson); uncertainties are the linearised covariance of
all parameters at the optimum, scaled by the reduced chi-square so they stay honest when the
counts are not raw counts, and by the residuals' serial correlation, so a misfit profile
widens them
(``serial_correlation_factor``).
Every component must earn its place by an F-test of the fit with and without it (see
``_fit_and_prune``), because a very broad profile of an absent phase can always absorb a
little misfit; a phase whose size sits at the lower bound, where its lines are humps, must
pass by a wide margin. The result carries the goodness of fit (reduced chi-square beside
Rwp), each component's detection limit and flags for a poor fit or a size at a bound.
Microstrain is not fitted: its broadening is small next to size broadening for nanocrystals,
and fitting both per phase is ill-conditioned on one lab pattern (sizes of strained
simulated samples come out ~5% small).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
from scipy.optimize import least_squares, nnls
from scipy.stats import f as f_distribution

from physics.phases import AMORPHOUS, TIO2_POLYMORPHS
from physics.structures import get_structure
from sdl.analysis.xrd.background import chebyshev_basis
from sdl.analysis.xrd.instrument import ProfileShape
from sdl.analysis.xrd.profile_table import (
    MAX_ZERO_SHIFT_DEG,
    Humps,
    ProfileTable,
    profile_table,
)
from sdl.analysis.xrd.reference import (
    ReferencePhase,
    amorphous_tio2_humps,
    library_from_structures,
    nanocrystalline_limit,
)

logger = logging.getLogger(__name__)

#: Smallest pattern worth fitting, points.
_MIN_POINTS = 50

#: Degree of the Chebyshev background.
_BACKGROUND_DEGREE = 4

#: Crystallite sizes the fit may return, nm; beyond ~1 um lines are instrument-limited.
_SIZE_BOUNDS_NM = (1.5, 1000.0)

#: Starting crystallite size, nm.
_START_SIZE_NM = 30.0

#: Farthest the fitted zero may lie from its start (0, or a calibrated zero), deg.
_ZERO_SHIFT_REACH_DEG = 0.5

#: Weight fraction below which a phase has no meaningful crystallite size.
_MIN_FRACTION_FOR_SIZE = 0.01

#: False-positive probability of the F-test each component must pass: 1e-3 per test keeps
#: the chance of inventing one of four components below 0.4 % on a pattern the model fits.
_SIGNIFICANCE = 1e-3

#: A size within this factor of a bound counts as held there: at 1.5-2.3 nm the lines are
#: several degrees wide and trade off against the background and the amorphous hump.
_NEAR_SIZE_BOUND = 1.5

#: How many times the F-test's critical value a phase held at the lower size bound must beat
#: (then dropping it raises chi-square by over ~70 % on 2000 points): phases invented there
#: from Lorentzian tails or a background hump beat it 10-14 times.
_SIZE_BOUND_MARGIN = 100.0

#: A component whose chi-square rise, with the other sizes held, is this many times what it
#: must beat is kept without refitting the rest: on 30 simulated and independent patterns a
#: refit won back at most 80 % of the held rise.
_CLEARLY_NEEDED = 10.0

#: Smallest squared norm, of a unit column with the background projected out, that the
#: linear solve takes as independent of the background without a rank-revealing factor.
_DISTINCT_COLUMN = 1e-8

#: Relative change of chi-square and of the parameters at which the fit stops: a thousandth
#: of a typical uncertainty (sizes are known to about 1 %).
_TOLERANCE = 1e-5

#: Reduced chi-square past which a fit is poor: the misfit is as large as the counting noise.
_POOR_FIT_REDUCED_CHI2 = 2.0

#: Rwp past which a fit is poor even where the counts are scaled and chi-square misleads;
#: counting noise alone reaches it only below ~11 counts a step (Rexp ~ 1/sqrt(counts)), and
#: the lowest-flux patterns of the simulated test set stay under 0.23.
_POOR_FIT_RWP = 0.3


@dataclass(frozen=True, eq=False)
class XRDFeatures:
    """What one powder pattern says about a sample.

    Attributes
    ----------
    phase_fractions, phase_fractions_std
        Weight fraction per phase (amorphous included), in [0, 1] and summing to 1, with
        their standard uncertainties.
    crystallite_size_nm, crystallite_size_nm_std
        Scherrer crystallite size per crystalline phase, nm, with standard uncertainties;
        NaN for phases below 1 wt%.
    zero_shift_deg, zero_shift_deg_std
        Fitted goniometer zero shift, deg, with its standard uncertainty (0 when it was not
        refined); a drift of it between samples flags a misaligned instrument.
    rwp
        Weighted-profile R factor of the fit (0 is perfect; Poisson noise alone gives about
        ``1 / sqrt(mean counts)``).
    reduced_chi2
        Goodness of fit, chi-square per degree of freedom with Poisson weights: about 1 when
        the model explains the pattern to its counting noise (``sqrt`` of it is Rwp / Rexp).
        Meaningful for raw counts only.
    detection_limit
        Per component, the smallest weight fraction that would pass the F-test against this
        pattern's noise and the other components (linearised; absent phases at 30 nm).
    fit_flags
        Why not to trust the result blindly: ``"poor_fit"`` (reduced chi-square above 2 or
        Rwp above 0.3) and ``"<phase>_size_at_bound"`` (a kept phase within a factor 1.5 of
        a crystallite-size bound).
    fitted_pattern
        The model at the optimum, background included, counts per step.
    background
        The fitted background alone, counts per step.
    """

    phase_fractions: dict[str, float]
    phase_fractions_std: dict[str, float]
    crystallite_size_nm: dict[str, float]
    crystallite_size_nm_std: dict[str, float]
    zero_shift_deg: float
    zero_shift_deg_std: float
    rwp: float
    fitted_pattern: np.ndarray
    background: np.ndarray
    reduced_chi2: float
    detection_limit: dict[str, float]
    fit_flags: tuple[str, ...]

    def as_dict(self) -> dict[str, float]:
        """The scalar features by name, as the analysis pipeline records them."""
        features: dict[str, float] = {}
        for phase, fraction in self.phase_fractions.items():
            features[f"{phase}_fraction"] = float(fraction)
            features[f"{phase}_fraction_std"] = float(self.phase_fractions_std[phase])
        for phase, size_nm in self.crystallite_size_nm.items():
            features[f"{phase}_crystallite_size_nm"] = float(size_nm)
            features[f"{phase}_crystallite_size_nm_std"] = float(
                self.crystallite_size_nm_std[phase]
            )
        for component, limit in self.detection_limit.items():
            features[f"{component}_detection_limit"] = float(limit)
        features["rwp"] = float(self.rwp)
        features["xrd_reduced_chi2"] = float(self.reduced_chi2)
        features["xrd_poor_fit"] = float("poor_fit" in self.fit_flags)
        features["xrd_zero_shift_deg"] = float(self.zero_shift_deg)
        features["xrd_zero_shift_deg_std"] = float(self.zero_shift_deg_std)
        return features


@cache
def _tio2_library() -> Mapping[str, ReferencePhase]:
    """Reflections of the TiO2 polymorphs, computed once."""
    return library_from_structures({p: get_structure(p) for p in TIO2_POLYMORPHS})


class _PatternModel:
    """Profiles, design matrix, the variable-projection residual of one fit and its Jacobian."""

    def __init__(
        self,
        two_theta_deg: np.ndarray,
        shape: ProfileShape,
        zero_shift_deg: float,
        counts: np.ndarray,
        library: Mapping[str, ReferencePhase],
        amorphous: ReferencePhase | Humps | None,
        fit_zero_shift: bool,
    ) -> None:
        self.two_theta_deg = two_theta_deg
        self.library = library
        self.amorphous = amorphous
        self.shape = shape
        self.zero_shift_deg = zero_shift_deg
        self.counts = counts
        self.phases = tuple(library)
        self.include_amorphous = amorphous is not None
        self.fit_zero_shift = fit_zero_shift
        self.sqrt_weight = 1.0 / np.sqrt(np.maximum(counts, 1.0))
        self.background_basis = chebyshev_basis(counts.size, _BACKGROUND_DEGREE)
        self.n_scales = len(self.phases) + int(self.include_amorphous)
        self._weighted_counts = counts * self.sqrt_weight
        self._background = _WeightedBackground.of(self.background_basis, self.sqrt_weight, counts)
        self._last: tuple[np.ndarray, _Evaluation] | None = None

    def _table(self, component: str) -> ProfileTable:
        grid = self.two_theta_deg
        step_deg = float(grid[-1] - grid[0]) / (grid.size - 1)
        where = (self.shape, float(grid[0]), step_deg, grid.size)
        if component == AMORPHOUS:
            # A hump table has one node; a nanocrystalline limit is read at log size 0, 1 nm.
            assert self.amorphous is not None
            return profile_table(self.amorphous, *where)
        return profile_table(self.library[component], *where)

    def split(self, nonlinear: np.ndarray) -> tuple[np.ndarray, float]:
        if self.fit_zero_shift:
            return nonlinear[: len(self.phases)], float(nonlinear[-1])
        return nonlinear[: len(self.phases)], self.zero_shift_deg

    def evaluate(self, nonlinear: np.ndarray) -> _Evaluation:
        """Design matrix, best linear parameters and profile derivatives at these parameters.

        The last evaluation is kept: the optimiser asks for the residual and the Jacobian at
        the same point.
        """
        if self._last is not None and np.array_equal(self._last[0], nonlinear):
            return self._last[1]
        log_sizes, zero_shift_deg = self.split(nonlinear)
        sized = [
            self._table(phase).evaluate(float(log_size), zero_shift_deg)
            for phase, log_size in zip(self.phases, log_sizes, strict=True)
        ]
        if self.include_amorphous:
            sized.append(self._table(AMORPHOUS).evaluate(0.0, zero_shift_deg))
        design = np.vstack([*(profile for profile, _, _ in sized), self.background_basis])
        evaluation = _Evaluation(
            design=design,
            linear=self.solve_linear(design),
            by_log_size=np.array([by_size for _, by_size, _ in sized[: len(self.phases)]]),
            by_zero_shift=np.array([by_shift for _, _, by_shift in sized]),
        )
        self._last = (np.array(nonlinear, dtype=float), evaluation)
        return evaluation

    def design(self, nonlinear: np.ndarray) -> np.ndarray:
        """Columns: crystalline profiles, amorphous hump (if any), background basis."""
        return self.evaluate(nonlinear).design

    def solve_linear(self, design: np.ndarray) -> np.ndarray:
        """Best scale factors (>= 0) and background coefficients for fixed profiles.

        The background coefficients are unbounded, so they are eliminated exactly from the
        small normal equations (a Schur complement, the background's own block inverted once
        per pattern), which leaves a few non-negative scales.
        """
        n = self.n_scales
        background = self._background
        weighted = design[:n] * self.sqrt_weight
        norms = np.linalg.norm(weighted, axis=1)
        norms[norms == 0] = 1.0
        weighted /= norms[:, None]
        gram = weighted @ weighted.T
        cross = weighted @ background.weighted.T
        target = weighted @ self._weighted_counts
        # For scales s the best background is given[:, -1] - given[:, :-1] @ s.
        given = background.gram_inverse @ np.column_stack([cross.T, background.target])
        reduced_gram = gram - cross @ given[:, :-1]
        reduced_target = target - cross @ given[:, -1]
        scales = _non_negative_solution(reduced_gram, reduced_target)
        coefficients = given[:, -1] - given[:, :-1] @ scales
        return np.concatenate([scales / norms, coefficients / background.norms])

    def without(self, component: str) -> _PatternModel:
        """The same model less one component (a crystalline phase or the amorphous hump).

        The profiles of this model's last evaluation carry over: the held F-tests ask for
        the smaller model at the same sizes.
        """
        other = copy.copy(self)
        other.phases = tuple(p for p in self.phases if p != component)
        other.include_amorphous = self.include_amorphous and component != AMORPHOUS
        other.n_scales = len(other.phases) + int(other.include_amorphous)
        other._last = None
        if self._last is not None:
            nonlinear, evaluation = self._last
            row = self.components.index(component)
            design = np.delete(evaluation.design, row, axis=0)
            by_log_size = evaluation.by_log_size
            if component != AMORPHOUS:
                by_log_size = np.delete(by_log_size, row, axis=0)
            other._last = (
                self.nonlinear_without(nonlinear, component),
                _Evaluation(
                    design=design,
                    linear=other.solve_linear(design),
                    by_log_size=by_log_size,
                    by_zero_shift=np.delete(evaluation.by_zero_shift, row, axis=0),
                ),
            )
        return other

    @property
    def dof(self) -> int:
        """Points less fitted parameters (sizes, zero shift, scales, background)."""
        n_nonlinear = len(self.phases) + int(self.fit_zero_shift)
        n_linear = self.n_scales + self.background_basis.shape[0]
        return max(self.counts.size - n_nonlinear - n_linear, 1)

    def nonlinear_without(self, nonlinear: np.ndarray, component: str) -> np.ndarray:
        """The parameters of ``self.without(component)`` at the values they have here."""
        if component == AMORPHOUS:
            return nonlinear
        return np.delete(nonlinear, self.phases.index(component))

    @property
    def components(self) -> list[str]:
        """Names of the scale factors, in design-matrix order."""
        return [*self.phases, AMORPHOUS] if self.include_amorphous else list(self.phases)

    def fit(self, start: dict[str, float], zero_shift_deg: float) -> np.ndarray:
        """Best log crystallite sizes (and zero shift), from starting sizes by phase, nm."""
        x0 = [math.log(start[p]) for p in self.phases]
        log_bounds = np.log(_SIZE_BOUNDS_NM)
        lower, upper = [log_bounds[0]] * len(x0), [log_bounds[1]] * len(x0)
        if self.fit_zero_shift:
            x0.append(zero_shift_deg)
            # Within reach of the starting (calibrated) zero, as far as the tables reach.
            lower.append(max(self.zero_shift_deg - _ZERO_SHIFT_REACH_DEG, -MAX_ZERO_SHIFT_DEG))
            upper.append(min(self.zero_shift_deg + _ZERO_SHIFT_REACH_DEG, MAX_ZERO_SHIFT_DEG))
        if not x0:
            return np.zeros(0)
        return least_squares(
            self.residual,
            np.clip(x0, lower, upper),
            jac=self.residual_jacobian,
            bounds=(lower, upper),
            x_scale="jac",
            ftol=_TOLERANCE,
            xtol=_TOLERANCE,
        ).x

    def sizes_nm(self, nonlinear: np.ndarray) -> dict[str, float]:
        log_sizes, _ = self.split(nonlinear)
        return {p: math.exp(v) for p, v in zip(self.phases, log_sizes, strict=True)}

    def chi2(self, nonlinear: np.ndarray) -> float:
        residual = self.residual(nonlinear)
        return float(residual @ residual)

    def residual(self, nonlinear: np.ndarray) -> np.ndarray:
        evaluation = self.evaluate(nonlinear)
        return self.sqrt_weight * (self.counts - evaluation.linear @ evaluation.design)

    def _nonlinear_columns(self, linear: np.ndarray, evaluation: _Evaluation) -> list[np.ndarray]:
        """Derivatives of the model in each nonlinear parameter, linear parameters held."""
        scales = linear[: len(self.phases)]
        columns = [
            scale * by_size for scale, by_size in zip(scales, evaluation.by_log_size, strict=True)
        ]
        if self.fit_zero_shift:
            columns.append(linear[: self.n_scales] @ evaluation.by_zero_shift)
        return columns

    def residual_jacobian(self, nonlinear: np.ndarray) -> np.ndarray:
        """Kaufman's variable-projection Jacobian of :meth:`residual`, ``(points, params)``.

        The model's derivatives in the nonlinear parameters with the linear ones held, less
        their projection on the weighted columns the linear solve can adjust (the kept
        scales and the background): Kaufman, BIT 15 (1975) 49.
        """
        evaluation = self.evaluate(nonlinear)
        columns = self._nonlinear_columns(evaluation.linear, evaluation)
        derivatives = -self.sqrt_weight[:, None] * np.column_stack(columns)
        free = np.concatenate(
            [evaluation.linear[: self.n_scales] > 0, np.ones(self.background_basis.shape[0], bool)]
        )
        columns = evaluation.design[free] * self.sqrt_weight
        columns /= np.maximum(np.linalg.norm(columns, axis=1), np.finfo(float).tiny)[:, None]
        gram, along = columns @ columns.T, columns @ derivatives
        try:
            projected = np.linalg.solve(gram, along)
        except np.linalg.LinAlgError:
            projected = np.linalg.pinv(gram) @ along
        return derivatives - columns.T @ projected

    def model_jacobian(self, linear: np.ndarray, nonlinear: np.ndarray) -> np.ndarray:
        """Derivatives of the model with respect to all parameters, shape ``(points, params)``."""
        evaluation = self.evaluate(nonlinear)
        return np.column_stack([*evaluation.design, *self._nonlinear_columns(linear, evaluation)])


def _non_negative_solution(gram: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``argmin |A s - b|`` over ``s >= 0`` from the normal equations ``A^T A``, ``A^T b``.

    The unconstrained solution when it is non-negative (most trial fits) and every column
    stands apart from the others, else one small NNLS problem on a factor of the Gram matrix
    (trying every support of the scales instead took 2.6 times as long).
    """
    if np.min(np.diag(gram), initial=1.0) > _DISTINCT_COLUMN:
        with contextlib.suppress(np.linalg.LinAlgError):
            scales = np.linalg.solve(gram, target)
            if np.all(scales >= 0):
                return scales
    # NNLS takes a factor A of the Gram matrix (A^T A) and b with A^T b = target.
    eigenvalues, vectors = np.linalg.eigh(gram)
    keep = eigenvalues > max(eigenvalues.max(), 0.0) * 1e-12
    if not keep.any():
        return np.zeros(target.size)
    root = np.sqrt(eigenvalues[keep])
    basis = vectors[:, keep].T
    return nnls(root[:, None] * basis, (basis @ target) / root)[0]


@dataclass(frozen=True, eq=False)
class _WeightedBackground:
    """The background basis, Poisson-weighted and normalised, with what the solve needs of it."""

    weighted: np.ndarray
    norms: np.ndarray
    gram_inverse: np.ndarray
    target: np.ndarray

    @classmethod
    def of(
        cls, basis: np.ndarray, sqrt_weight: np.ndarray, counts: np.ndarray
    ) -> _WeightedBackground:
        weighted = basis * sqrt_weight
        norms = np.linalg.norm(weighted, axis=1)
        weighted /= norms[:, None]
        return cls(
            weighted,
            norms,
            np.linalg.pinv(weighted @ weighted.T),
            weighted @ (counts * sqrt_weight),
        )


@dataclass(frozen=True, eq=False)
class _Evaluation:
    """The model at one set of nonlinear parameters."""

    design: np.ndarray
    linear: np.ndarray
    by_log_size: np.ndarray
    by_zero_shift: np.ndarray


def _check_inputs(
    two_theta_deg: np.ndarray,
    counts: np.ndarray,
    phases: tuple[str | ReferencePhase, ...],
    include_amorphous: bool,
) -> None:
    if two_theta_deg.ndim != 1 or counts.ndim != 1:
        raise ValueError(
            "two_theta_deg and counts must be 1-D, got shapes "
            f"{two_theta_deg.shape} and {counts.shape}"
        )
    if two_theta_deg.size != counts.size:
        raise ValueError(
            f"two_theta_deg has {two_theta_deg.size} points but counts has {counts.size}"
        )
    if counts.size < _MIN_POINTS:
        raise ValueError(f"a pattern needs at least {_MIN_POINTS} points, got {counts.size}")
    if not (np.all(np.isfinite(two_theta_deg)) and np.all(np.isfinite(counts))):
        raise ValueError("two_theta_deg and counts must be finite (no NaN or inf)")
    if not np.any(counts > 0):
        raise ValueError("counts are all zero or negative: there is no pattern to analyse")
    step_deg = np.diff(two_theta_deg)
    if np.any(step_deg <= 0) or np.ptp(step_deg) > 1e-3 * abs(step_deg.mean()):
        raise ValueError("two_theta_deg must increase in equal steps (a step scan)")
    names = [p.name if isinstance(p, ReferencePhase) else p for p in phases]
    unknown = sorted(p for p in phases if isinstance(p, str) and p not in TIO2_POLYMORPHS)
    if unknown:
        raise ValueError(
            f"unknown phase(s) {unknown}; known crystalline phases are {TIO2_POLYMORPHS}, "
            "or give a phase's structure as a ReferencePhase"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"phases must not repeat, got {names}")
    if AMORPHOUS in names:
        raise ValueError(f"{AMORPHOUS!r} names the amorphous component, not a crystalline phase")
    if not phases and not include_amorphous:
        raise ValueError("nothing to fit: give at least one phase or include_amorphous=True")


def _components(
    phases: tuple[str | ReferencePhase, ...], include_amorphous: bool
) -> tuple[dict[str, ReferencePhase], ReferencePhase | Humps | None]:
    """The crystalline phases by name and the amorphous component (None if not fitted)."""
    references = [p if isinstance(p, ReferencePhase) else _tio2_library()[p] for p in phases]
    library = {reference.name: reference for reference in references}
    if not include_amorphous:
        return library, None
    if all(isinstance(p, str) for p in phases):
        return library, amorphous_tio2_humps()
    return library, _nanocrystalline_limit(tuple(library.values()))


@cache
def _nanocrystalline_limit(phases: tuple[ReferencePhase, ...]) -> ReferencePhase:
    """One amorphous component per set of phases, so its profile table is kept."""
    return nanocrystalline_limit(phases)


def analyse_pattern(
    two_theta_deg: np.ndarray,
    counts: np.ndarray,
    phases: Sequence[str | ReferencePhase] = TIO2_POLYMORPHS,
    include_amorphous: bool = True,
    *,
    shape: ProfileShape = ProfileShape(),
    zero_shift_deg: float = 0.0,
    fit_zero_shift: bool = True,
) -> XRDFeatures:
    """Weight fractions and crystallite sizes of the phases in one powder pattern.

    Parameters
    ----------
    two_theta_deg
        2-theta of every step, deg, increasing in equal steps.
    counts
        Measured intensity per step (counts; any non-negative scale works, but the weights
        assume counting statistics).
    phases
        Crystalline phases to look for: names from :data:`physics.phases.TIO2_POLYMORPHS`,
        or any phases' reflections (:class:`~sdl.analysis.xrd.reference.ReferencePhase`, with
        their calibration factors); features are keyed by their names.
    include_amorphous
        Also fit an amorphous component as a phase: the amorphous TiO2 hump when every phase
        is a TiO2 polymorph by name, else the phases' nanocrystalline limit
        (:func:`~sdl.analysis.xrd.reference.nanocrystalline_limit`).
    shape
        Wavelengths and instrument broadening (Caglioti U, V, W) of the diffractometer, as
        calibrated on a line-profile standard.
    zero_shift_deg
        Goniometer zero shift, deg: the starting value of the refinement, or the calibrated
        value used as is when ``fit_zero_shift`` is false.
    fit_zero_shift
        Refine the goniometer zero shift.

    Raises
    ------
    ValueError
        On mismatched lengths, non-finite values, an empty or all-zero pattern, an uneven
        2-theta grid or unknown phases.
    """
    two_theta_deg = np.asarray(two_theta_deg, dtype=float)
    counts = np.asarray(counts, dtype=float)
    given = tuple(phases)
    _check_inputs(two_theta_deg, counts, given, include_amorphous)
    library, amorphous = _components(given, include_amorphous)
    names = tuple(library)
    full = _PatternModel(
        two_theta_deg, shape, zero_shift_deg, counts, library, amorphous, fit_zero_shift
    )
    model, nonlinear = _fit_and_prune(full, zero_shift_deg)
    sizes_nm = {p: _START_SIZE_NM for p in names} | model.sizes_nm(nonlinear)
    zero_shift_deg = model.split(nonlinear)[1]

    # The uncertainties come from the full model at the optimum (pruned phases at zero
    # scale), so a phase found absent still gets the fraction it could hide.
    full_nonlinear = np.array(
        [math.log(sizes_nm[p]) for p in names] + ([zero_shift_deg] if fit_zero_shift else [])
    )
    linear = np.zeros(full.n_scales + full.background_basis.shape[0])
    kept_linear = model.evaluate(nonlinear).linear
    scales = dict(zip(model.components, kept_linear[: model.n_scales], strict=True))
    linear[: full.n_scales] = [scales.get(c, 0.0) for c in full.components]
    linear[full.n_scales :] = kept_linear[model.n_scales :]
    design = full.design(full_nonlinear)
    fitted = linear @ design
    background = linear[full.n_scales :] @ full.background_basis
    residual = full.sqrt_weight * (counts - fitted)
    rwp = float(np.linalg.norm(residual) / np.linalg.norm(full.sqrt_weight * counts))

    scale = linear[: full.n_scales]
    total = scale.sum()
    if total <= 0:
        raise ValueError("no phase explains any of the pattern: it looks like background only")
    fractions = scale / total
    reduced_chi2 = float(residual @ residual) / model.dof
    size_known = fractions[: len(names)] >= _MIN_FRACTION_FOR_SIZE
    # Size parameters of absent phases do nothing; leave them out of the covariance.
    keep = np.concatenate(
        [np.ones(linear.size, bool), size_known, np.ones(int(fit_zero_shift), bool)]
    )
    jacobian = (full.sqrt_weight[:, None] * full.model_jacobian(linear, full_nonlinear))[:, keep]
    dof = max(counts.size - int(keep.sum()), 1)
    covariance = (
        np.linalg.pinv(jacobian.T @ jacobian)
        * (residual @ residual / dof)
        * serial_correlation_factor(residual)
    )
    # w = s / sum(s): dw_i/ds_j = (delta_ij - w_i) / sum(s).
    gradient = (np.eye(scale.size) - fractions[:, None]) / total
    scale_covariance = covariance[: scale.size, : scale.size]
    fraction_std = np.sqrt(np.clip(np.diag(gradient @ scale_covariance @ gradient.T), 0.0, None))
    log_size_std = np.full(len(names), np.nan)
    log_size_std[size_known] = np.sqrt(
        np.clip(np.diag(covariance)[linear.size : linear.size + int(size_known.sum())], 0.0, None)
    )

    phase_fractions = dict(zip(full.components, fractions.tolist(), strict=True))
    phase_fractions_std = dict(zip(full.components, fraction_std.tolist(), strict=True))
    phase_fractions.setdefault(AMORPHOUS, 0.0)
    phase_fractions_std.setdefault(AMORPHOUS, 0.0)
    detection_limit = _detection_limits(full, design, scale, model.dof, reduced_chi2)
    detection_limit.setdefault(AMORPHOUS, math.nan)
    return XRDFeatures(
        phase_fractions=phase_fractions,
        phase_fractions_std=phase_fractions_std,
        crystallite_size_nm={
            p: sizes_nm[p] if known else math.nan
            for p, known in zip(names, size_known, strict=True)
        },
        crystallite_size_nm_std={
            p: sizes_nm[p] * float(std) if known else math.nan
            for p, std, known in zip(names, log_size_std, size_known, strict=True)
        },
        zero_shift_deg=zero_shift_deg,
        zero_shift_deg_std=(
            math.sqrt(max(float(covariance[-1, -1]), 0.0)) if fit_zero_shift else 0.0
        ),
        rwp=rwp,
        fitted_pattern=fitted,
        background=background,
        reduced_chi2=reduced_chi2,
        detection_limit=detection_limit,
        fit_flags=_fit_flags(rwp, reduced_chi2, model.sizes_nm(nonlinear)),
    )


def serial_correlation_factor(residual: np.ndarray) -> float:
    """How much neighbouring residuals' correlation inflates the parameters' variances.

    Least-squares variances assume independent residuals. A profile the model does not quite
    have (another line shape, a line outside the library, a background wiggle) leaves
    residuals that run in long same-signed stretches, and then the linearised variances are
    too small by about the residuals' integrated autocorrelation time, ``1 + 2 sum rho_k``
    (Berar & Lelann 1991, J. Appl. Cryst. 24, 1), summed here over lags until the
    autocorrelation first turns negative. One for white noise; never below one.
    """
    centred = residual - residual.mean()
    power = np.abs(np.fft.rfft(centred, 2 * centred.size)) ** 2
    autocovariance = np.fft.irfft(power)[: centred.size]
    if autocovariance[0] <= 0:
        return 1.0
    rho = autocovariance[1:] / autocovariance[0]
    negative = np.flatnonzero(rho <= 0)
    lags = rho[: negative[0]] if negative.size else rho
    return max(1.0, 1.0 + 2.0 * float(lags.sum()))


def _fit_and_prune(model: _PatternModel, zero_shift_deg: float) -> tuple[_PatternModel, np.ndarray]:
    """Fit all components, then drop, weakest first, each one the pattern does not need.

    Components held at zero scale go at once; then every component must pass an F-test of
    the fit with and without it (refitted), ``F = (chi2_without - chi2) / q / (chi2 / dof)``
    against the ``1 - 1e-3`` quantile of ``F(q, dof)``, ``q`` its parameters (scale and
    size; the hump has a scale only). Dividing by the reduced chi-square of the larger fit
    raises the bar where the model misfits, so a phase cannot enter by soaking up misfit. A
    phase held at the lower size bound must beat the critical value a hundred times over.
    """
    nonlinear = model.fit(dict.fromkeys(model.phases, _START_SIZE_NM), zero_shift_deg)
    while len(model.components) > 1:
        scales = model.evaluate(nonlinear).linear[: model.n_scales]
        absent = [c for c, s in zip(model.components, scales, strict=True) if s == 0]
        for component in absent[: len(model.components) - 1]:
            nonlinear = model.nonlinear_without(nonlinear, component)
            model = model.without(component)
        if absent:
            continue
        weakest = _drop_weakest(model, nonlinear)
        if weakest is None:
            break
        model, nonlinear = weakest
    return model, nonlinear


def _drop_weakest(
    model: _PatternModel, nonlinear: np.ndarray
) -> tuple[_PatternModel, np.ndarray] | None:
    """The fit without the component that fails its F-test by most; None if all pass.

    The chi-square rise with the other parameters held bounds the refitted one from above,
    so a component failing held fails refitted and one passing held by a wide margin passes;
    only the components in between cost a refit.
    """
    chi2 = model.chi2(nonlinear)
    sizes_nm, zero_shift_deg = model.sizes_nm(nonlinear), model.split(nonlinear)[1]
    thresholds = {c: _chi2_threshold(model, chi2, sizes_nm, c) for c in model.components}
    held = {
        c: (model.without(c).chi2(model.nonlinear_without(nonlinear, c)) - chi2) / thresholds[c]
        for c in model.components
    }
    weakest = min(held, key=held.__getitem__)
    if held[weakest] <= 1.0:
        trial = model.without(weakest)
        return trial, trial.fit(sizes_nm, zero_shift_deg)
    failing = []
    for component in (c for c in model.components if held[c] <= _CLEARLY_NEEDED):
        trial = model.without(component)
        trial_nonlinear = trial.fit(sizes_nm, zero_shift_deg)
        ratio = (trial.chi2(trial_nonlinear) - chi2) / thresholds[component]
        if ratio <= 1.0:
            failing.append((ratio, trial, trial_nonlinear))
    if not failing:
        return None
    _, trial, trial_nonlinear = min(failing, key=lambda test: test[0])
    return trial, trial_nonlinear


def _chi2_threshold(
    model: _PatternModel, chi2: float, sizes_nm: Mapping[str, float], component: str
) -> float:
    """The chi-square rise without ``component`` that the F-test asks of it to stay."""
    q = _n_parameters(component)
    threshold = q * _critical_f(q, model.dof) * chi2 / model.dof
    if sizes_nm.get(component, math.inf) < _NEAR_SIZE_BOUND * _SIZE_BOUNDS_NM[0]:
        threshold *= _SIZE_BOUND_MARGIN
    return threshold


def _n_parameters(component: str) -> int:
    """Parameters a component adds: a scale, and a crystallite size unless amorphous."""
    return 1 if component == AMORPHOUS else 2


@cache
def _critical_f(q: int, dof: int) -> float:
    """The F statistic a component with ``q`` parameters must exceed to stay."""
    return float(f_distribution.isf(_SIGNIFICANCE, q, dof))


def _detection_limits(
    model: _PatternModel,
    design: np.ndarray,
    scales: np.ndarray,
    dof: int,
    reduced_chi2: float,
) -> dict[str, float]:
    """Smallest weight fraction of each component that would pass the F-test here.

    Linearised at the fit: component ``c`` at scale ``s`` lowers chi-square by
    ``s^2 |P c|^2``, ``P`` projecting out the other kept columns (weighted), so it passes
    from ``s = sqrt(q F_crit chi2_red) / |P c|``: a fraction ``s / sum(scales)`` of this
    sample.
    """
    weighted = design * model.sqrt_weight
    n = model.n_scales
    limits = {}
    for index, component in enumerate(model.components):
        others = [i for i in range(design.shape[0]) if i != index and (i >= n or scales[i] > 0)]
        basis = weighted[others].T
        column = weighted[index]
        residual = column - basis @ np.linalg.lstsq(basis, column, rcond=None)[0]
        q = _n_parameters(component)
        scale = math.sqrt(q * _critical_f(q, dof) * reduced_chi2) / max(
            float(np.linalg.norm(residual)), np.finfo(float).tiny
        )
        limits[component] = min(scale / scales.sum(), 1.0)
    return limits


def _fit_flags(
    rwp: float, reduced_chi2: float, kept_sizes_nm: Mapping[str, float]
) -> tuple[str, ...]:
    """Warnings a result carries: a poor fit, kept phases whose size is held at a bound."""
    low, high = _SIZE_BOUNDS_NM
    flags = [
        f"{phase}_size_at_bound"
        for phase, size_nm in kept_sizes_nm.items()
        if not low * _NEAR_SIZE_BOUND <= size_nm <= high / _NEAR_SIZE_BOUND
    ]
    if reduced_chi2 > _POOR_FIT_REDUCED_CHI2 or rwp > _POOR_FIT_RWP:
        flags.insert(0, "poor_fit")
    if flags:
        logger.warning(
            "whole-pattern fit flagged %s (Rwp %.3f, reduced chi2 %.2f)", flags, rwp, reduced_chi2
        )
    return tuple(flags)
