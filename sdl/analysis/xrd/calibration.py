"""The diffractometer's own profile and zero, calibrated on a line-profile standard.

Every fit of the analysis renders its lines with :class:`~sdl.analysis.xrd.instrument.
ProfileShape`: the instrument's Gaussian breadth (Caglioti U, V, W), its Lorentzian breadth
(``X / cos theta``) and the goniometer zero. Those belong to one instrument, not to our
simulator's defaults, and a facility measures them on a standard whose own lines are
narrow and whose lattice is certified: NIST SRM 660c LaB6 or SRM 640f Si
(:data:`physics.phases.LINE_PROFILE_STANDARDS`). :func:`calibrate` fits such a scan:

    counts(2theta) = s * profile_standard(2theta; U, V, W, X, zero) + Chebyshev background

with the standard's crystallites taken as instrument-limited (100 um) and its lattice as
certified. The zero is found first by a scan of the whole pattern's correlation with the
standard's lines (a misaligned goniometer can be tenths of a degree off), then all five
refined by ``least_squares`` with the scale and background solved exactly for each trial
(variable projection). The result is written to a YAML file (``sdl calibrate-xrd``) that a
campaign names as ``analysis.xrd_instrument``; the analysis then fits every pattern with it,
and a fitted zero is judged against the calibrated one.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy.optimize import least_squares

from physics.phases import LINE_PROFILE_STANDARDS
from physics.structures import get_structure
from sdl.analysis.xrd.background import chebyshev_basis
from sdl.analysis.xrd.instrument import ProfileShape, render_phase
from sdl.analysis.xrd.reference import ReferencePhase

#: Crystallite size at which a standard's lines are instrument-limited, nm.
_STANDARD_SIZE_NM = 1e5

#: Chebyshev degree of the background under a standard's scan.
_BACKGROUND_DEGREE = 6

#: Bounds of the refined parameters: U, V, W (deg^2), X (deg), zero (deg).
_LOWER = (0.0, -0.5, 1e-7, 0.0, -1.0)
_UPPER = (0.5, 0.5, 0.5, 0.5, 1.0)

#: Step of the coarse zero scan, deg: under a line's breadth, so the scan lands in its basin.
_ZERO_SCAN_STEP_DEG = 0.01

#: Reduced chi-square past which the standard's fit is reported as poor.
_POOR_FIT_REDUCED_CHI2 = 3.0


@dataclass(frozen=True)
class InstrumentCalibration:
    """An instrument's profile and zero as fitted to a standard, with how well they are known.

    Attributes
    ----------
    shape
        Wavelengths and line breadths, for every later fit.
    zero_shift_deg
        The goniometer zero, deg: every line appears this much higher in 2-theta.
    standard
        Which standard was measured.
    uncertainty
        Standard uncertainty of each refined parameter, by name.
    rwp, reduced_chi2
        Goodness of the standard's fit.
    source
        Where the standard's scan came from (a file name).
    """

    shape: ProfileShape
    zero_shift_deg: float
    standard: str
    uncertainty: dict[str, float] = field(default_factory=dict)
    rwp: float = math.nan
    reduced_chi2: float = math.nan
    source: str = ""

    @property
    def poor_fit(self) -> bool:
        """The standard's lines are not described by this profile (reduced chi-square > 3)."""
        return self.reduced_chi2 > _POOR_FIT_REDUCED_CHI2

    def as_dict(self) -> dict[str, Any]:
        """Plain numbers and strings by name, as written to the file and to run metadata."""
        shape = asdict(self.shape)
        shape["caglioti_uvw_deg2"] = list(shape["caglioti_uvw_deg2"])
        goodness = {"rwp": self.rwp, "reduced_chi2": self.reduced_chi2}
        return {
            "standard": self.standard,
            "source": self.source,
            **shape,
            "zero_shift_deg": self.zero_shift_deg,
            "uncertainty": dict(self.uncertainty),
            **{name: value for name, value in goodness.items() if math.isfinite(value)},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InstrumentCalibration:
        """Read back :meth:`as_dict`; unknown or missing profile fields are refused by name."""
        data = dict(data)
        try:
            shape = ProfileShape(
                wavelength_angstrom=float(data.pop("wavelength_angstrom")),
                wavelength2_angstrom=float(data.pop("wavelength2_angstrom")),
                kalpha2_ratio=float(data.pop("kalpha2_ratio")),
                caglioti_uvw_deg2=tuple(float(v) for v in data.pop("caglioti_uvw_deg2")),  # type: ignore[arg-type]
                lorentz_x_deg=float(data.pop("lorentz_x_deg")),
            )
            zero_shift_deg = float(data.pop("zero_shift_deg"))
        except KeyError as missing:
            raise ValueError(f"an instrument calibration needs {missing.args[0]}") from None
        if len(shape.caglioti_uvw_deg2) != 3:
            raise ValueError("caglioti_uvw_deg2 must be three numbers: U, V, W")
        known = {"standard", "source", "uncertainty", "rwp", "reduced_chi2"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown field(s) in an instrument calibration: {unknown}")
        return cls(
            shape,
            zero_shift_deg,
            str(data.get("standard", "")),
            {k: float(v) for k, v in dict(data.get("uncertainty", {})).items()},
            float(data.get("rwp", math.nan)),
            float(data.get("reduced_chi2", math.nan)),
            str(data.get("source", "")),
        )

    def write(self, path: Path | str) -> None:
        """Write the calibration as YAML (replaced whole, never half-written)."""
        path = Path(path)
        temporary = path.with_name(f".{path.name}.new")
        temporary.write_text(
            "# Diffractometer calibration written by `sdl calibrate-xrd`; name this file as\n"
            "# analysis.xrd_instrument in a campaign.\n"
            + yaml.safe_dump(self.as_dict(), sort_keys=False)
        )
        temporary.replace(path)


def calibration_at(path: Path | str | None) -> InstrumentCalibration | None:
    """The calibration a campaign names (``analysis.xrd_instrument``), or None if none."""
    return read_calibration(path) if path else None


def read_calibration(path: Path | str) -> InstrumentCalibration:
    """The calibration in a file written by :meth:`InstrumentCalibration.write`.

    Raises
    ------
    ValueError
        If the file is not such a calibration (naming the field at fault).
    """
    data = yaml.safe_load(Path(path).read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not an instrument calibration (expected a mapping)")
    return InstrumentCalibration.from_dict(data)


@dataclass(frozen=True, eq=False)
class StandardFit:
    """The calibration and the fitted curve, for a plot of the standard's fit."""

    calibration: InstrumentCalibration
    fitted_pattern: np.ndarray
    background: np.ndarray


def calibrate(
    two_theta_deg: np.ndarray,
    counts: np.ndarray,
    standard: str = "LaB6",
    *,
    shape: ProfileShape = ProfileShape(),
    source: str = "",
) -> StandardFit:
    """Fit the instrument's profile and zero to one scan of a line-profile standard.

    Parameters
    ----------
    two_theta_deg, counts
        The standard's scan: 2-theta of every step (deg, increasing) and counts.
    standard
        One of :data:`physics.phases.LINE_PROFILE_STANDARDS`.
    shape
        The wavelengths and K-alpha2 ratio of the tube, and the starting breadths.
    source
        Where the scan came from, kept with the calibration.

    Raises
    ------
    ValueError
        On an unknown standard, a scan that is too short, uneven or holds fewer than three
        of the standard's lines, or a fit whose instrument breadth is not positive over the
        scan.
    """
    if standard not in LINE_PROFILE_STANDARDS:
        raise ValueError(f"standard must be one of {LINE_PROFILE_STANDARDS}, got {standard!r}")
    two_theta_deg = np.asarray(two_theta_deg, dtype=float)
    counts = np.asarray(counts, dtype=float)
    if two_theta_deg.shape != counts.shape or two_theta_deg.ndim != 1 or counts.size < 100:
        raise ValueError("a standard's scan needs at least 100 points of 2-theta and counts")
    if np.any(np.diff(two_theta_deg) <= 0) or not np.all(np.isfinite(counts)):
        raise ValueError("two_theta_deg must increase and counts must be finite")
    phase = ReferencePhase.from_structure(standard, get_structure(standard))
    inside = phase.two_theta_deg(shape.wavelength_angstrom)
    inside = inside[(inside > two_theta_deg[0]) & (inside < two_theta_deg[-1])]
    if inside.size < 3:
        raise ValueError(
            f"the scan {two_theta_deg[0]:.1f}-{two_theta_deg[-1]:.1f} deg holds "
            f"{inside.size} lines of {standard}; a calibration needs at least 3"
        )
    model = _StandardModel(phase, two_theta_deg, counts, shape)
    start = np.array([*shape.caglioti_uvw_deg2, shape.lorentz_x_deg, model.best_zero()])
    fit = least_squares(
        model.residual,
        np.clip(start, _LOWER, _UPPER),
        bounds=(_LOWER, _UPPER),
        x_scale=[1e-3, 1e-3, 1e-3, 1e-2, 1e-2],
    )
    calibrated = model.shape_at(fit.x)
    if np.any(calibrated.instrument_fwhm_deg(two_theta_deg) ** 2 <= 1e-8):
        raise ValueError("the fitted Caglioti U, V, W give no positive breadth over the scan")
    residual = fit.fun
    dof = max(counts.size - fit.x.size - _BACKGROUND_DEGREE - 2, 1)
    reduced_chi2 = float(residual @ residual) / dof
    covariance = np.linalg.pinv(fit.jac.T @ fit.jac) * reduced_chi2
    names = ("caglioti_u_deg2", "caglioti_v_deg2", "caglioti_w_deg2", "lorentz_x_deg", "zero")
    uncertainty = dict(zip(names, np.sqrt(np.clip(np.diag(covariance), 0, None)), strict=True))
    uncertainty["zero_shift_deg"] = uncertainty.pop("zero")
    fitted, background = model.fitted(fit.x)
    weight = model.sqrt_weight
    rwp = float(np.linalg.norm(weight * (counts - fitted)) / np.linalg.norm(weight * counts))
    return StandardFit(
        InstrumentCalibration(
            calibrated,
            float(fit.x[-1]),
            standard,
            {k: float(v) for k, v in uncertainty.items()},
            rwp,
            reduced_chi2,
            source,
        ),
        fitted,
        background,
    )


class _StandardModel:
    """A standard's profile for trial breadths and zero, scale and background solved."""

    def __init__(
        self,
        phase: ReferencePhase,
        two_theta_deg: np.ndarray,
        counts: np.ndarray,
        shape: ProfileShape,
    ) -> None:
        self.phase = phase
        self.two_theta_deg = two_theta_deg
        self.counts = counts
        self.shape = shape
        self.sqrt_weight = 1.0 / np.sqrt(np.maximum(counts, 1.0))
        self.background_basis = chebyshev_basis(counts.size, _BACKGROUND_DEGREE)

    def shape_at(self, parameters: np.ndarray) -> ProfileShape:
        u, v, w, x, _ = parameters
        return ProfileShape(
            self.shape.wavelength_angstrom,
            self.shape.wavelength2_angstrom,
            self.shape.kalpha2_ratio,
            (float(u), float(v), float(w)),
            float(x),
        )

    def _design(self, parameters: np.ndarray) -> np.ndarray:
        profile = render_phase(
            self.phase,
            self.two_theta_deg,
            _STANDARD_SIZE_NM,
            shape=self.shape_at(parameters),
            zero_shift_deg=float(parameters[-1]),
        )
        return np.vstack([profile, self.background_basis])

    def _linear(self, design: np.ndarray) -> np.ndarray:
        weighted = (design * self.sqrt_weight).T
        return np.linalg.lstsq(weighted, self.counts * self.sqrt_weight, rcond=None)[0]

    def residual(self, parameters: np.ndarray) -> np.ndarray:
        design = self._design(parameters)
        return self.sqrt_weight * (self.counts - self._linear(design) @ design)

    def fitted(self, parameters: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The model and its background alone at these parameters."""
        design = self._design(parameters)
        linear = self._linear(design)
        return linear @ design, linear[1:] @ self.background_basis

    def best_zero(self) -> float:
        """The zero at which the standard's lines (starting breadths) fit best, deg."""
        parameters = np.array([*self.shape.caglioti_uvw_deg2, self.shape.lorentz_x_deg, 0.0])
        zeros = np.arange(_LOWER[-1], _UPPER[-1] + _ZERO_SCAN_STEP_DEG / 2, _ZERO_SCAN_STEP_DEG)
        chi2 = []
        for zero in zeros:
            parameters[-1] = zero
            residual = self.residual(parameters)
            chi2.append(float(residual @ residual))
        return float(zeros[int(np.argmin(chi2))])
