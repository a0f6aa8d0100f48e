"""Derived properties and the feature catalogue the campaign validator relies on."""

from __future__ import annotations

import pytest

from sdl.analysis.features import features_for, xrd_features
from sdl.analysis.properties import photoactive_area_m2_g, specific_surface_area_m2_g


def test_specific_surface_area_of_10_nm_anatase_spheres():
    # 6 / (3.89 g/cm^3 * 10 nm) = 154 m^2/g, the textbook figure for 10 nm anatase.
    assert specific_surface_area_m2_g(10.0, 3.89) == pytest.approx(154.2, rel=1e-3)


def test_photoactive_area_weights_phases_and_propagates_uncertainty():
    pure_anatase, _ = photoactive_area_m2_g({"anatase": 1.0}, {"anatase": 0.0}, 20.0, 0.0)
    pure_rutile, _ = photoactive_area_m2_g({"rutile": 1.0}, {"rutile": 0.0}, 20.0, 0.0)
    amorphous, _ = photoactive_area_m2_g({"amorphous": 1.0}, {"amorphous": 0.0}, 20.0, 0.0)
    assert pure_anatase > pure_rutile > amorphous == 0.0
    value, std = photoactive_area_m2_g({"anatase": 1.0}, {"anatase": 0.0}, 20.0, 2.0)
    assert std == pytest.approx(0.1 * value)


def test_photoactive_area_refuses_a_zero_grain_size():
    with pytest.raises(ValueError, match="grain_size_nm must be > 0"):
        photoactive_area_m2_g({"anatase": 1.0}, {"anatase": 0.0}, 0.0, 0.0)


def test_features_depend_on_the_instruments_chosen():
    phases = ("anatase", "rutile")
    assert "anatase_crystallite_size_nm" in xrd_features(phases)
    assert "amorphous_fraction" in xrd_features(phases)
    assert "photoactive_area_m2_g" not in features_for(["xrd"], phases)
    assert "grain_size_nm" not in features_for(["xrd"], phases)
    assert "photoactive_area_m2_g" in features_for(["xrd", "microscope"], phases)
