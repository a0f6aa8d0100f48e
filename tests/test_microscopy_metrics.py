"""Segmentation scores: perfect, shifted and merged segmentations score as they should."""

from __future__ import annotations

import numpy as np
import pytest

from sdl.analysis.microscopy.metrics import score_segmentation


def squares(side=8, count=6):
    rows, cols = np.indices((side * count, side * count)) // side
    return (rows * count + cols + 1).astype(np.int32)


def test_a_perfect_segmentation_scores_one_whatever_the_label_ids():
    truth = squares()
    scores = score_segmentation(truth * 7 + 3, truth)
    assert scores.boundary_accuracy == scores.boundary_iou == 1.0
    assert scores.grain_pixel_accuracy == scores.grain_iou == scores.matched_fraction == 1.0


def test_merging_pairs_of_grains_loses_every_match():
    truth = squares()
    merged = (truth + 1) // 2  # neighbours along a row share a label
    scores = score_segmentation(merged, truth)
    assert scores.matched_fraction == 0.0
    assert scores.grain_pixel_accuracy == 0.0
    assert scores.grain_iou == pytest.approx(0.5)
    assert scores.boundary_accuracy < 1.0


def test_a_one_pixel_shift_costs_a_little():
    truth = squares()
    shifted = np.roll(truth, 1, axis=1)
    scores = score_segmentation(shifted, truth)
    assert 0.8 < scores.grain_pixel_accuracy < 0.9  # 7 of 8 columns of each grain
    assert scores.matched_fraction == 1.0


def test_shapes_must_match():
    with pytest.raises(ValueError, match="shapes"):
        score_segmentation(np.ones((4, 4)), np.ones((4, 5)))
