"""A picture of a diffractometer's calibration: the standard's fit and the line breadths."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sdl.analysis.xrd.calibration import StandardFit


def plot_calibration(
    fit: StandardFit, two_theta_deg: np.ndarray, counts: np.ndarray, path: Path | str
) -> Path:
    """Write a PNG: the standard's scan, the fit and the residual above; the calibrated
    Gaussian, Lorentzian and total breadths against 2-theta below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    calibration = fit.calibration
    shape = calibration.shape
    figure, (top, middle, bottom) = plt.subplots(
        3, 1, figsize=(10, 9), gridspec_kw={"height_ratios": [3, 1, 2]}, sharex=True
    )
    top.plot(two_theta_deg, counts, ".", markersize=2, color="0.3", label="measured")
    top.plot(two_theta_deg, fit.fitted_pattern, lw=0.8, color="tab:red", label="fit")
    top.plot(two_theta_deg, fit.background, lw=0.8, color="tab:blue", label="background")
    top.set_ylabel("counts")
    top.set_title(
        f"{calibration.standard} calibration ({calibration.source or 'scan'}): "
        f"Rwp {calibration.rwp:.3f}, reduced chi2 {calibration.reduced_chi2:.2f}, "
        f"zero {calibration.zero_shift_deg:+.4f} deg"
    )
    top.legend(loc="upper right")
    weight = 1.0 / np.sqrt(np.maximum(counts, 1.0))
    middle.plot(two_theta_deg, (counts - fit.fitted_pattern) * weight, lw=0.6, color="0.3")
    middle.set_ylabel("residual / sigma")
    gauss = shape.instrument_fwhm_deg(two_theta_deg)
    lorentz = shape.instrument_lorentz_fwhm_deg(two_theta_deg)
    u, v, w = shape.caglioti_uvw_deg2
    bottom.plot(two_theta_deg, gauss, label=f"Gaussian (U {u:.2e}, V {v:.2e}, W {w:.2e})")
    bottom.plot(two_theta_deg, lorentz, label=f"Lorentzian (X {shape.lorentz_x_deg:.2e})")
    bottom.set_ylabel("instrument FWHM, deg")
    bottom.set_xlabel("2-theta, deg")
    bottom.legend(loc="upper left")
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
