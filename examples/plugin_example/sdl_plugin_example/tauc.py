"""The UV-Vis analysis step: band gap (Tauc), Urbach energy and peak absorbance of a film.

For a direct allowed gap, (alpha h nu)^2 is linear in h nu above the gap and reaches zero at
Eg (Tauc, Grigorovici, Vancu, Phys. Status Solidi 15 (1966) 627). The film's thickness is not
known, but it only scales alpha, so absorbance stands in for alpha without moving the
intercept. The line is fitted just above the foot of the steep part of (A h nu)^2, found from
the data, not at fixed energies; below the gap ln A falls linearly with slope 1 / Eu (Urbach,
Phys. Rev. 92 (1953) 1324).

Uncertainties come from the weighted fits' covariances. Each point's weight follows from the
noise of a transmission measurement: constant in transmittance, so sigma_A = sigma_0 10^A,
with sigma_0 read from the scatter of the flat part of the spectrum below the gap. They are
statistical only: wavelength calibration, excitonic absorption and interference fringes,
which dominate for real films, are not in them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.signal import savgol_filter

from sdl_plugin_example.optics import HC_EV_NM

#: Readings the step needs, without the device's ``{name}_`` prefix.
WAVELENGTH_KEY = "wavelength_nm"
ABSORBANCE_KEY = "absorbance"

#: Fewest points a spectrum must have.
MIN_POINTS = 100
#: Lowest-energy points taken as the flat baseline below the gap (reflection losses).
BASELINE_POINTS = 50
#: Points in the Savitzky-Golay window that smooths the spectrum before differentiating.
SMOOTHING_POINTS = 21
#: Smallest rise above the baseline, absorbance and multiple of the noise, that is an edge.
MIN_EDGE_ABSORBANCE = 0.02
MIN_EDGE_SNR = 20.0
#: Largest absorbance noise a point may have and still be fitted (the detector's range).
MAX_ABSORBANCE_STD = 0.02
#: The Tauc window: from where (A h nu)^2 rises at this fraction of its typical slope on the
#: steep part, this many eV up.
TAUC_ONSET_FRACTION = 0.8
TAUC_WINDOW_EV = 0.1
#: The Urbach window: below the gap, down to this many e-folds under the absorbance at the
#: gap, and only points this many times their noise above zero.
URBACH_E_FOLDS = 4.0
URBACH_MIN_SNR = 20.0
#: Fewest points in a fit window.
MIN_FIT_POINTS = 5


def analyse_spectrum(readings: Mapping[str, Any]) -> dict[str, float]:
    """Features of one film's absorbance spectrum, with their uncertainties.

    Parameters
    ----------
    readings
        The UV-Vis device's readings of one sample, data key -> value, keys ending in
        ``wavelength_nm`` and ``absorbance`` (the ``{name}_`` prefix included or not).

    Returns
    -------
    ``band_gap_ev`` and ``band_gap_ev_std`` (Tauc, direct allowed gap), ``urbach_energy_mev``
    and ``urbach_energy_mev_std``, ``absorbance_max`` (baseline removed, smoothed).

    Raises
    ------
    ValueError
        For a spectrum that cannot be analysed: missing or mismatched arrays, non-finite
        values, too few points, no absorption edge, no resolvable tail.
    """
    energy_ev, absorbance = _spectrum(readings)
    baseline, noise_0 = _baseline(energy_ev, absorbance)
    corrected = absorbance - baseline
    smoothed = savgol_filter(corrected, SMOOTHING_POINTS, 2)
    absorbance_max = float(smoothed.max())
    if absorbance_max < max(MIN_EDGE_ABSORBANCE, MIN_EDGE_SNR * noise_0):
        raise ValueError(
            f"no absorption edge: the absorbance rises only {absorbance_max:.3g} above its "
            f"baseline (noise {noise_0:.2g}); an edge needs at least "
            f"{max(MIN_EDGE_ABSORBANCE, MIN_EDGE_SNR * noise_0):.3g}"
        )
    # Photometric noise is constant in transmittance: each point's from its own absorbance.
    sigma = noise_0 * 10.0 ** np.clip(absorbance, 0, None)
    gap_ev, gap_std_ev = tauc_gap(energy_ev, corrected, smoothed, sigma)
    urbach_mev, urbach_std_mev = urbach_energy(energy_ev, corrected, smoothed, sigma, gap_ev)
    return {
        "band_gap_ev": gap_ev,
        "band_gap_ev_std": gap_std_ev,
        "urbach_energy_mev": urbach_mev,
        "urbach_energy_mev_std": urbach_std_mev,
        "absorbance_max": absorbance_max,
    }


def _reading(readings: Mapping[str, Any], suffix: str) -> np.ndarray:
    keys = [key for key in readings if key == suffix or key.endswith(f"_{suffix}")]
    if len(keys) != 1:
        raise ValueError(f"need one reading ending in {suffix!r}, got keys {sorted(readings)}")
    return np.asarray(readings[keys[0]], dtype=float)


def _spectrum(readings: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Photon energy (eV, ascending) and absorbance, checked for what the analysis needs."""
    wavelength_nm = _reading(readings, WAVELENGTH_KEY)
    absorbance = _reading(readings, ABSORBANCE_KEY)
    if wavelength_nm.ndim != 1 or wavelength_nm.shape != absorbance.shape:
        raise ValueError(
            f"wavelength and absorbance must be 1-D arrays of one length, got shapes "
            f"{wavelength_nm.shape} and {absorbance.shape}"
        )
    if wavelength_nm.size < MIN_POINTS:
        raise ValueError(f"a spectrum needs at least {MIN_POINTS} points, got {wavelength_nm.size}")
    bad = int(np.count_nonzero(~np.isfinite(wavelength_nm) | ~np.isfinite(absorbance)))
    if bad:
        raise ValueError(f"the spectrum has {bad} non-finite (NaN or infinite) values")
    if np.any(wavelength_nm <= 0):
        raise ValueError(f"wavelengths must be > 0 nm, got a minimum of {wavelength_nm.min():g}")
    order = np.argsort(-wavelength_nm)
    return HC_EV_NM / wavelength_nm[order], absorbance[order]


def _baseline(energy_ev: np.ndarray, absorbance: np.ndarray) -> tuple[float, float]:
    """The flat absorbance far below the gap, and the noise of one point there."""
    below = slice(0, BASELINE_POINTS)
    trend = np.polyval(np.polyfit(energy_ev[below], absorbance[below], 1), energy_ev[below])
    noise = float(np.std(absorbance[below] - trend, ddof=2))
    return float(np.median(absorbance[below])), max(noise, np.finfo(float).eps)


def tauc_gap(
    energy_ev: np.ndarray, absorbance: np.ndarray, smoothed: np.ndarray, sigma: np.ndarray
) -> tuple[float, float]:
    """Direct allowed gap from the Tauc line, and its standard error, eV.

    The line is fitted on the ``TAUC_WINDOW_EV`` above the foot of the edge: the first energy
    where the slope of the smoothed (A E)^2 reaches ``TAUC_ONSET_FRACTION`` of its typical
    value on the steep part. Starting at the foot keeps the extrapolation to zero short, and
    the window is chosen without looking at its own fit, so noise that happens to steepen
    one window does not pull the gap with it.

    Parameters
    ----------
    energy_ev
        Photon energies, eV, ascending, shape ``n``.
    absorbance
        Absorbance with the baseline removed, shape ``n``.
    smoothed
        The same, smoothed: the foot of the edge is found on it.
    sigma
        Standard deviation of each absorbance, shape ``n``.
    """
    usable = sigma <= MAX_ABSORBANCE_STD
    slope = np.gradient((smoothed * energy_ev) ** 2, energy_ev)
    rising = usable & (slope > 0)
    if not np.any(rising):
        raise ValueError(
            "no absorption edge: (A h nu)^2 never rises where the detector is in range"
        )
    steep = rising & (slope >= 0.5 * slope[rising].max())
    onset = np.flatnonzero(usable & (slope >= TAUC_ONSET_FRACTION * np.median(slope[steep])))[0]
    stop = np.searchsorted(energy_ev, energy_ev[onset] + TAUC_WINDOW_EV, side="right")
    in_range = np.flatnonzero(~usable[onset:stop])
    window = slice(onset, onset + in_range[0] if in_range.size else stop)
    if window.stop - window.start < MIN_FIT_POINTS:
        raise ValueError(
            f"no absorption edge: {window.stop - window.start} points lie on the steep part "
            f"of (A h nu)^2 within the detector's range, a line needs {MIN_FIT_POINTS}"
        )
    x, y = energy_ev[window], (absorbance[window] * energy_ev[window]) ** 2
    y_sigma = 2 * x**2 * np.maximum(np.abs(smoothed[window]), sigma[window]) * sigma[window]
    (gradient, intercept), covariance = np.polyfit(x, y, 1, w=1 / y_sigma, cov=True)
    gap_ev = -intercept / gradient
    jacobian = np.array([intercept / gradient**2, -1 / gradient])
    gap_std_ev = float(np.sqrt(jacobian @ covariance @ jacobian))
    if not energy_ev[0] < gap_ev < energy_ev[-1]:
        raise ValueError(
            f"the Tauc line meets zero at {gap_ev:.3g} eV, outside the measured "
            f"{energy_ev[0]:.3g}-{energy_ev[-1]:.3g} eV"
        )
    return float(gap_ev), gap_std_ev


def urbach_energy(
    energy_ev: np.ndarray,
    absorbance: np.ndarray,
    smoothed: np.ndarray,
    sigma: np.ndarray,
    gap_ev: float,
) -> tuple[float, float]:
    """Urbach energy of the exponential tail below the gap, and its standard error, meV.

    ln A is fitted where it is well above the noise (so the log stays unbiased) and below
    the gap; points are chosen and weighted by the smoothed absorbance, not their own noisy
    values, so noise does not select or weight itself.
    """
    at_gap = float(np.interp(gap_ev, energy_ev, smoothed))
    floor = np.maximum(URBACH_MIN_SNR * sigma, at_gap * np.exp(-URBACH_E_FOLDS))
    tail = (energy_ev <= gap_ev) & (smoothed >= floor) & (absorbance > 0)
    if np.count_nonzero(tail) < MIN_FIT_POINTS:
        raise ValueError(
            f"no Urbach tail resolved: {np.count_nonzero(tail)} points below the gap stand "
            f"above the noise, a fit needs {MIN_FIT_POINTS}"
        )
    x, y = energy_ev[tail], np.log(absorbance[tail])
    (inverse_ev, _), covariance = np.polyfit(x, y, 1, w=smoothed[tail] / sigma[tail], cov=True)
    if inverse_ev <= 0:
        raise ValueError("no Urbach tail: the absorbance below the gap does not fall with energy")
    urbach_mev = 1e3 / inverse_ev
    return float(urbach_mev), float(urbach_mev * np.sqrt(covariance[0, 0]) / inverse_ev)
