"""Background of a powder pattern, estimated with pybaselines' SNIP peak clipping.

SNIP (Ryan et al., Nucl. Instrum. Meth. B 34 (1988) 396; Morhac & Matousek, Appl.
Spectrosc. 62 (2008) 91) clips every feature narrower than its window, leaving the slowly
varying background (air scatter, fluorescence, holder). The window is set in degrees so the
same call works for any step size: it must be wider than the broadest Bragg line of interest
(a few tenths of a degree for lab data, ~2 deg for 5 nm crystallites) and narrower than the
background's curvature. An amorphous hump several degrees wide is partly clipped as
background; fits that must quantify amorphous content model the hump instead (see
:mod:`sdl.analysis.xrd.whole_pattern`).
"""

from __future__ import annotations

import numpy as np
from numpy.polynomial import chebyshev
from pybaselines import Baseline

#: Default SNIP half window, deg of 2-theta.
DEFAULT_HALF_WINDOW_DEG = 3.0

#: Default moving-average half window used inside SNIP against counting noise, deg.
DEFAULT_SMOOTH_HALF_WINDOW_DEG = 0.1


def estimate_background(
    two_theta_deg: np.ndarray,
    counts: np.ndarray,
    half_window_deg: float = DEFAULT_HALF_WINDOW_DEG,
    smooth_half_window_deg: float = DEFAULT_SMOOTH_HALF_WINDOW_DEG,
) -> np.ndarray:
    """Background counts per step under a powder pattern (SNIP, decreasing windows).

    Parameters
    ----------
    two_theta_deg
        2-theta of every step, deg, increasing.
    counts
        Measured counts per step.
    half_window_deg
        Largest clipping half window, deg; features narrower than about twice this are
        treated as peaks.
    smooth_half_window_deg
        Half window of the moving average SNIP applies against noise, deg.

    Raises
    ------
    ValueError
        On mismatched shapes, a grid that does not increase, or non-positive windows.
    """
    two_theta_deg = np.asarray(two_theta_deg, dtype=float)
    counts = np.asarray(counts, dtype=float)
    if two_theta_deg.shape != counts.shape or two_theta_deg.ndim != 1:
        raise ValueError(
            f"two_theta_deg and counts must be 1-D of one length, got {two_theta_deg.shape} "
            f"and {counts.shape}"
        )
    if two_theta_deg.size < 3 or np.any(np.diff(two_theta_deg) <= 0):
        raise ValueError("two_theta_deg must increase and hold at least 3 points")
    if not (half_window_deg > 0 and smooth_half_window_deg >= 0):
        raise ValueError(
            f"windows must be positive, got half_window_deg={half_window_deg}, "
            f"smooth_half_window_deg={smooth_half_window_deg}"
        )
    step_deg = float(np.mean(np.diff(two_theta_deg)))
    half_window = max(1, min(int(round(half_window_deg / step_deg)), counts.size // 2 - 1))
    smooth = int(round(smooth_half_window_deg / step_deg))
    baseline, _ = Baseline(two_theta_deg).snip(
        counts, max_half_window=half_window, decreasing=True, smooth_half_window=smooth or None
    )
    return np.minimum(baseline, counts.max())


def chebyshev_basis(n_points: int, degree: int) -> np.ndarray:
    """Chebyshev polynomials of degree 0 to ``degree`` over a scan, one row each: the smooth
    background a whole-pattern fit solves for together with its phases (an amorphous hump
    is then not taken for background, as a clipping estimate would take it)."""
    return chebyshev.chebvander(np.linspace(-1.0, 1.0, n_points), degree).T
