"""Is the raw data fit to analyse? Checks that keep garbage from reaching the agent.

A check returns the problems it finds, each with the fault kind a campaign's policy is
keyed by (``corrupt_data`` or ``drift``) and a message that says what is wrong in numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: A pattern with at least this fraction of its points on one flat ceiling is saturated.
SATURATED_FRACTION = 0.02

#: An image whose standard deviation is below this fraction of its mean level is blank.
BLANK_IMAGE_RELATIVE_STD = 1e-3


@dataclass(frozen=True)
class DataProblem:
    """One reason not to trust a measurement."""

    kind: str
    message: str


def pattern_problems(counts: np.ndarray) -> list[DataProblem]:
    """Non-finite, empty or saturated (flat-topped) powder patterns."""
    counts = np.asarray(counts, dtype=float)
    bad = int(np.count_nonzero(~np.isfinite(counts)))
    if bad:
        return [
            DataProblem(
                "corrupt_data", f"xrd pattern has {bad} of {counts.size} points NaN or infinite"
            )
        ]
    if counts.size == 0 or counts.max() <= 0:
        return [
            DataProblem(
                "corrupt_data", f"xrd pattern is empty ({counts.size} points, no counts above zero)"
            )
        ]
    at_ceiling = int(np.count_nonzero(counts >= counts.max()))
    if at_ceiling >= max(3, SATURATED_FRACTION * counts.size):
        return [
            DataProblem(
                "corrupt_data",
                f"xrd pattern is saturated: {at_ceiling} points "
                f"sit on the ceiling {counts.max():.6g} counts",
            )
        ]
    return []


def image_problems(image: np.ndarray) -> list[DataProblem]:
    """Non-finite or blank (featureless) micrographs."""
    image = np.asarray(image, dtype=float)
    bad = int(np.count_nonzero(~np.isfinite(image)))
    if bad:
        return [DataProblem("corrupt_data", f"micrograph has {bad} pixels NaN or infinite")]
    level = max(abs(float(image.mean())), 1e-12) if image.size else 1.0
    if image.size == 0 or float(image.std()) < BLANK_IMAGE_RELATIVE_STD * level:
        return [
            DataProblem(
                "corrupt_data",
                "micrograph is blank (no contrast: std "
                f"{float(image.std()) if image.size else 0:.3g})",
            )
        ]
    return []


def calibration_problems(zero_shift_deg: float, tolerance_deg: float) -> list[DataProblem]:
    """A fitted goniometer zero beyond the tolerance means the diffractometer has drifted."""
    if abs(zero_shift_deg) > tolerance_deg:
        return [
            DataProblem(
                "drift",
                f"xrd zero shift {zero_shift_deg:+.3f} deg exceeds the "
                f"calibration tolerance of ±{tolerance_deg:g} deg",
            )
        ]
    return []
