"""Classical grain-size analysis recovers the simulated grains' truth."""

from __future__ import annotations

import numpy as np
import pytest

from sdl.analysis.microscopy import analyse_micrograph, grain_statistics
from simulators.micrograph import simulate_micrograph
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
    assert list(scalars) == ["grain_size_nm", "grain_size_nm_std", "grain_size_cv", "grain_count"]
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
