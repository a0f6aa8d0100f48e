"""The TiO2 sol-gel model behaves like the chemistry a materials scientist knows."""

from __future__ import annotations

import numpy as np
import pytest

from simulators.tio2 import TIO2_CONDITION_LIMITS, TiO2SolGel

MODEL = TiO2SolGel()


def conditions(temperature_c=550.0, duration_h=2.0, ph=4.0, h2o_ti_ratio=20.0):
    return {
        "temperature_c": temperature_c,
        "duration_h": duration_h,
        "ph": ph,
        "h2o_ti_ratio": h2o_ti_ratio,
    }


def test_phase_fractions_are_non_negative_and_sum_to_one_across_the_space():
    rng = np.random.default_rng(0)
    for _ in range(50):
        point = {
            name: rng.uniform(low, high) for name, (low, high, _) in TIO2_CONDITION_LIMITS.items()
        }
        fractions = MODEL.expected(point).phase_fractions
        assert set(fractions) == {"amorphous", "anatase", "brookite", "rutile"}
        assert min(fractions.values()) >= 0.0
        assert sum(fractions.values()) == pytest.approx(1.0)


def test_low_temperature_gel_stays_amorphous():
    assert MODEL.expected(conditions(temperature_c=250.0)).phase_fractions["amorphous"] > 0.95


def test_rutile_fraction_rises_with_temperature():
    rutile = [
        MODEL.expected(conditions(temperature_c=t)).phase_fractions["rutile"]
        for t in range(500, 1001, 50)
    ]
    assert np.all(np.diff(rutile) >= -1e-9)
    assert rutile[0] < 0.01 and rutile[-1] > 0.99


def test_rutile_fraction_rises_with_calcination_time():
    rutile = [
        MODEL.expected(conditions(temperature_c=650.0, duration_h=t)).phase_fractions["rutile"]
        for t in (0.25, 1.0, 4.0, 16.0)
    ]
    assert np.all(np.diff(rutile) > 0)


def test_anatase_to_rutile_onset_lies_between_550_and_750_c_for_a_two_hour_dwell():
    temperature_c = np.linspace(400.0, 1000.0, 601)
    rutile = MODEL.state_arrays(temperature_c, 2.0, 4.0, 20.0)["fraction_rutile"]
    onset_c = temperature_c[np.argmax(rutile > 0.1)]
    assert 550.0 <= onset_c <= 750.0


def test_anatase_fraction_peaks_at_an_intermediate_temperature():
    anatase = {
        t: MODEL.expected(conditions(temperature_c=t)).phase_fractions["anatase"]
        for t in (300.0, 550.0, 900.0)
    }
    assert anatase[550.0] > 0.8 > max(anatase[300.0], anatase[900.0])


def test_acidic_sols_make_brookite_and_transform_to_rutile_earlier():
    acidic = MODEL.expected(conditions(temperature_c=650.0, ph=2.0)).phase_fractions
    neutral = MODEL.expected(conditions(temperature_c=650.0, ph=7.0)).phase_fractions
    assert acidic["rutile"] > neutral["rutile"] + 0.2
    low_t_acidic = MODEL.expected(conditions(temperature_c=450.0, ph=2.0)).phase_fractions
    low_t_basic = MODEL.expected(conditions(temperature_c=450.0, ph=8.0)).phase_fractions
    assert low_t_acidic["brookite"] > 0.1 > low_t_basic["brookite"]


def test_low_hydrolysis_ratio_lowers_the_rutile_onset():
    dry = MODEL.expected(conditions(temperature_c=650.0, h2o_ti_ratio=2.0)).phase_fractions
    wet = MODEL.expected(conditions(temperature_c=650.0, h2o_ti_ratio=40.0)).phase_fractions
    assert dry["rutile"] > wet["rutile"]


def test_crystallites_grow_with_temperature_and_rutile_is_coarser_than_anatase():
    sizes = [
        MODEL.expected(conditions(temperature_c=t)).crystallite_size_nm for t in (400, 550, 700)
    ]
    anatase = [s["anatase"] for s in sizes]
    assert np.all(np.diff(anatase) > 0)
    assert 5.0 < anatase[0] < anatase[-1] < 45.0
    assert all(s["rutile"] > s["anatase"] for s in sizes)
    hot = MODEL.expected(conditions(temperature_c=900.0, duration_h=8.0)).crystallite_size_nm
    assert 30.0 < hot["rutile"] < 160.0


def test_microstrain_anneals_as_crystallites_grow():
    cool = MODEL.expected(conditions(temperature_c=450.0)).microstrain["anatase"]
    hot = MODEL.expected(conditions(temperature_c=700.0)).microstrain["anatase"]
    assert hot < cool


def test_more_water_gives_smaller_primary_particles():
    sparse = MODEL.expected(conditions(temperature_c=250.0, h2o_ti_ratio=5.0))
    wet = MODEL.expected(conditions(temperature_c=250.0, h2o_ti_ratio=25.0))
    assert wet.particle_size_nm < sparse.particle_size_nm


def test_particle_sizes_stay_in_a_microscope_friendly_range():
    grid = np.meshgrid(
        *(np.linspace(low, high, 9) for low, high, _ in TIO2_CONDITION_LIMITS.values())
    )
    arrays = MODEL.state_arrays(*grid)
    assert 8.0 < arrays["particle_size_nm"].min() < arrays["particle_size_nm"].max() < 250.0
    assert np.all((arrays["particle_size_cv"] > 0.2) & (arrays["particle_size_cv"] < 0.5))


def test_same_seed_gives_the_same_sample_and_different_seeds_differ():
    first = MODEL.synthesize(conditions(), np.random.default_rng(3), "a")
    again = MODEL.synthesize(conditions(), np.random.default_rng(3), "a")
    other = MODEL.synthesize(conditions(), np.random.default_rng(4), "a")
    assert first == again
    assert first.crystallite_size_nm != other.crystallite_size_nm
    assert first.conditions != other.conditions


def test_batch_variation_scatters_around_the_expected_sample():
    expected = MODEL.expected(conditions()).crystallite_size_nm["anatase"]
    rng = np.random.default_rng(1)
    sizes = [
        MODEL.synthesize(conditions(), rng, f"s{i}").crystallite_size_nm["anatase"]
        for i in range(40)
    ]
    assert np.mean(sizes) == pytest.approx(expected, rel=0.05)
    assert 0.002 < np.std(sizes) / expected < 0.1
    exact = TiO2SolGel(batch_variation=0.0, furnace_temperature_std_c=0.0)
    assert (
        exact.synthesize(conditions(), rng, "e").phase_fractions
        == exact.expected(conditions()).phase_fractions
    )


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"temperature_c": 1200.0}, r"temperature_c.*\[200.0, 1000.0\] degC"),
        ({"ph": 0.5}, r"'ph'.*\[1.0, 10.0\]"),
        ({"duration_h": float("nan")}, "duration_h"),
    ],
)
def test_out_of_range_condition_raises_naming_the_knob_and_range(bad, message):
    with pytest.raises(ValueError, match=message):
        MODEL.expected({**conditions(), **bad})


def test_missing_or_unknown_knob_raises():
    missing = conditions()
    del missing["h2o_ti_ratio"]
    with pytest.raises(ValueError, match="h2o_ti_ratio"):
        MODEL.synthesize(missing, np.random.default_rng(0), "x")
    with pytest.raises(ValueError, match="pressure_bar"):
        MODEL.expected({**conditions(), "pressure_bar": 1.0})


def test_furnace_time_covers_ramp_dwell_and_cooling():
    short = MODEL.duration_s(conditions(temperature_c=400.0, duration_h=1.0))
    hot = MODEL.duration_s(conditions(temperature_c=900.0, duration_h=1.0))
    assert 3600.0 < short < hot
    # 5 degC/min from 25 to 900 degC alone is ~2.9 h.
    assert hot > 3600.0 * (1.0 + 2.9)
