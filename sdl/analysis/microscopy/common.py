"""Pieces every micrograph segmentation shares: intensity normalisation and boundary maps."""

from __future__ import annotations

import numpy as np
from skimage.segmentation import find_boundaries

#: Lowest intensity range that counts as an image rather than a blank frame.
MIN_DYNAMIC_RANGE = 1e-6

#: Percentiles mapped to 0 and 1 by :func:`normalise_image` (robust to hot and dead pixels).
NORMALISATION_PERCENTILES = (0.5, 99.5)


def normalise_image(image: np.ndarray) -> np.ndarray:
    """The image rescaled so its 0.5 and 99.5 percentiles become 0 and 1, then clipped.

    Any detector gain and offset drop out, so the analysis does not depend on the scale.
    """
    image = np.asarray(image, dtype=float)
    low, high = np.percentile(image, NORMALISATION_PERCENTILES)
    return np.clip((image - low) / max(high - low, MIN_DYNAMIC_RANGE), 0.0, 1.0)


def boundary_map(labels: np.ndarray) -> np.ndarray:
    """Pixels on either side of a change of label (a 2-px-wide boundary), as bool."""
    return find_boundaries(np.asarray(labels), connectivity=1, mode="thick")
