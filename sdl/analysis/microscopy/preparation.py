"""Micrographs as users have them: boundary polarity, uneven illumination, implausible results.

Secondary-electron images show grain boundaries bright; etched optical micrographs and
backscatter images show them dark. Thin lines of either sign answer a Laplacian of Gaussian
at their own width with one strong tail (bright lines negative, dark lines positive), while
grain interiors and noise answer symmetrically, so the heavier tail tells the polarity.
Uneven illumination (a tilted sample, a vignetting lens) is a slow trend across the frame;
it is removed by subtracting a Gaussian smoothing far wider than any grain. After the
segmentation, results that cannot be a grain structure are named, so nobody trusts them
silently.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import ndimage as ndi

from sdl.analysis.microscopy.common import normalise_image

Polarity = Literal["bright", "dark"]

#: Width of the line detector, px (grain boundaries are 1-3 px wide in focus).
_LINE_SIGMA_PX = 1.5
#: Percentile of each tail of the line detector's response that is compared.
_TAIL_PERCENTILE = 1.0
#: The illumination trend is smoothed over this fraction of the frame's larger side.
_ILLUMINATION_SCALE = 1.0 / 6.0

#: A median grain of fewer pixels is at pixel scale: noise, not grains.
MIN_MEDIAN_GRAIN_PX = 12.0
#: Segments of fewer pixels are "tiny"; more than this share of them is implausible.
TINY_SEGMENT_PX = 9
MAX_TINY_SHARE = 0.4
#: Fewer grains wholly inside the frame than this cannot give a size distribution.
MIN_INTERIOR_GRAINS = 5


def boundary_polarity(image: np.ndarray) -> Polarity:
    """Whether the boundaries are brighter or darker than the grains around them."""
    response = ndi.gaussian_laplace(normalise_image(image), _LINE_SIGMA_PX)
    low, high = np.percentile(response, [_TAIL_PERCENTILE, 100.0 - _TAIL_PERCENTILE])
    return "bright" if -low >= high else "dark"


def bright_boundaried(image: np.ndarray) -> tuple[np.ndarray, Polarity]:
    """The image, in its own units, turned so its boundaries are bright (what every segmenter
    expects), and the polarity it had."""
    polarity = boundary_polarity(image)
    if polarity == "dark":
        return image.max() + image.min() - image, polarity
    return image, polarity


def flattened(image: np.ndarray) -> np.ndarray:
    """The image scaled to [0, 1] with its slow illumination trend removed."""
    normalised = normalise_image(image)
    trend = ndi.gaussian_filter(normalised, _ILLUMINATION_SCALE * max(normalised.shape))
    return normalise_image(normalised - trend)


def implausibility(labels: np.ndarray) -> tuple[str, ...]:
    """What makes a segmentation implausible as grains, in words (empty: nothing)."""
    labels = np.asarray(labels)
    areas = np.bincount(labels.ravel())[1:]
    areas = areas[areas > 0]
    frame = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    interior_grains = len(set(np.unique(labels)) - set(np.unique(frame)) - {0})
    problems = []
    if areas.size and float(np.median(areas)) < MIN_MEDIAN_GRAIN_PX:
        problems.append(
            f"segments at pixel scale (median {float(np.median(areas)):.0f} px): noise or a "
            "magnification far too low"
        )
    tiny = float(np.mean(areas < TINY_SEGMENT_PX)) if areas.size else 0.0
    if tiny > MAX_TINY_SHARE:
        problems.append(f"{tiny:.0%} of the segments are under {TINY_SEGMENT_PX} px")
    if interior_grains < MIN_INTERIOR_GRAINS:
        problems.append(
            f"only {interior_grains} grain(s) lie wholly inside the frame: grains as large as "
            "the field of view, or a magnification far too high"
        )
    return tuple(problems)
