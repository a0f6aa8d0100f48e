"""Grain sizes and phase areas from an SEM-like micrograph of a dense polycrystal.

Secondary-electron images show grain boundaries as bright ridges between darker grain
interiors. The pipeline measures the noise (Immerkaer's Laplacian estimate), denoises with a
Gaussian matched to the grain scale, marks one seed per grain where the smoothed intensity
has a minimum deeper than the residual noise (h-minima), and grows the seeds by watershed on
the intensity so every pixel joins a grain (boundary pixels are shared out between their
grains, as in a tessellation). Grains much below ~10 px across are under-resolved and merge,
so the mean size is biased high there; choose the magnification accordingly.

Any segmentation (this classical one, or the U-Net of :mod:`sdl.analysis.microscopy.unet`) feeds the
same statistics: the size distribution and mean equivalent-circle diameter
(:func:`grain_statistics`), the ASTM E112 mean lineal intercept and grain-size number
(:func:`mean_lineal_intercept`), and phase area fractions from the grains' grey levels
(:func:`phase_area_fractions`), each with an uncertainty.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage as ndi
from skimage.measure import regionprops_table
from skimage.morphology import h_minima
from skimage.segmentation import watershed

from sdl.analysis.microscopy.common import MIN_DYNAMIC_RANGE, boundary_map
from sdl.analysis.microscopy.preparation import (
    Polarity,
    bright_boundaried,
    flattened,
    implausibility,
)

logger = logging.getLogger(__name__)

#: ASTM E112 grain-size number from the mean lineal intercept l (mm):
#: ``G = -6.643856 log10(l) - 3.288`` (table 6 of E112-13, planar equiaxed grains).
ASTM_E112_SLOPE = -6.643856
ASTM_E112_OFFSET = -3.288

#: Grain interiors for grey-level statistics start this far from a boundary, px.
_INTERIOR_MARGIN_PX = 2.0

#: Expectation-maximisation steps of the grey-level phase classification.
_PHASE_EM_ITERATIONS = 50

#: Smoothing of the first pass that only estimates the grain scale, px.
_SURVEY_SMOOTHING_PX = 1.5

#: Depth of a grain's intensity minimum, in residual noise stds, for it to seed a grain.
_MARKER_DEPTH_NOISE_STDS = 3.0


@dataclass(frozen=True, eq=False)
class MicrographFeatures:
    """Grain statistics of one micrograph.

    Attributes
    ----------
    grain_size_nm
        Mean equivalent-circle diameter of the grains, nm (number-weighted).
    grain_size_nm_std
        Standard error of that mean, nm.
    grain_size_cv
        Coefficient of variation of the equivalent-circle diameters.
    grain_count
        Number of grains the statistics are based on.
    labels
        The segmentation: one positive id per grain (int32), same shape as the image.
    diameters_nm
        Equivalent-circle diameter of every grain wholly inside the frame (the size
        distribution), nm; each grain's Miles-Lantuejoul weight is in ``weights``.
    weights
        Edge-correction weight of each entry of ``diameters_nm`` (sums to 1).
    intercept_nm, intercept_nm_std
        ASTM E112 mean lineal intercept and its standard error, nm (NaN if not measured).
    phase_area_fractions, phase_area_fractions_std
        Area fraction of each phase from grey-level contrast and its uncertainty (empty
        unless phase grey levels were given).
    boundaries
        Whether the image showed its boundaries bright or dark (detected).
    warnings
        Why the segmentation is implausible as grains (empty if nothing is); the feature
        ``micrograph_implausible`` is 1.0 then.
    """

    grain_size_nm: float
    grain_size_nm_std: float
    grain_size_cv: float
    grain_count: int
    labels: np.ndarray
    diameters_nm: np.ndarray = field(default_factory=lambda: np.empty(0))
    weights: np.ndarray = field(default_factory=lambda: np.empty(0))
    intercept_nm: float = math.nan
    intercept_nm_std: float = math.nan
    phase_area_fractions: Mapping[str, float] = field(default_factory=dict)
    phase_area_fractions_std: Mapping[str, float] = field(default_factory=dict)
    boundaries: Polarity = "bright"
    warnings: tuple[str, ...] = ()

    @property
    def astm_grain_size_number(self) -> float:
        """ASTM E112 grain-size number G from the mean lineal intercept."""
        return ASTM_E112_SLOPE * math.log10(self.intercept_nm * 1e-6) + ASTM_E112_OFFSET

    def as_dict(self) -> dict[str, float]:
        """The scalar features by name, as the analysis pipeline records them."""
        scalars = {
            "grain_size_nm": float(self.grain_size_nm),
            "grain_size_nm_std": float(self.grain_size_nm_std),
            "grain_size_cv": float(self.grain_size_cv),
            "grain_count": float(self.grain_count),
        }
        if math.isfinite(self.intercept_nm):
            scalars["grain_intercept_nm"] = float(self.intercept_nm)
            scalars["grain_intercept_nm_std"] = float(self.intercept_nm_std)
        for phase, fraction in self.phase_area_fractions.items():
            scalars[f"{phase}_area_fraction"] = float(fraction)
            scalars[f"{phase}_area_fraction_std"] = float(self.phase_area_fractions_std[phase])
        scalars["micrograph_implausible"] = float(bool(self.warnings))
        return scalars


def _check_image(image: np.ndarray, pixel_size_nm: float) -> np.ndarray:
    image = np.asarray(image, dtype=float)
    if image.ndim != 2 or min(image.shape) < 8:
        raise ValueError(f"expected a 2-D image of at least 8 x 8 px, got shape {image.shape}")
    if not np.all(np.isfinite(image)):
        raise ValueError("the micrograph contains NaN or infinite pixels")
    if np.ptp(image) < MIN_DYNAMIC_RANGE:
        raise ValueError(f"the micrograph is blank (every pixel is {image.flat[0]:.3g})")
    if not (math.isfinite(pixel_size_nm) and pixel_size_nm > 0):
        raise ValueError(f"pixel_size_nm must be a positive number, got {pixel_size_nm}")
    return image


def _noise_std(image: np.ndarray) -> float:
    """Gaussian noise std by Immerkaer's method: mean |Laplacian difference| of the image."""
    kernel = np.array([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])
    response = ndi.convolve(image, kernel)[1:-1, 1:-1]
    return math.sqrt(math.pi / 2.0) * float(np.mean(np.abs(response))) / 6.0


def _watershed_grains(normalised: np.ndarray, smoothing_px: float, noise: float) -> np.ndarray:
    smoothed = ndi.gaussian_filter(normalised, smoothing_px)
    # Minima shallower than a few residual-noise stds are noise, not grains.
    residual_noise = noise / (2.0 * math.sqrt(math.pi) * smoothing_px)
    markers, _ = ndi.label(h_minima(smoothed, _MARKER_DEPTH_NOISE_STDS * residual_noise))
    return watershed(smoothed, markers).astype(np.int32)


def segment_grains(image: np.ndarray) -> np.ndarray:
    """Grain labels (1..N, no background) of a micrograph with bright grain boundaries
    (:func:`analyse_micrograph` turns dark ones bright first).

    The illumination is flattened first (:func:`~sdl.analysis.microscopy.preparation.flattened`).
    Two passes, so nothing is tuned to one magnification: a heavily smoothed pass measures the
    typical grain diameter, and the final pass smooths by a tenth of it.
    """
    normalised = flattened(image)
    noise = _noise_std(normalised)
    survey = _watershed_grains(normalised, _SURVEY_SMOOTHING_PX, noise)
    typical_diameter_px = 2.0 * math.sqrt(survey.size / survey.max() / math.pi)
    smoothing_px = float(np.clip(typical_diameter_px / 10.0, 0.7, 2.5))
    return _watershed_grains(normalised, smoothing_px, noise)


def grain_statistics(labels: np.ndarray, pixel_size_nm: float) -> MicrographFeatures:
    """Grain size statistics of a label image (a segmentation, or a simulator's truth).

    Grains touching the frame are excluded from the statistics, and the bias that introduces
    (large grains touch the frame more often) is corrected with the Miles-Lantuejoul weight
    ``1 / ((rows - h) (cols - w))`` for a grain whose bounding box is ``h x w`` px. If no
    grain lies wholly inside the frame, every grain is used, uncorrected and biased low.
    Label 0 is background and ignored.
    """
    props = regionprops_table(np.asarray(labels), properties=("area", "bbox"))
    if len(props["area"]) == 0:
        raise ValueError("the label image holds no grains")
    rows, cols = labels.shape
    heights = props["bbox-2"] - props["bbox-0"]
    widths = props["bbox-3"] - props["bbox-1"]
    inside = (
        (props["bbox-0"] > 0)
        & (props["bbox-1"] > 0)
        & (props["bbox-2"] < rows)
        & (props["bbox-3"] < cols)
    )
    diameters_nm = 2.0 * np.sqrt(props["area"] / math.pi) * pixel_size_nm
    if inside.any():
        diameters_nm = diameters_nm[inside]
        weights = 1.0 / ((rows - heights[inside]) * (cols - widths[inside]))
    else:
        weights = np.ones_like(diameters_nm)
    weights = weights / weights.sum()
    mean_nm = float(np.sum(weights * diameters_nm))
    variance = float(np.sum(weights * (diameters_nm - mean_nm) ** 2))
    # Standard error of a weighted mean, through the effective number of grains.
    effective_count = 1.0 / float(np.sum(weights**2))
    std_error_nm = (
        math.sqrt(variance / max(effective_count - 1.0, 1.0)) if len(weights) > 1 else mean_nm
    )
    return MicrographFeatures(
        grain_size_nm=mean_nm,
        grain_size_nm_std=std_error_nm,
        grain_size_cv=math.sqrt(variance) / mean_nm,
        grain_count=int(len(diameters_nm)),
        labels=np.asarray(labels, dtype=np.int32),
        diameters_nm=diameters_nm,
        weights=weights,
    )


def mean_lineal_intercept(labels: np.ndarray, pixel_size_nm: float) -> tuple[float, float]:
    """ASTM E112 mean lineal intercept (nm) and its standard error, by the intercept method.

    Horizontal and vertical test lines count the grain-boundary intersections (changes of
    label between neighbouring pixels); ``l = total line length / intersections``. The
    lines are spaced about two intercepts apart so their counts are nearly independent, and
    the standard error is that of a ratio estimator over the lines.
    """
    labels = np.asarray(labels)
    across_rows = labels[:, 1:] != labels[:, :-1]
    across_cols = labels[1:, :] != labels[:-1, :]
    total = across_rows.sum() + across_cols.sum()
    if total == 0:
        raise ValueError("no grain boundary crosses the frame; the intercept is undefined")
    rows, cols = labels.shape
    rough_intercept_px = 2.0 * rows * cols / total
    stride = max(1, int(round(2.0 * rough_intercept_px)))
    counts = np.concatenate(
        [across_rows[::stride].sum(axis=1), across_cols[:, ::stride].sum(axis=0)]
    ).astype(float)
    lengths = np.concatenate(
        [
            np.full(len(across_rows[::stride]), cols),
            np.full(across_cols[:, ::stride].shape[1], rows),
        ]
    ).astype(float)
    intercept_px = lengths.sum() / max(counts.sum(), 1.0)
    residuals = counts - lengths / intercept_px
    lines = len(counts)
    relative_error = (
        math.sqrt(float(np.sum(residuals**2)) / (lines * (lines - 1))) / max(counts.mean(), 1e-12)
        if lines > 1
        else 1.0
    )
    return intercept_px * pixel_size_nm, intercept_px * pixel_size_nm * relative_error


def grain_grey_levels(image: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median grey level of each grain's interior (away from its bright edge) and its area.

    The median keeps a misplaced boundary's bright pixels from lifting a grain's level.
    Returns arrays indexed by label - 1; grains too small to have an interior use all
    their pixels.
    """
    labels = np.asarray(labels)
    image = np.asarray(image, dtype=float)
    index = np.arange(1, int(labels.max()) + 1)
    area = np.bincount(labels.ravel(), minlength=len(index) + 1)[1:].astype(float)
    interior = ndi.distance_transform_edt(~boundary_map(labels)) >= _INTERIOR_MARGIN_PX
    inner_labels = np.where(interior, labels, 0)
    has_interior = np.bincount(inner_labels.ravel(), minlength=len(index) + 1)[1:] > 0
    grey = np.asarray(ndi.median(image, labels, index), dtype=float)
    if has_interior.any():
        grey[has_interior] = ndi.median(image, inner_labels, index[has_interior])
    return grey, area


def phase_area_fractions(
    image: np.ndarray, labels: np.ndarray, phase_grey_levels: Mapping[str, float]
) -> tuple[dict[str, float], dict[str, float], np.ndarray]:
    """Area fraction of each phase from grain contrast, its uncertainty, and a phase per grain.

    Each grain's interior grey level is modelled as its phase's calibrated grey level
    (``phase_grey_levels``, in the image's intensity units, from standards) plus a
    grain-to-grain scatter common to all phases. Expectation-maximisation fits the scatter
    and the phases' area shares (a Gaussian mixture with fixed means, weighted by grain
    area). The uncertainty combines the sampling of a finite number of grains and the
    ambiguity of grains between two grey levels.

    Returns
    -------
    fractions, fractions_std
        By phase name, in the order of ``phase_grey_levels``.
    grain_phase
        Most probable phase index per grain (indexed by label - 1).
    """
    if not phase_grey_levels:
        raise ValueError("phase_grey_levels is empty; give each phase's calibrated grey level")
    names = list(phase_grey_levels)
    levels = np.array([float(phase_grey_levels[p]) for p in names])
    grey, area = grain_grey_levels(image, labels)
    weight = area / area.sum()
    nearest = np.abs(grey[:, None] - levels[None]).min(axis=1)
    spread = max(float(np.sqrt(np.sum(weight * nearest**2))), 1e-6)
    shares = np.full(len(names), 1.0 / len(names))
    for _ in range(_PHASE_EM_ITERATIONS):
        log_likelihood = -0.5 * ((grey[:, None] - levels[None]) / spread) ** 2
        log_posterior = log_likelihood + np.log(np.maximum(shares, 1e-12))[None]
        log_posterior -= log_posterior.max(axis=1, keepdims=True)
        responsibility = np.exp(log_posterior)
        responsibility /= responsibility.sum(axis=1, keepdims=True)
        shares = weight @ responsibility
        spread = max(
            float(
                np.sqrt(
                    np.sum(weight[:, None] * responsibility * (grey[:, None] - levels[None]) ** 2)
                )
            ),
            1e-6,
        )
    sampling = np.sqrt(np.sum(weight[:, None] ** 2 * (responsibility - shares[None]) ** 2, axis=0))
    ambiguity = np.sqrt(
        np.sum(weight[:, None] ** 2 * responsibility * (1 - responsibility), axis=0)
    )
    std = np.hypot(sampling, ambiguity)
    fractions = {p: float(f) for p, f in zip(names, shares, strict=True)}
    fractions_std = {p: float(e) for p, e in zip(names, std, strict=True)}
    return fractions, fractions_std, responsibility.argmax(axis=1)


def analyse_micrograph(
    image: np.ndarray,
    pixel_size_nm: float,
    *,
    segmenter: Callable[[np.ndarray], np.ndarray] | None = None,
    phase_grey_levels: Mapping[str, float] | None = None,
) -> MicrographFeatures:
    """Grain statistics from a micrograph: segmentation, then :func:`grain_statistics`
    (grains touching the frame excluded, edge bias corrected), the mean lineal intercept
    and, given calibrated phase grey levels, phase area fractions.

    Parameters
    ----------
    image
        2-D intensity image (any scale), grain boundaries brighter or darker than the grain
        interiors (detected).
    pixel_size_nm
        Pixel edge on the sample, nm.
    segmenter
        Image -> grain labels; :func:`segment_grains` (classical) by default, or e.g.
        ``functools.partial(sdl.analysis.microscopy.unet.segment_grains_unet, model)``.
    phase_grey_levels
        Calibrated grey level of each phase, in the image's units; None skips phases.

    Raises
    ------
    ValueError
        On a blank, non-finite or non-2-D image, or a non-positive pixel size.
    """
    image = _check_image(image, pixel_size_nm)
    # Every segmenter sees bright boundaries (the U-Net was trained on them).
    oriented, polarity = bright_boundaried(image)
    labels = (segmenter or segment_grains)(oriented)
    statistics = grain_statistics(labels, pixel_size_nm)
    warnings = implausibility(labels)
    for warning in warnings:
        logger.warning("implausible micrograph segmentation: %s", warning)
    intercept_nm, intercept_nm_std = mean_lineal_intercept(labels, pixel_size_nm)
    fractions: dict[str, float] = {}
    fractions_std: dict[str, float] = {}
    if phase_grey_levels is not None:
        fractions, fractions_std, _ = phase_area_fractions(image, labels, phase_grey_levels)
    return replace(
        statistics,
        intercept_nm=intercept_nm,
        intercept_nm_std=intercept_nm_std,
        phase_area_fractions=fractions,
        phase_area_fractions_std=fractions_std,
        boundaries=polarity,
        warnings=warnings,
    )
