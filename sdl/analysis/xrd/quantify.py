"""Which phases a powder pattern holds, and how much of each: a whole-pattern fit to a library.

The library is any set of crystalline phases with structures (:mod:`sdl.analysis.xrd.reference`),
rendered by the analysis's instrument model (:mod:`sdl.analysis.xrd.instrument`). After a
pybaselines SNIP background is subtracted (:mod:`sdl.analysis.xrd.background`), the
pattern is modelled, Rietveld-like but without refining atoms, as

    counts - background = sum_p s_p profile_p(2theta; D_p, strain_p, zero) + sum_k c_k T_k

with one scale factor ``s_p >= 0``, crystallite size ``D_p`` and relative lattice strain
``strain_p`` (d -> d (1 + strain): thermal expansion, solid solution, residual stress) per
phase, one goniometer zero shift, and a quadratic Chebyshev correction ``c_k`` of free sign
for what SNIP left. Because the profiles are per unit weight fraction (Hill & Howard), the
weight fractions are ``w_p = s_p / sum s``.

The fit is a variable projection (Golub & Pereyra): for trial nonlinear parameters the scales
are solved exactly by non-negative least squares after projecting out the correction basis,
so the nonlinear search (``scipy.optimize.least_squares``) sees only sizes, strains and the
zero shift. Shifted peaks are found before the local search by scanning the zero shift, then
each phase's lattice strain, on a grid finer than the line widths; overlapping lines of
different phases share intensity through the joint fit. Phases the data do not need are
removed: an absent phase gets a zero scale from the non-negativity bound, and a minor one
must lower chi-square by more than the Bayesian information criterion's ``ln(n)`` per
parameter (in units of the reduced chi-square, so a pattern with unexplained lines from
phases outside the library does not promote spurious ones). Uncertainties are the linearised
covariance of all parameters at the optimum scaled by the reduced chi-square. Points are
weighted by ``1/max(counts, 1)`` (Poisson).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.polynomial import chebyshev
from scipy.optimize import least_squares, nnls

from sdl.analysis.xrd.background import DEFAULT_HALF_WINDOW_DEG, estimate_background
from sdl.analysis.xrd.instrument import ProfileShape, render_phase
from sdl.analysis.xrd.reference import ReferencePhase

#: Crystallite sizes the fit may return, nm.
_SIZE_BOUNDS_NM = (2.0, 1000.0)

#: Starting crystallite size, nm.
_START_SIZE_NM = 50.0

#: Degree of the Chebyshev correction to the SNIP background.
_CORRECTION_DEGREE = 2

#: Components below this weight fraction must earn their place by the information criterion.
_PRUNE_BELOW_FRACTION = 0.15

#: Steps of the derivative used for the covariance, in log(size), strain and zero shift (deg).
_STEPS = (1e-3, 1e-5, 1e-3)


@dataclass(frozen=True, eq=False)
class PhaseQuantification:
    """Phases found in a pattern and their weight fractions, sizes and lattice strains.

    Every library phase has an entry; absent ones have fraction 0 and NaN size and strain.
    ``weight_fractions`` sum to 1 over the library (no amorphous content is modelled).
    """

    present: tuple[str, ...]
    weight_fractions: dict[str, float]
    weight_fractions_std: dict[str, float]
    crystallite_size_nm: dict[str, float]
    crystallite_size_nm_std: dict[str, float]
    lattice_strain: dict[str, float]
    zero_shift_deg: float
    rwp: float
    fitted_pattern: np.ndarray
    background: np.ndarray


class _WholePatternModel:
    """Design matrix and variable-projection residual for one pattern and a set of phases."""

    def __init__(
        self,
        two_theta_deg: np.ndarray,
        net_counts: np.ndarray,
        sqrt_weight: np.ndarray,
        library: Mapping[str, ReferencePhase],
        shape: ProfileShape,
    ) -> None:
        self.two_theta_deg = two_theta_deg
        self.net = net_counts
        self.sqrt_weight = sqrt_weight
        self.library = library
        self.shape = shape
        x = np.linspace(-1.0, 1.0, two_theta_deg.size)
        self.correction = chebyshev.chebvander(x, _CORRECTION_DEGREE).T
        q, _ = np.linalg.qr((self.correction * sqrt_weight).T)
        self._q = q
        self._target = self._project(net_counts * sqrt_weight)
        self._cache: dict[tuple[str, float, float, float], np.ndarray] = {}

    def _project(self, weighted: np.ndarray) -> np.ndarray:
        return weighted - self._q @ (self._q.T @ weighted)

    def profile(self, phase: str, log_size: float, strain: float, zero: float) -> np.ndarray:
        key = (phase, round(log_size, 9), round(strain, 12), round(zero, 9))
        if key not in self._cache:
            self._cache[key] = render_phase(
                self.library[phase],
                self.two_theta_deg,
                math.exp(log_size),
                shape=self.shape,
                zero_shift_deg=zero,
                lattice_strain=strain,
            )
        return self._cache[key]

    def profiles(self, phases: list[str], params: np.ndarray) -> np.ndarray:
        log_sizes, strains, zero = _unpack(params, len(phases))
        return np.array(
            [
                self.profile(p, float(d), float(e), zero)
                for p, d, e in zip(phases, log_sizes, strains, strict=True)
            ]
        )

    def scales(self, profiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Non-negative scales and the projected weighted residual for fixed profiles."""
        weighted = self._project((profiles * self.sqrt_weight).T)
        norms = np.linalg.norm(weighted, axis=0)
        norms[norms == 0] = 1.0
        solution, _ = nnls(weighted / norms, self._target, maxiter=50 * profiles.shape[0])
        return solution / norms, self._target - weighted @ (solution / norms)

    def residual(self, phases: list[str], params: np.ndarray) -> np.ndarray:
        return self.scales(self.profiles(phases, params))[1]

    def chi2(self, phases: list[str], params: np.ndarray) -> float:
        residual = self.residual(phases, params)
        return float(residual @ residual)


def _unpack(params: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, float]:
    return params[:n], params[n : 2 * n], float(params[-1])


def _pack(log_sizes: np.ndarray, strains: np.ndarray, zero: float) -> np.ndarray:
    return np.concatenate([log_sizes, strains, [zero]])


def _select(params: np.ndarray, n: int, keep: list[int]) -> np.ndarray:
    log_sizes, strains, zero = _unpack(params, n)
    return _pack(log_sizes[keep], strains[keep], zero)


def quantify_phases(
    two_theta_deg: np.ndarray,
    counts: np.ndarray,
    library: Mapping[str, ReferencePhase],
    *,
    shape: ProfileShape = ProfileShape(),
    max_lattice_strain: float = 0.005,
    max_zero_shift_deg: float = 0.3,
    min_fraction: float = 0.02,
    background_half_window_deg: float = DEFAULT_HALF_WINDOW_DEG,
) -> PhaseQuantification:
    """Identify and quantify the library phases in one powder pattern.

    Parameters
    ----------
    two_theta_deg, counts
        The pattern: 2-theta (deg, increasing) and counts per step.
    library
        Candidate phases by name (see :func:`sdl.analysis.xrd.reference.library_from_structures`).
    shape
        Wavelengths and instrument broadening of the diffractometer.
    max_lattice_strain
        Largest relative change of d-spacings each phase may take.
    max_zero_shift_deg
        Largest goniometer zero shift searched, deg.
    min_fraction
        Phases fitted below this weight fraction are reported absent.
    background_half_window_deg
        SNIP clipping half window, deg.

    Raises
    ------
    ValueError
        On an empty library, mismatched or non-finite input, or a pattern no phase explains.
    """
    two_theta_deg = np.asarray(two_theta_deg, dtype=float)
    counts = np.asarray(counts, dtype=float)
    if not library:
        raise ValueError("the phase library is empty")
    if two_theta_deg.shape != counts.shape or two_theta_deg.ndim != 1 or counts.size < 50:
        raise ValueError(
            f"need 1-D two_theta_deg and counts of one length >= 50, got {two_theta_deg.shape} "
            f"and {counts.shape}"
        )
    if not (np.all(np.isfinite(counts)) and np.all(np.isfinite(two_theta_deg))):
        raise ValueError("two_theta_deg and counts must be finite (no NaN or inf)")
    background = estimate_background(two_theta_deg, counts, background_half_window_deg)
    sqrt_weight = 1.0 / np.sqrt(np.maximum(counts, 1.0))
    model = _WholePatternModel(two_theta_deg, counts - background, sqrt_weight, library, shape)

    phases = list(library)
    n = len(phases)
    params = _pack(np.full(n, math.log(_START_SIZE_NM)), np.zeros(n), 0.0)
    params = _scan_zero_shift(model, phases, params, max_zero_shift_deg)
    params = _scan_lattice_strains(model, phases, params, max_lattice_strain)
    scales, _ = model.scales(model.profiles(phases, params))
    keep = [i for i in range(n) if scales[i] > 0]
    if not keep:
        raise ValueError("no library phase explains any of the pattern")
    kept = [phases[i] for i in keep]
    params = _refine(model, kept, _select(params, n, keep), max_lattice_strain, max_zero_shift_deg)
    kept, params = _prune(model, kept, params, max_lattice_strain, max_zero_shift_deg)
    return _result(model, phases, kept, params, background, counts, min_fraction)


def _scan_zero_shift(
    model: _WholePatternModel, phases: list[str], params: np.ndarray, max_shift_deg: float
) -> np.ndarray:
    n = len(phases)
    step = min(0.02, max_shift_deg) if max_shift_deg > 0 else 1.0
    best, best_chi2 = params, math.inf
    for zero in np.arange(-max_shift_deg, max_shift_deg + 1e-9, step):
        trial = _pack(*_unpack(params, n)[:2], float(zero))
        chi2 = model.chi2(phases, trial)
        if chi2 < best_chi2:
            best, best_chi2 = trial, chi2
    return best


def _scan_lattice_strains(
    model: _WholePatternModel, phases: list[str], params: np.ndarray, max_strain: float
) -> np.ndarray:
    """Coordinate scan of each phase's lattice strain, so shifted lines are found, not missed."""
    n = len(phases)
    if max_strain <= 0:
        return params
    grid = np.linspace(-max_strain, max_strain, 2 * int(round(max_strain / 2.5e-4)) + 1)
    params = params.copy()
    for index in range(n):
        chi2s = []
        for strain in grid:
            params[n + index] = strain
            chi2s.append(model.chi2(phases, params))
        params[n + index] = grid[int(np.argmin(chi2s))]
    return params


def _bounds(n: int, max_strain: float, max_shift: float) -> tuple[np.ndarray, np.ndarray]:
    log_low, log_high = np.log(_SIZE_BOUNDS_NM)
    lower = _pack(np.full(n, log_low), np.full(n, -max_strain - 1e-12), -max_shift - 1e-12)
    upper = _pack(np.full(n, log_high), np.full(n, max_strain + 1e-12), max_shift + 1e-12)
    return lower, upper


def _refine(
    model: _WholePatternModel,
    phases: list[str],
    params: np.ndarray,
    max_strain: float,
    max_shift: float,
) -> np.ndarray:
    lower, upper = _bounds(len(phases), max_strain, max_shift)
    return least_squares(
        lambda p: model.residual(phases, p),
        np.clip(params, lower, upper),
        bounds=(lower, upper),
        x_scale=_pack(np.ones(len(phases)), np.full(len(phases), 1e-3), 0.01),
        diff_step=1e-4,
        ftol=1e-4,
        xtol=1e-4,
        max_nfev=15,
    ).x


def _prune(
    model: _WholePatternModel,
    phases: list[str],
    params: np.ndarray,
    max_strain: float,
    max_shift: float,
) -> tuple[list[str], np.ndarray]:
    """Drop minor phases that do not lower chi-square by the BIC's ln(n) per parameter."""
    n_points = model.net.size
    while len(phases) > 1:
        scales, residual = model.scales(model.profiles(phases, params))
        chi2 = float(residual @ residual)
        n_parameters = 4 * len(phases) + 1 + _CORRECTION_DEGREE + 1
        reduced = chi2 / max(n_points - n_parameters, 1)
        fractions = scales / max(scales.sum(), np.finfo(float).tiny)
        removed = False
        for index in np.argsort(fractions):
            if fractions[index] >= _PRUNE_BELOW_FRACTION:
                break
            keep = [i for i in range(len(phases)) if i != index]
            trial_phases = [phases[i] for i in keep]
            trial = _select(params, len(phases), keep)
            if fractions[index] > 0:
                trial = _refine(model, trial_phases, trial, max_strain, max_shift)
            if model.chi2(trial_phases, trial) - chi2 <= 3 * math.log(n_points) * reduced:
                phases, params, removed = trial_phases, trial, True
                break
        if not removed:
            break
    return phases, params


def _result(
    model: _WholePatternModel,
    library_phases: list[str],
    phases: list[str],
    params: np.ndarray,
    background: np.ndarray,
    counts: np.ndarray,
    min_fraction: float,
) -> PhaseQuantification:
    n = len(phases)
    profiles = model.profiles(phases, params)
    scales, _ = model.scales(profiles)
    net_fit = scales @ profiles
    weighted_rest = (model.net - net_fit) * model.sqrt_weight
    correction_coefficients = np.linalg.lstsq(
        (model.correction * model.sqrt_weight).T, weighted_rest, rcond=None
    )[0]
    fitted = background + net_fit + correction_coefficients @ model.correction
    residual = model.sqrt_weight * (counts - fitted)
    rwp = float(np.linalg.norm(residual) / np.linalg.norm(model.sqrt_weight * counts))

    # Linearised covariance of (scales, correction, log sizes, strains, zero).
    columns = [*profiles, *model.correction]
    for block, step in enumerate(_STEPS[:2]):
        for index in range(n):
            up, down = params.copy(), params.copy()
            up[block * n + index] += step
            down[block * n + index] -= step
            derivative = model.profiles(phases, up)[index] - model.profiles(phases, down)[index]
            columns.append(scales[index] * derivative / (2 * step))
    up, down = params.copy(), params.copy()
    up[-1] += _STEPS[2]
    down[-1] -= _STEPS[2]
    columns.append(
        scales @ (model.profiles(phases, up) - model.profiles(phases, down)) / (2 * _STEPS[2])
    )
    jacobian = np.column_stack(columns) * model.sqrt_weight[:, None]
    dof = max(counts.size - jacobian.shape[1], 1)
    covariance = np.linalg.pinv(jacobian.T @ jacobian) * float(residual @ residual) / dof

    total = scales.sum()
    if total <= 0:
        raise ValueError("no library phase explains any of the pattern")
    fractions = scales / total
    gradient = (np.eye(n) - fractions[:, None]) / total
    fraction_std = np.sqrt(np.clip(np.diag(gradient @ covariance[:n, :n] @ gradient.T), 0, None))
    first_size = n + model.correction.shape[0]
    log_size_std = np.sqrt(np.clip(np.diag(covariance)[first_size : first_size + n], 0, None))
    log_sizes, strains, zero = _unpack(params, n)

    present = tuple(p for p, w in zip(phases, fractions, strict=True) if w >= min_fraction)
    by_phase = {p: i for i, p in enumerate(phases)}
    nan = math.nan
    return PhaseQuantification(
        present=present,
        weight_fractions={
            p: float(fractions[by_phase[p]]) if p in by_phase else 0.0 for p in library_phases
        },
        weight_fractions_std={
            p: float(fraction_std[by_phase[p]]) if p in by_phase else 0.0 for p in library_phases
        },
        crystallite_size_nm={
            p: math.exp(log_sizes[by_phase[p]]) if p in present else nan for p in library_phases
        },
        crystallite_size_nm_std={
            p: math.exp(log_sizes[by_phase[p]]) * float(log_size_std[by_phase[p]])
            if p in present
            else nan
            for p in library_phases
        },
        lattice_strain={
            p: float(strains[by_phase[p]]) if p in present else nan for p in library_phases
        },
        zero_shift_deg=zero,
        rwp=rwp,
        fitted_pattern=fitted,
        background=background,
    )
