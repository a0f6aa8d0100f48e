"""Peak finding, pseudo-Voigt K-alpha doublet fitting, and size/strain from line breadths.

Every line of a Cu tube pattern is a K-alpha1/K-alpha2 doublet: the K-alpha2 component sits
at the Bragg angle of the longer wavelength, ``sin theta2 = (lambda2 / lambda1) sin theta1``,
with half the intensity and the same breadth. :func:`fit_peaks` fits each doublet as two
Thompson-Cox-Hastings pseudo-Voigt lines with one centre, one area and one sample
(Lorentzian) FWHM, the Gaussian part being the instrument's calibrated Caglioti width, over
a local linear correction to a pybaselines background; lines closer
than their widths are fitted together so overlapping peaks share the intensity. Parameters
and their standard uncertainties come from ``scipy.optimize.curve_fit`` (covariance scaled by
the reduced chi-square).

Line breadth to microstructure: with the instrument's Gaussian fixed from its calibration,
the fitted Lorentzian FWHM ``B`` is the sample broadening. Scherrer gives
``D = K lambda / (B cos theta)``; over three or more lines of one phase a Williamson-Hall fit
``B cos theta = K lambda / D + 4 e sin theta`` separates size (intercept) from microstrain
(slope), with uncertainties from its covariance. Fitting a Gaussian sample part as well (to
assign it to strain, de Keijser et al., J. Appl. Cryst. 15 (1982) 308) was tried and
dropped: on lines of 5-15 nm crystallites the Gaussian and Lorentzian widths trade off and
the strain came out several times too large. Williamson-Hall treats strain broadening as
Lorentzian, so a Gaussian strain distribution (as the simulator makes) is partly read as
smaller crystallites; the benchmark reports how much.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import curve_fit
from scipy.signal import find_peaks as _scipy_find_peaks
from scipy.signal import savgol_filter

from physics.diffraction import (
    bragg_two_theta_deg,
    d_spacing_angstrom,
    pseudo_voigt_sum,
    scherrer_size_nm,
)
from sdl.analysis.xrd.instrument import ProfileShape
from sdl.analysis.xrd.reference import ReferencePhase

#: Half width of the window fitted around a group of lines, in units of the line FWHM guess.
_WINDOW_FWHM = 6.0

#: Lines closer than this many FWHM are fitted together.
_GROUP_FWHM = 4.0

#: How far a fitted centre may move from its guess, deg.
_MAX_CENTRE_MOVE_DEG = 0.3

#: Largest FWHM component a line may have, deg.
_MAX_FWHM_DEG = 4.0


@dataclass(frozen=True)
class PeakFit:
    """One fitted K-alpha1/K-alpha2 doublet (positions and widths refer to K-alpha1).

    ``area`` is of both components together, in counts per step x deg; ``lorentz_fwhm_deg``
    is the sample broadening (the instrument's Gaussian is fixed).
    """

    two_theta_deg: float
    two_theta_deg_std: float
    area: float
    area_std: float
    lorentz_fwhm_deg: float
    lorentz_fwhm_deg_std: float


@dataclass(frozen=True)
class SizeStrain:
    """Crystallite size and microstrain of one phase from its line breadths.

    ``williamson_hall_*`` and ``microstrain*`` are NaN when fewer than three lines could be
    fitted.
    """

    scherrer_size_nm: float
    scherrer_size_nm_std: float
    williamson_hall_size_nm: float
    williamson_hall_size_nm_std: float
    microstrain: float
    microstrain_std: float
    n_lines: int


def find_peaks(
    two_theta_deg: np.ndarray,
    counts: np.ndarray,
    background: np.ndarray,
    min_significance: float = 5.0,
    min_separation_deg: float = 0.1,
) -> np.ndarray:
    """2-theta of the peaks that stand out of the counting noise, deg, ascending.

    A peak must rise ``min_significance`` Poisson standard deviations above the background
    (after a light Savitzky-Golay smoothing) and be separated by ``min_separation_deg``.
    """
    two_theta_deg = np.asarray(two_theta_deg, dtype=float)
    counts = np.asarray(counts, dtype=float)
    step_deg = float(np.mean(np.diff(two_theta_deg)))
    window = max(5, 2 * int(round(0.05 / step_deg)) + 1)
    smoothed = savgol_filter(counts, window, 2) if window < counts.size else counts
    net = smoothed - background
    noise = np.sqrt(np.maximum(background, 1.0))
    indices, _ = _scipy_find_peaks(
        net / noise,
        height=min_significance,
        prominence=min_significance,
        distance=max(1, int(round(min_separation_deg / step_deg))),
    )
    return two_theta_deg[indices]


def _kalpha2_deg(two_theta1_deg: np.ndarray, shape: ProfileShape) -> np.ndarray:
    d_spacing = d_spacing_angstrom(two_theta1_deg, shape.wavelength_angstrom)
    return bragg_two_theta_deg(d_spacing, shape.wavelength2_angstrom)


def doublet_profile(
    two_theta_deg: np.ndarray,
    centre_deg: np.ndarray,
    area: np.ndarray,
    gauss_fwhm_deg: np.ndarray,
    lorentz_fwhm_deg: np.ndarray,
    shape: ProfileShape = ProfileShape(),
) -> np.ndarray:
    """Sum of K-alpha1/K-alpha2 pseudo-Voigt doublets (K-alpha1 centres and total areas)."""
    centre_deg = np.atleast_1d(np.asarray(centre_deg, dtype=float))
    ratio = shape.kalpha2_ratio
    share = np.concatenate([np.full(centre_deg.size, 1.0), np.full(centre_deg.size, ratio)])
    return pseudo_voigt_sum(
        np.asarray(two_theta_deg, dtype=float),
        np.concatenate([centre_deg, _kalpha2_deg(centre_deg, shape)]),
        np.tile(np.atleast_1d(area), 2) * share / (1.0 + ratio),
        np.tile(np.atleast_1d(gauss_fwhm_deg), 2),
        np.tile(np.atleast_1d(lorentz_fwhm_deg), 2),
    )


def _fwhm_estimate(
    two_theta_deg: np.ndarray, net: np.ndarray, centre_deg: float, default_deg: float
) -> float:
    """FWHM of the net peak at ``centre_deg`` from its half-maximum crossings, deg."""
    index = int(np.clip(np.searchsorted(two_theta_deg, centre_deg), 0, net.size - 1))
    half = 0.5 * net[index]
    if half <= 0:
        return default_deg
    below = np.flatnonzero(net < half)
    left, right = below[below < index], below[below > index]
    if left.size == 0 or right.size == 0:
        return default_deg
    # The K-alpha2 shoulder widens the right side; the left half width is the cleaner one.
    width = 2.0 * (two_theta_deg[index] - two_theta_deg[left[-1]])
    return float(np.clip(width, 0.05, _MAX_FWHM_DEG))


def _groups(centres: np.ndarray, fwhm: np.ndarray) -> list[np.ndarray]:
    order = np.argsort(centres)
    groups, current = [], [order[0]]
    for previous, index in zip(order[:-1], order[1:], strict=True):
        if centres[index] - centres[previous] < _GROUP_FWHM * max(fwhm[index], fwhm[previous]):
            current.append(index)
        else:
            groups.append(np.array(current))
            current = [index]
    groups.append(np.array(current))
    return groups


def fit_peaks(
    two_theta_deg: np.ndarray,
    counts: np.ndarray,
    background: np.ndarray,
    centres_deg: Sequence[float] | np.ndarray,
    shape: ProfileShape = ProfileShape(),
    fwhm_guess_deg: float = 0.2,
) -> list[PeakFit | None]:
    """Fit pseudo-Voigt K-alpha doublets at (near) the given K-alpha1 centres.

    Returns one :class:`PeakFit` per centre, in the order given, or None where the fit
    failed or the line has no significant area (under three standard deviations).
    """
    two_theta_deg = np.asarray(two_theta_deg, dtype=float)
    counts = np.asarray(counts, dtype=float)
    centres = np.asarray(centres_deg, dtype=float)
    if centres.size == 0:
        return []
    fits: list[PeakFit | None] = [None] * centres.size
    fwhm_guess = np.maximum(
        [_fwhm_estimate(two_theta_deg, counts - background, c, fwhm_guess_deg) for c in centres],
        shape.instrument_fwhm_deg(centres) * 1.5,
    )
    for group in _groups(centres, fwhm_guess):
        for index, fit in zip(
            group,
            _fit_group(two_theta_deg, counts, background, centres[group], fwhm_guess[group], shape),
            strict=True,
        ):
            fits[index] = fit
    return fits


def _fit_group(
    two_theta_deg: np.ndarray,
    counts: np.ndarray,
    background: np.ndarray,
    centres: np.ndarray,
    fwhm_guess: np.ndarray,
    shape: ProfileShape,
) -> list[PeakFit | None]:
    low = centres.min() - _WINDOW_FWHM * fwhm_guess.max()
    high = _kalpha2_deg(np.array([centres.max()]), shape)[0] + _WINDOW_FWHM * fwhm_guess.max()
    window = (two_theta_deg >= low) & (two_theta_deg <= high)
    n_lines = centres.size
    if window.sum() < 3 * n_lines + 6:
        return [None] * n_lines
    x, y, base = two_theta_deg[window], counts[window], background[window]
    sigma = np.sqrt(np.maximum(y, 1.0))
    x_mid = 0.5 * (x[0] + x[-1])
    step = float(np.mean(np.diff(x)))
    net = np.maximum(y - base, 0.0)
    heights = np.interp(centres, x, net)
    instrument = shape.instrument_fwhm_deg(centres)

    def model(x_deg: np.ndarray, *params: float) -> np.ndarray:
        p = np.asarray(params)
        lines = p[: 3 * n_lines].reshape(n_lines, 3)
        gauss = shape.instrument_fwhm_deg(lines[:, 0])
        return (
            base
            + p[-2]
            + p[-1] * (x_deg - x_mid)
            + doublet_profile(x_deg, lines[:, 0], lines[:, 1], gauss, lines[:, 2], shape)
        )

    p0, lower, upper = [], [], []
    for centre, height, inst, fwhm in zip(centres, heights, instrument, fwhm_guess, strict=True):
        area0 = max(height * fwhm * 1.5, step)
        p0 += [centre, area0, max(fwhm - inst, 0.2 * fwhm)]
        lower += [centre - _MAX_CENTRE_MOVE_DEG, 0.0, 1e-4]
        upper += [centre + _MAX_CENTRE_MOVE_DEG, np.inf, _MAX_FWHM_DEG]
    offset_scale = float(np.sqrt(np.maximum(base.mean(), 1.0))) * 10.0
    p0 += [0.0, 0.0]
    lower += [-np.inf, -np.inf]
    upper += [np.inf, np.inf]
    p0 = np.clip(p0, np.array(lower) + 1e-9, np.array(upper) - 1e-9)
    try:
        params, covariance = curve_fit(
            model,
            x,
            y,
            p0=p0,
            sigma=sigma,
            bounds=(lower, upper),
            max_nfev=200 * len(p0),
            x_scale=np.concatenate(
                [
                    np.column_stack(
                        [
                            np.full(n_lines, 0.01),
                            np.maximum(p0[1 : 3 * n_lines : 3], 1.0),
                            np.full(n_lines, 0.01),
                        ]
                    ).ravel(),
                    [offset_scale, offset_scale],
                ]
            ),
        )
    except (RuntimeError, ValueError):
        return [None] * n_lines
    std = np.sqrt(np.clip(np.diag(covariance), 0.0, None))
    fits: list[PeakFit | None] = []
    for line in range(n_lines):
        value, error = params[3 * line : 3 * line + 3], std[3 * line : 3 * line + 3]
        if not (np.all(np.isfinite(error)) and value[1] > 3.0 * error[1]):
            fits.append(None)
            continue
        fits.append(PeakFit(*(float(v) for pair in zip(value, error, strict=True) for v in pair)))
    return fits


def size_strain(fits: Sequence[PeakFit], shape: ProfileShape = ProfileShape()) -> SizeStrain:
    """Scherrer size, Williamson-Hall size and microstrain of one phase from its fitted lines.

    Scherrer: inverse-variance mean of ``B cos(theta)`` over the lines (B the sample FWHM in
    radians: the fitted Lorentzian less the instrument's), inflated by the scatter between
    lines. Williamson-Hall (three lines or more): weighted straight line
    ``B cos(theta) = K lambda / D + 4 e sin(theta)``; size from the intercept, microstrain
    from the slope, uncertainties from its covariance (inflated by the reduced chi-square
    when above one). With fewer lines the microstrain is NaN.

    Raises
    ------
    ValueError
        If no line is given.
    """
    if not fits:
        raise ValueError("size_strain needs at least one fitted line")
    two_theta = np.array([f.two_theta_deg for f in fits])
    breadth = np.radians(
        np.array([f.lorentz_fwhm_deg for f in fits]) - shape.instrument_lorentz_fwhm_deg(two_theta)
    )
    breadth_std = np.radians(np.maximum([f.lorentz_fwhm_deg_std for f in fits], 1e-6))
    theta = np.radians(0.5 * two_theta)
    wavelength = shape.wavelength_angstrom
    y, y_std = breadth * np.cos(theta), breadth_std * np.cos(theta)

    weights = 1.0 / y_std**2
    mean_y = float(np.sum(weights * y) / weights.sum())
    mean_y_std = float(1.0 / math.sqrt(weights.sum()))
    if len(fits) > 1:
        mean_y_std *= math.sqrt(max(np.sum(weights * (y - mean_y) ** 2) / (len(fits) - 1), 1.0))
    scherrer = float(scherrer_size_nm(mean_y, wavelength))
    scherrer_std = scherrer * mean_y_std / mean_y

    wh_size = wh_std = strain = strain_std = math.nan
    if len(fits) >= 3:
        design = np.column_stack([np.ones_like(theta), 4.0 * np.sin(theta)]) / y_std[:, None]
        coefficients, residual, *_ = np.linalg.lstsq(design, y / y_std, rcond=None)
        reduced = float(residual[0]) / (len(fits) - 2) if residual.size else 1.0
        covariance = np.linalg.inv(design.T @ design) * max(reduced, 1.0)
        intercept, intercept_std = coefficients[0], math.sqrt(covariance[0, 0])
        strain, strain_std = float(coefficients[1]), math.sqrt(covariance[1, 1])
        if intercept > 0:
            wh_size = float(scherrer_size_nm(intercept, wavelength))
            wh_std = wh_size * intercept_std / intercept
    return SizeStrain(
        scherrer_size_nm=float(scherrer),
        scherrer_size_nm_std=float(scherrer_std),
        williamson_hall_size_nm=float(wh_size),
        williamson_hall_size_nm_std=float(wh_std),
        microstrain=float(strain),
        microstrain_std=float(strain_std),
        n_lines=len(fits),
    )


def phase_lines(
    phase: ReferencePhase,
    two_theta_deg: np.ndarray,
    others: Sequence[ReferencePhase] = (),
    n_lines: int = 6,
    isolation_deg: float = 0.5,
    zero_shift_deg: float = 0.0,
    lattice_strain: float = 0.0,
    shape: ProfileShape = ProfileShape(),
) -> np.ndarray:
    """K-alpha1 2-theta of a phase's strongest lines free of other phases' lines, deg.

    A line is kept if no reflection of ``others`` with more than 5% of that phase's strongest
    intensity lies within ``isolation_deg``, and its own neighbours within that distance are
    weaker than a third of it (so the Lorentzian breadth is not two lines').
    """
    low, high = float(two_theta_deg[0]) + 1.0, float(two_theta_deg[-1]) - 1.0
    own = phase.two_theta_deg(shape.wavelength_angstrom, lattice_strain)
    order = np.argsort(phase.intensity)[::-1]
    blockers = [
        o.two_theta_deg(shape.wavelength_angstrom)[o.intensity > 0.05 * o.intensity.max()]
        for o in others
    ]
    chosen: list[float] = []
    for index in order:
        position = own[index]
        if not (np.isfinite(position) and low <= position <= high):
            continue
        near_own = np.abs(own - position) < isolation_deg
        near_own[index] = False
        if np.any(phase.intensity[near_own] > phase.intensity[index] / 3.0):
            continue
        if any(np.any(np.abs(b - position) < isolation_deg) for b in blockers):
            continue
        chosen.append(float(position) + zero_shift_deg)
        if len(chosen) == n_lines:
            break
    return np.sort(np.array(chosen))


def phase_size_strain(
    two_theta_deg: np.ndarray,
    counts: np.ndarray,
    background: np.ndarray,
    phase: ReferencePhase,
    others: Sequence[ReferencePhase] = (),
    shape: ProfileShape = ProfileShape(),
    zero_shift_deg: float = 0.0,
    lattice_strain: float = 0.0,
) -> SizeStrain | None:
    """Size and microstrain of one phase from its isolated lines; None if none could be fitted.

    Every reflection of the phase above 2% of its strongest is fitted (so weak neighbours do
    not widen the lines), but only the strong, isolated ones (:func:`phase_lines`) are used.
    """
    chosen = phase_lines(
        phase,
        two_theta_deg,
        others,
        zero_shift_deg=zero_shift_deg,
        lattice_strain=lattice_strain,
        shape=shape,
    )
    if chosen.size == 0:
        return None
    positions = phase.two_theta_deg(shape.wavelength_angstrom, lattice_strain) + zero_shift_deg
    inside = (
        np.isfinite(positions)
        & (positions > two_theta_deg[0] + 0.5)
        & (positions < two_theta_deg[-1] - 0.5)
        & (phase.intensity > 0.02 * phase.intensity.max())
    )
    centres = np.unique(np.concatenate([positions[inside], chosen]).round(6))
    fits = fit_peaks(two_theta_deg, counts, background, centres, shape)
    used = [
        fit
        for centre, fit in zip(centres, fits, strict=True)
        if fit is not None and np.min(np.abs(chosen - centre)) < 1e-5
    ]
    return size_strain(used, shape) if used else None
