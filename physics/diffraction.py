"""Powder diffraction formulas: Bragg's law, line broadening and peak shapes (numpy only).

Angles are 2-theta in degrees and wavelengths in angstrom, as diffractometers report them;
crystallite sizes are in nm. Line breadths are full widths at half maximum (FWHM) in
2-theta degrees unless a name says otherwise.

* Bragg's law ``lambda = 2 d sin(theta)``.
* Scherrer size broadening (Lorentzian) ``B = K lambda / (D cos theta)``, with ``B`` in
  radians of 2-theta and ``K`` :data:`SCHERRER_K`.
* Microstrain broadening (Gaussian) ``4 eps tan(theta)`` (Stokes & Wilson).
* Instrument broadening (Gaussian) ``FWHM^2 = U tan^2(theta) + V tan(theta) + W`` (Caglioti,
  Paoletti & Ricci, Nucl. Instrum. 3 (1958) 223).
* Thompson-Cox-Hastings pseudo-Voigt lines (J. Appl. Cryst. 20 (1987) 79).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: Cu K-alpha1 and K-alpha2 wavelengths, angstrom (Hoelzer et al., Phys. Rev. A 56 (1997) 4554).
CU_KALPHA1_ANGSTROM = 1.5406
CU_KALPHA2_ANGSTROM = 1.54439

#: Intensity ratio of the Cu K-alpha2 to the K-alpha1 line.
CU_KALPHA2_RATIO = 0.5

#: Scherrer shape factor for roughly equiaxed crystallites and the FWHM.
SCHERRER_K = 0.9

#: Ratio of a Gaussian's standard deviation to its FWHM.
FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))

#: Lines evaluated together when rendering a sum of lines.
_LINES_PER_BLOCK = 32


def bragg_two_theta_deg(
    d_spacing_angstrom: np.ndarray | float, wavelength_angstrom: float
) -> np.ndarray:
    """Bragg angle 2-theta of a reflection, deg, from ``lambda = 2 d sin(theta)``.

    NaN where the reflection does not exist for this wavelength (``lambda > 2 d``).
    """
    sin_theta = wavelength_angstrom / (2.0 * np.asarray(d_spacing_angstrom, dtype=float))
    with np.errstate(invalid="ignore"):
        return np.degrees(2.0 * np.arcsin(np.where(sin_theta < 1.0, sin_theta, np.nan)))


def d_spacing_angstrom(two_theta_deg: np.ndarray | float, wavelength_angstrom: float) -> np.ndarray:
    """Interplanar spacing of a reflection at this Bragg angle, angstrom (Bragg's law)."""
    theta = np.radians(0.5 * np.asarray(two_theta_deg, dtype=float))
    return wavelength_angstrom / (2.0 * np.sin(theta))


def scherrer_fwhm_deg(
    crystallite_size_nm: np.ndarray | float,
    two_theta_deg: np.ndarray | float,
    wavelength_angstrom: np.ndarray | float,
) -> np.ndarray:
    """Size broadening of a line, FWHM in 2-theta degrees: ``K lambda / (D cos theta)``."""
    theta = np.radians(0.5 * np.asarray(two_theta_deg, dtype=float))
    return np.degrees(
        SCHERRER_K
        * np.asarray(wavelength_angstrom, dtype=float)
        / (10.0 * np.asarray(crystallite_size_nm, dtype=float) * np.cos(theta))
    )


def scherrer_size_nm(
    breadth_cos_theta_rad: np.ndarray | float, wavelength_angstrom: float
) -> np.ndarray:
    """Crystallite size, nm, from a reduced size breadth ``B cos(theta)`` (B in radians).

    The inverse of :func:`scherrer_fwhm_deg`: ``D = K lambda / (B cos theta)``. The reduced
    breadth is the same for every line of a strain-free phase, and is the intercept of a
    Williamson-Hall plot.
    """
    return (
        SCHERRER_K * wavelength_angstrom / (10.0 * np.asarray(breadth_cos_theta_rad, dtype=float))
    )


def strain_fwhm_deg(microstrain: float, two_theta_deg: np.ndarray | float) -> np.ndarray:
    """Microstrain broadening of a line, FWHM in 2-theta degrees: ``4 eps tan(theta)``."""
    theta = np.radians(0.5 * np.asarray(two_theta_deg, dtype=float))
    return np.degrees(4.0 * microstrain * np.tan(theta))


def caglioti_fwhm2_deg2(
    two_theta_deg: np.ndarray | float,
    caglioti_u_deg2: float,
    caglioti_v_deg2: float,
    caglioti_w_deg2: float,
) -> np.ndarray:
    """Squared instrument FWHM, deg^2: ``U tan^2(theta) + V tan(theta) + W`` (Caglioti).

    Returned squared so the caller decides what a non-positive value means (an invalid
    calibration, or a floor).
    """
    tan_theta = np.tan(np.radians(0.5 * np.asarray(two_theta_deg, dtype=float)))
    return caglioti_u_deg2 * tan_theta**2 + caglioti_v_deg2 * tan_theta + caglioti_w_deg2


def pseudo_voigt_sum(
    x_deg: np.ndarray,
    centre_deg: np.ndarray,
    area: np.ndarray,
    fwhm_gauss_deg: np.ndarray,
    fwhm_lorentz_deg: np.ndarray,
) -> np.ndarray:
    """Sum of Thompson-Cox-Hastings pseudo-Voigt lines of the given areas, sampled at ``x_deg``.

    Each line is ``eta L + (1 - eta) G`` with Lorentzian and Gaussian of one common FWHM and
    unit area; the FWHM and ``eta`` follow from the Gaussian and Lorentzian widths by TCH's
    polynomials, which approximate their Voigt convolution to about 1 %.

    Parameters
    ----------
    x_deg
        Where to sample, deg, shape ``(points,)``.
    centre_deg, area, fwhm_gauss_deg, fwhm_lorentz_deg
        Centre, integrated area (per deg) and the two widths of every line, shape ``(lines,)``.
    """
    g, lo = fwhm_gauss_deg, fwhm_lorentz_deg
    fwhm = (
        g**5
        + 2.69269 * g**4 * lo
        + 2.42843 * g**3 * lo**2
        + 4.47163 * g**2 * lo**3
        + 0.07842 * g * lo**4
        + lo**5
    ) ** 0.2
    q = lo / fwhm
    eta = 1.36603 * q - 0.47719 * q**2 + 0.11116 * q**3
    inv_half = 2.0 / fwhm
    lorentz_weight = area * eta * inv_half / math.pi
    gauss_weight = area * (1.0 - eta) * inv_half * math.sqrt(math.log(2.0) / math.pi)
    total = np.zeros_like(x_deg)
    # Blocks of lines keep the temporaries in cache; clipping the Gaussian's argument avoids
    # the slow underflow path of exp far from the line (exp(-41) is below any count rate).
    for start in range(0, centre_deg.size, _LINES_PER_BLOCK):
        block = slice(start, start + _LINES_PER_BLOCK)
        u2 = np.subtract.outer(centre_deg[block], x_deg)
        u2 *= inv_half[block, None]
        np.square(u2, out=u2)
        gauss = np.exp(-math.log(2.0) * np.minimum(u2, 60.0))
        u2 += 1.0
        np.reciprocal(u2, out=u2)
        total += lorentz_weight[block] @ u2 + gauss_weight[block] @ gauss
    return total


def q_humps_per_deg(
    two_theta_deg: np.ndarray,
    humps: Sequence[tuple[float, float, float]],
    wavelength_angstrom: float,
) -> np.ndarray:
    """Gaussian humps given in momentum transfer, as an intensity per 2-theta degree.

    An amorphous solid scatters into broad humps at the momentum transfers
    ``Q = 4 pi sin(theta) / lambda`` of its short-range order; their shape is Gaussian in
    ``Q``, so on a 2-theta axis each is weighted by ``dQ / d(2theta)``.

    Parameters
    ----------
    two_theta_deg
        Where to sample, deg.
    humps
        ``(centre Q, FWHM Q, area)`` of every hump, Q in 1/angstrom; the area is the
        integral over 2-theta degrees of the result.
    wavelength_angstrom
        The wavelength.
    """
    theta = np.radians(0.5 * np.asarray(two_theta_deg, dtype=float))
    q = 4.0 * math.pi * np.sin(theta) / wavelength_angstrom
    dq_per_deg = 4.0 * math.pi * np.cos(theta) / wavelength_angstrom * math.pi / 360.0
    profile = np.zeros_like(q)
    for q_centre, q_fwhm, area in humps:
        sigma = q_fwhm * FWHM_TO_SIGMA
        gauss = np.exp(-0.5 * ((q - q_centre) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
        profile += area * gauss * dq_per_deg
    return profile
