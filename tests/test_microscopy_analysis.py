"""Classical grain-size analysis recovers the simulated grains' truth."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sdl.analysis.microscopy.segmentation import (
    analyse_micrograph,
    grain_statistics,
    mean_lineal_intercept,
    phase_area_fractions,
)
from simulators.micrograph import PHASE_BRIGHTNESS, simulate_micrograph
from simulators.sample import SampleState
from simulators.tio2 import TiO2SolGel


def make_sample(particle_size_nm, cv=0.3):
    return SampleState(
        sample_id="s",
        conditions={},
        phase_fractions={"anatase": 0.8, "rutile": 0.2},
        crystallite_size_nm={"anatase": 15.0, "rutile": 40.0},
        particle_size_nm=particle_size_nm,
        particle_size_cv=cv,
    )


@pytest.mark.parametrize(
    "conditions",
    [
        {"temperature_c": 250.0, "duration_h": 1.0, "ph": 4.0, "h2o_ti_ratio": 20.0},
        {"temperature_c": 550.0, "duration_h": 2.0, "ph": 4.0, "h2o_ti_ratio": 20.0},
        {"temperature_c": 750.0, "duration_h": 2.0, "ph": 9.0, "h2o_ti_ratio": 40.0},
        {"temperature_c": 1000.0, "duration_h": 24.0, "ph": 6.0, "h2o_ti_ratio": 60.0},
    ],
)
def test_grain_size_matches_the_truth_across_the_model_range(conditions):
    sample = TiO2SolGel().synthesize(conditions, np.random.default_rng(0), "s")
    for seed in range(2):
        micrograph = simulate_micrograph(sample, np.random.default_rng(seed))
        features = analyse_micrograph(micrograph.image, micrograph.pixel_size_nm)
        truth_nm = grain_statistics(micrograph.labels, micrograph.pixel_size_nm).grain_size_nm
        assert features.grain_size_nm == pytest.approx(truth_nm, rel=0.2)
        assert features.grain_size_cv == pytest.approx(sample.particle_size_cv, abs=0.12)


def test_grain_size_at_a_fixed_magnification_scales_with_particle_size():
    sizes = [
        analyse_micrograph(m.image, m.pixel_size_nm).grain_size_nm
        for m in (
            simulate_micrograph(make_sample(d), np.random.default_rng(1), pixel_size_nm=2.5)
            for d in (30.0, 60.0, 120.0)
        )
    ]
    assert sizes == pytest.approx([30.0, 60.0, 120.0], rel=0.2)


def test_features_are_named_scalars_with_an_uncertainty():
    micrograph = simulate_micrograph(make_sample(40.0), np.random.default_rng(2))
    features = analyse_micrograph(micrograph.image, micrograph.pixel_size_nm)
    scalars = features.as_dict()
    assert list(scalars) == [
        "grain_size_nm",
        "grain_size_nm_std",
        "grain_size_cv",
        "grain_count",
        "grain_intercept_nm",
        "grain_intercept_nm_std",
        "micrograph_implausible",
    ]
    assert scalars["micrograph_implausible"] == 0.0 and features.boundaries == "bright"
    assert all(isinstance(v, float) for v in scalars.values())
    assert features.grain_count > 20
    assert 0.0 < features.grain_size_nm_std < 0.1 * features.grain_size_nm
    assert features.labels.shape == micrograph.image.shape


def test_result_does_not_depend_on_the_intensity_scale():
    micrograph = simulate_micrograph(make_sample(40.0), np.random.default_rng(3))
    grey = analyse_micrograph(micrograph.image, micrograph.pixel_size_nm)
    counts = analyse_micrograph(
        100.0 + 4000.0 * micrograph.image.astype(float), micrograph.pixel_size_nm
    )
    assert counts.grain_size_nm == pytest.approx(grey.grain_size_nm, rel=1e-6)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.full((64, 64), 0.4), "blank"),
        (np.where(np.eye(64) > 0, np.nan, 0.5), "NaN"),
        (np.zeros(64), "2-D"),
    ],
)
def test_unusable_images_raise(image, message):
    with pytest.raises(ValueError, match=message):
        analyse_micrograph(image, 2.0)


def test_non_positive_pixel_size_raises():
    image = np.random.default_rng(0).random((64, 64))
    with pytest.raises(ValueError, match="pixel_size_nm"):
        analyse_micrograph(image, 0.0)


def checkerboard(side_px, squares=8):
    rows, cols = np.indices((side_px * squares, side_px * squares)) // side_px
    return (rows * squares + cols + 1).astype(np.int32)


def test_mean_lineal_intercept_of_square_grains_is_their_side_and_gives_the_astm_number():
    intercept_nm, std_nm = mean_lineal_intercept(checkerboard(10), pixel_size_nm=2.0)
    # 8 squares per line, 7 boundaries: the intercept counts the frame edge as no boundary.
    assert intercept_nm == pytest.approx(20.0 * 8 / 7)
    assert std_nm == pytest.approx(0.0, abs=1e-9)
    micrograph = simulate_micrograph(make_sample(40.0), np.random.default_rng(4))
    features = analyse_micrograph(micrograph.image, micrograph.pixel_size_nm)
    # ASTM E112 table 4: G = 7.0 for a mean intercept of 28.3 um.
    astm = dataclasses.replace(features, intercept_nm=28.3e3)
    assert astm.astm_grain_size_number == pytest.approx(7.0, abs=0.01)


def test_intercept_tracks_the_true_intercept_with_an_honest_uncertainty():
    micrograph = simulate_micrograph(make_sample(40.0), np.random.default_rng(5), shape=(384, 384))
    features = analyse_micrograph(micrograph.image, micrograph.pixel_size_nm)
    truth_nm, _ = mean_lineal_intercept(micrograph.labels, micrograph.pixel_size_nm)
    assert features.intercept_nm == pytest.approx(truth_nm, rel=0.1)
    assert 0.0 < features.intercept_nm_std < 0.1 * features.intercept_nm
    # For equiaxed grains the intercept is ~0.8-0.9 of the equivalent-circle diameter.
    assert 0.7 < features.intercept_nm / features.grain_size_nm < 1.0


def test_size_distribution_is_returned_with_edge_weights():
    micrograph = simulate_micrograph(make_sample(40.0, cv=0.5), np.random.default_rng(6))
    features = analyse_micrograph(micrograph.image, micrograph.pixel_size_nm)
    assert len(features.diameters_nm) == features.grain_count == len(features.weights)
    assert features.weights.sum() == pytest.approx(1.0)
    assert np.sum(features.weights * features.diameters_nm) == pytest.approx(features.grain_size_nm)


def test_phase_area_fractions_from_contrast_match_the_true_areas_within_their_uncertainty():
    sample = SampleState(
        sample_id="s",
        conditions={},
        phase_fractions={"amorphous": 0.3, "rutile": 0.7},
        crystallite_size_nm={"rutile": 40.0},
        particle_size_nm=40.0,
        particle_size_cv=0.3,
    )
    micrograph = simulate_micrograph(sample, np.random.default_rng(7), shape=(320, 320))
    levels = {p: PHASE_BRIGHTNESS[p] for p in micrograph.phases}
    fractions, std, grain_phase = phase_area_fractions(micrograph.image, micrograph.labels, levels)
    true_area = np.bincount(micrograph.phase_map.ravel()) / micrograph.phase_map.size
    for index, phase in enumerate(micrograph.phases):
        assert 0.0 < std[phase] < 0.05
        assert fractions[phase] == pytest.approx(true_area[index], abs=max(3 * std[phase], 0.02))
    assert np.mean(grain_phase[micrograph.labels - 1] == micrograph.phase_map) > 0.95
    features = analyse_micrograph(
        micrograph.image, micrograph.pixel_size_nm, phase_grey_levels=levels
    )
    scalars = features.as_dict()
    assert scalars["rutile_area_fraction"] == pytest.approx(
        true_area[1], abs=3 * scalars["rutile_area_fraction_std"]
    )


def test_a_custom_segmenter_is_used():
    micrograph = simulate_micrograph(make_sample(40.0), np.random.default_rng(8))
    truth = analyse_micrograph(
        micrograph.image, micrograph.pixel_size_nm, segmenter=lambda image: micrograph.labels
    )
    np.testing.assert_array_equal(truth.labels, micrograph.labels)


def _unevenly_lit(image):
    """The image with its illumination falling off by 60 % across the frame."""
    rows, cols = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    return image * (1.0 - 0.6 * (rows + cols) / (rows.max() + cols.max()))


@pytest.mark.parametrize("particle_size_nm", [30.0, 60.0, 120.0])
def test_dark_boundaries_and_uneven_light_give_the_grains_of_the_bright_image(particle_size_nm):
    micrograph = simulate_micrograph(make_sample(particle_size_nm), np.random.default_rng(3))
    bright = analyse_micrograph(micrograph.image, micrograph.pixel_size_nm)
    dark = analyse_micrograph(
        _unevenly_lit(micrograph.image.max() - micrograph.image), micrograph.pixel_size_nm
    )
    truth_nm = grain_statistics(micrograph.labels, micrograph.pixel_size_nm).grain_size_nm
    assert (bright.boundaries, dark.boundaries) == ("bright", "dark")
    assert dark.grain_size_nm == pytest.approx(truth_nm, rel=0.2)
    assert dark.grain_size_nm == pytest.approx(bright.grain_size_nm, rel=0.1)
    assert not dark.warnings


def test_noise_is_named_an_implausible_segmentation(caplog):
    noise = np.random.default_rng(0).normal(size=(256, 256))
    features = analyse_micrograph(noise, 10.0)
    assert features.warnings and features.as_dict()["micrograph_implausible"] == 1.0
    assert "implausible micrograph segmentation" in caplog.text


def test_one_grain_filling_the_frame_is_named_implausible():
    image = np.zeros((64, 64))
    image[:, 31:33] = 1.0  # one boundary: two grains, both touching the frame
    features = analyse_micrograph(image + 0.01 * np.random.default_rng(1).random((64, 64)), 5.0)
    assert any("wholly inside the frame" in warning for warning in features.warnings)
