"""Scores of a grain segmentation against a simulator's label image."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sdl.analysis.microscopy.common import boundary_map

#: A predicted grain matches a true grain when their intersection over union exceeds this
#: (above one half, a match is unique).
MATCH_IOU = 0.5


@dataclass(frozen=True)
class SegmentationScores:
    """How well predicted grain labels reproduce the true ones.

    Attributes
    ----------
    boundary_accuracy
        Fraction of pixels correctly called boundary or interior (2-px-wide boundaries).
    boundary_iou
        Intersection over union of the predicted and true boundary pixels.
    grain_pixel_accuracy
        Fraction of pixels that lie in a predicted grain matched to their own true grain
        (IoU > 0.5): the instance-level pixel accuracy.
    grain_iou
        Mean over true grains of the best IoU any predicted grain reaches.
    matched_fraction
        Fraction of true grains with a match.
    """

    boundary_accuracy: float
    boundary_iou: float
    grain_pixel_accuracy: float
    grain_iou: float
    matched_fraction: float


def score_segmentation(predicted: np.ndarray, truth: np.ndarray) -> SegmentationScores:
    """Scores of ``predicted`` grain labels against ``truth`` (same shape, positive ids)."""
    predicted = np.asarray(predicted)
    truth = np.asarray(truth)
    if predicted.shape != truth.shape:
        raise ValueError(f"shapes differ: predicted {predicted.shape}, truth {truth.shape}")
    predicted_boundary = boundary_map(predicted)
    true_boundary = boundary_map(truth)
    union = np.logical_or(predicted_boundary, true_boundary).sum()
    boundary_iou = float(np.logical_and(predicted_boundary, true_boundary).sum() / max(union, 1))

    _, predicted_index = np.unique(predicted, return_inverse=True)
    _, truth_index = np.unique(truth, return_inverse=True)
    predicted_index = predicted_index.ravel()
    truth_index = truth_index.ravel()
    n_true = int(truth_index.max()) + 1
    n_predicted = int(predicted_index.max()) + 1
    pair = truth_index.astype(np.int64) * n_predicted + predicted_index
    pair_ids, overlap = np.unique(pair, return_counts=True)
    pair_true, pair_predicted = np.divmod(pair_ids, n_predicted)
    true_area = np.bincount(truth_index, minlength=n_true)
    predicted_area = np.bincount(predicted_index, minlength=n_predicted)
    iou = overlap / (true_area[pair_true] + predicted_area[pair_predicted] - overlap)
    matched = iou > MATCH_IOU
    best = np.zeros(n_true)
    np.maximum.at(best, pair_true, iou)
    return SegmentationScores(
        boundary_accuracy=float(np.mean(predicted_boundary == true_boundary)),
        boundary_iou=boundary_iou,
        grain_pixel_accuracy=float(overlap[matched].sum() / truth.size),
        grain_iou=float(best.mean()),
        matched_fraction=float(np.unique(pair_true[matched]).size / n_true),
    )
