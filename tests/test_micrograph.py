"""Simulated micrographs: grains follow the sample's size distribution and phases."""

from __future__ import annotations

import numpy as np
import pytest

from sdl.analysis.microscopy.segmentation import grain_statistics
from simulators.micrograph import choose_pixel_size_nm, simulate_micrograph
from simulators.sample import SampleState

PHASES = {"amorphous": 0.1, "anatase": 0.5, "brookite": 0.1, "rutile": 0.3}


def make_sample(particle_size_nm=40.0, cv=0.3, phase_fractions=None):
    return SampleState(
        sample_id="s",
        conditions={},
        phase_fractions=phase_fractions or PHASES,
        crystallite_size_nm={"anatase": 15.0, "brookite": 12.0, "rutile": 40.0},
        particle_size_nm=particle_size_nm,
        particle_size_cv=cv,
    )


def interior_mean_ecd_nm(labels, pixel_size_nm):
    return grain_statistics(labels, pixel_size_nm).grain_size_nm


def test_micrograph_has_image_labels_and_phases_of_the_frame_shape():
    micrograph = simulate_micrograph(make_sample(), np.random.default_rng(0), shape=(128, 160))
    assert (
        micrograph.image.shape
        == micrograph.labels.shape
        == micrograph.phase_map.shape
        == (128, 160)
    )
    assert micrograph.image.dtype == np.float32
    assert 0.0 <= micrograph.image.min() < micrograph.image.max() <= 1.0
    assert micrograph.labels.dtype == np.int32 and micrograph.labels.min() >= 1
    assert set(np.unique(micrograph.labels)) == set(range(1, micrograph.labels.max() + 1))
    assert micrograph.phases == tuple(PHASES)


@pytest.mark.parametrize("particle_size_nm", [12.0, 40.0, 150.0])
def test_truth_label_sizes_follow_particle_size(particle_size_nm):
    means = [
        interior_mean_ecd_nm(m.labels, m.pixel_size_nm)
        for m in (
            simulate_micrograph(make_sample(particle_size_nm), np.random.default_rng(seed))
            for seed in range(3)
        )
    ]
    assert np.mean(means) == pytest.approx(particle_size_nm, rel=0.15)


def test_a_fixed_pixel_size_is_honoured_and_sets_grain_size_in_pixels():
    micrograph = simulate_micrograph(make_sample(50.0), np.random.default_rng(1), pixel_size_nm=2.5)
    assert micrograph.pixel_size_nm == 2.5
    assert interior_mean_ecd_nm(micrograph.labels, 1.0) == pytest.approx(20.0, rel=0.15)


def test_operator_magnification_puts_grains_near_two_dozen_pixels():
    for particle_size_nm in (10.0, 37.0, 230.0):
        grain_px = particle_size_nm / choose_pixel_size_nm(particle_size_nm)
        assert 20.0 < grain_px < 30.0
    micrograph = simulate_micrograph(make_sample(37.0), np.random.default_rng(0))
    assert micrograph.pixel_size_nm == choose_pixel_size_nm(37.0)


def test_phase_areas_follow_phase_fractions_and_rutile_is_brighter_than_anatase():
    micrograph = simulate_micrograph(make_sample(30.0), np.random.default_rng(2))
    area = np.bincount(micrograph.phase_map.ravel(), minlength=4) / micrograph.phase_map.size
    assert area == pytest.approx(list(PHASES.values()), abs=0.08)
    brightness = {
        p: micrograph.image[micrograph.phase_map == i].mean()
        for i, p in enumerate(micrograph.phases)
    }
    assert brightness["rutile"] > brightness["anatase"] > brightness["amorphous"]


def test_grain_boundaries_are_brighter_than_grain_interiors():
    micrograph = simulate_micrograph(
        make_sample(60.0, phase_fractions={"anatase": 1.0}), np.random.default_rng(3)
    )
    labels = micrograph.labels
    boundary = np.zeros(labels.shape, bool)
    boundary[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    boundary[1:, :] |= labels[1:, :] != labels[:-1, :]
    assert micrograph.image[boundary].mean() > micrograph.image[~boundary].mean() + 0.05


def test_same_seed_same_image_and_different_seed_different_image():
    first = simulate_micrograph(make_sample(), np.random.default_rng(5))
    again = simulate_micrograph(make_sample(), np.random.default_rng(5))
    other = simulate_micrograph(make_sample(), np.random.default_rng(6))
    np.testing.assert_array_equal(first.image, again.image)
    np.testing.assert_array_equal(first.labels, again.labels)
    assert not np.array_equal(first.labels, other.labels)


def test_grains_below_one_pixel_raise():
    with pytest.raises(ValueError, match="pixel_size_nm"):
        simulate_micrograph(make_sample(10.0), np.random.default_rng(0), pixel_size_nm=20.0)
