"""Search spaces and objectives: validation with useful messages, and the unit-cube transforms."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agents import Objective, Parameter, SearchSpace


@pytest.fixture
def space() -> SearchSpace:
    return SearchSpace(
        (
            Parameter("temperature", 80.0, 250.0, "degC"),
            Parameter("time", 1.0, 100.0, "h", log_scale=True),
        )
    )


def test_parameter_needs_low_below_high():
    with pytest.raises(ValueError, match=r"'temperature'.*\[250, 80\]"):
        Parameter("temperature", 250.0, 80.0, "degC")
    with pytest.raises(ValueError, match="below"):
        Parameter("temperature", 80.0, 80.0, "degC")


def test_parameter_needs_finite_bounds():
    with pytest.raises(ValueError, match="finite"):
        Parameter("ratio", 0.0, math.inf, "")


def test_log_scale_parameter_needs_positive_low():
    with pytest.raises(ValueError, match="log_scale needs low > 0"):
        Parameter("time", 0.0, 10.0, "h", log_scale=True)


def test_id_key_cannot_name_a_parameter():
    with pytest.raises(ValueError, match="reserved"):
        Parameter("_id", 0.0, 1.0, "")


def test_objective_direction_must_be_maximize_or_minimize():
    with pytest.raises(ValueError, match=r"'maximize', 'minimize'.*'max'"):
        Objective("anatase_fraction", "max")


def test_objective_target_is_reached_in_its_direction():
    largest = Objective("anatase_fraction", "maximize", target=0.9)
    smallest = Objective("crystallite_size_nm", "minimize", target=10.0)
    assert largest.reached(0.95) and not largest.reached(0.85)
    assert smallest.reached(8.0) and not smallest.reached(12.0)
    assert not Objective("anatase_fraction", "maximize").reached(1e9)


def test_search_space_rejects_duplicate_names_and_emptiness():
    with pytest.raises(ValueError, match="repeated.*'x'"):
        SearchSpace((Parameter("x", 0, 1, ""), Parameter("x", 0, 2, "")))
    with pytest.raises(ValueError, match="at least one parameter"):
        SearchSpace(())


def test_bounds_are_two_by_d_in_parameter_units(space):
    np.testing.assert_array_equal(space.bounds, [[80.0, 1.0], [250.0, 100.0]])
    assert space.names == ("temperature", "time")


def test_contains_accepts_the_closed_box_only(space):
    assert space.contains({"temperature": 80.0, "time": 100.0})
    assert not space.contains({"temperature": 79.9, "time": 10.0})
    assert not space.contains({"temperature": 100.0})


def test_validate_names_the_parameter_and_its_allowed_range(space):
    with pytest.raises(ValueError, match=r"temperature = 300 .* \[80, 250\] degC"):
        space.validate({"temperature": 300.0, "time": 10.0})
    with pytest.raises(ValueError, match=r"no value for 'time' \(allowed \[1, 100\] h\)"):
        space.validate({"temperature": 100.0})


def test_unit_cube_maps_bounds_to_zero_and_one_and_back(space):
    np.testing.assert_allclose(space.to_unit(space.bounds), [[0.0, 0.0], [1.0, 1.0]])
    values = np.array([[100.0, 3.0], [249.0, 70.0]])
    np.testing.assert_allclose(space.from_unit(space.to_unit(values)), values)


def test_log_scale_puts_the_geometric_mean_at_the_centre(space):
    centre = space.from_unit(np.array([0.5, 0.5]))
    np.testing.assert_allclose(centre, [165.0, 10.0])


def test_from_unit_clips_to_the_bounds(space):
    np.testing.assert_allclose(space.from_unit(np.array([[-0.1, 1.2]])), [[80.0, 100.0]])


def test_points_and_arrays_convert_by_name(space):
    points = [{"time": 2.0, "temperature": 90.0, "_id": "a"}]
    array = space.to_array(points)
    np.testing.assert_array_equal(array, [[90.0, 2.0]])
    assert space.to_points(array) == [{"temperature": 90.0, "time": 2.0}]
