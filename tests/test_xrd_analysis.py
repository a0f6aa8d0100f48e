"""Whole-pattern XRD analysis: phase fractions and crystallite sizes of simulated samples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from physics.phases import TIO2_POLYMORPHS
from sdl.analysis.features import XRD_FIT_QUALITY, xrd_features
from sdl.analysis.xrd.whole_pattern import analyse_pattern
from simulators.sample import SampleState
from simulators.xrd import PowderDiffractometer

DIFFRACTOMETER = PowderDiffractometer()
PHASES = TIO2_POLYMORPHS


def measure(phase_fractions, crystallite_size_nm, seed=0, instrument=DIFFRACTOMETER, **kwargs):
    sample = SampleState("s", {}, phase_fractions, crystallite_size_nm, **kwargs)
    return instrument.two_theta_deg, instrument.measure(sample, np.random.default_rng(seed))


@pytest.mark.parametrize(
    ("phase_fractions", "crystallite_size_nm"),
    [
        ({"anatase": 0.5, "rutile": 0.3, "amorphous": 0.2}, {"anatase": 15.0, "rutile": 60.0}),
        (
            {"anatase": 0.4, "brookite": 0.2, "rutile": 0.2, "amorphous": 0.2},
            {"anatase": 10.0, "brookite": 12.0, "rutile": 40.0},
        ),
        ({"rutile": 0.9, "anatase": 0.1}, {"anatase": 40.0, "rutile": 80.0}),
        ({"anatase": 0.6, "brookite": 0.4}, {"anatase": 25.0, "brookite": 12.0}),
    ],
)
def test_mixture_fractions_and_crystallite_sizes_are_recovered(
    phase_fractions, crystallite_size_nm
):
    strain = {p: 2.4e-3 * 10.0 / d + 2e-4 for p, d in crystallite_size_nm.items()}
    features = analyse_pattern(*measure(phase_fractions, crystallite_size_nm, microstrain=strain))
    for phase in (*PHASES, "amorphous"):
        assert features.phase_fractions[phase] == pytest.approx(
            phase_fractions.get(phase, 0.0), abs=0.05
        )
    for phase, size_nm in crystallite_size_nm.items():
        assert features.crystallite_size_nm[phase] == pytest.approx(size_nm, rel=0.2)


def test_amorphous_rich_sample_is_recognised():
    features = analyse_pattern(*measure({"amorphous": 0.8, "anatase": 0.2}, {"anatase": 8.0}))
    assert features.phase_fractions["amorphous"] == pytest.approx(0.8, abs=0.05)
    assert features.phase_fractions["anatase"] == pytest.approx(0.2, abs=0.05)


def test_absent_phases_have_no_fraction_and_no_size():
    features = analyse_pattern(*measure({"anatase": 1.0}, {"anatase": 20.0}))
    for phase in ("brookite", "rutile"):
        assert features.phase_fractions[phase] < 0.01
        assert math.isnan(features.crystallite_size_nm[phase])
        assert math.isnan(features.crystallite_size_nm_std[phase])


def test_features_are_named_as_the_pipeline_expects_and_fractions_sum_to_one():
    features = analyse_pattern(*measure({"anatase": 0.7, "amorphous": 0.3}, {"anatase": 20.0}))
    flat = features.as_dict()
    names = set(xrd_features(PHASES))
    without_std = {"rwp", *XRD_FIT_QUALITY} | {n for n in names if n.endswith("_detection_limit")}
    expected = names | {f"{n}_std" for n in names - without_std}
    assert set(flat) == expected
    fractions = [flat[f"{p}_fraction"] for p in ("amorphous", *PHASES)]
    assert all(0.0 <= f <= 1.0 for f in fractions)
    assert sum(fractions) == pytest.approx(1.0)
    assert all(isinstance(value, float) for value in flat.values())


def test_reported_uncertainties_match_the_scatter_between_repeats():
    fractions = {"anatase": 0.5, "rutile": 0.3, "amorphous": 0.2}
    sizes = {"anatase": 15.0, "rutile": 60.0}
    fits = [analyse_pattern(*measure(fractions, sizes, seed=seed)) for seed in range(6)]
    scatter = np.std([f.phase_fractions["anatase"] for f in fits], ddof=1)
    reported = np.mean([f.phase_fractions_std["anatase"] for f in fits])
    assert 0.4 < reported / scatter < 2.5
    size_scatter = np.std([f.crystallite_size_nm["rutile"] for f in fits], ddof=1)
    size_reported = np.mean([f.crystallite_size_nm_std["rutile"] for f in fits])
    assert 0.4 < size_reported / size_scatter < 2.5


def test_fit_reaches_the_counting_noise():
    two_theta, counts = measure({"anatase": 0.6, "rutile": 0.4}, {"anatase": 30.0, "rutile": 50.0})
    features = analyse_pattern(two_theta, counts)
    reduced_chi2 = np.mean((counts - features.fitted_pattern) ** 2 / np.maximum(counts, 1.0))
    assert reduced_chi2 == pytest.approx(1.0, abs=0.15)
    assert features.reduced_chi2 == pytest.approx(reduced_chi2, rel=0.02)
    assert features.rwp < 0.2
    assert np.all(features.background <= features.fitted_pattern + 1e-9)


def test_goniometer_zero_shift_is_refined():
    shifted = PowderDiffractometer(zero_shift_deg=0.15)
    two_theta, counts = measure({"anatase": 1.0}, {"anatase": 30.0}, instrument=shifted)
    features = analyse_pattern(two_theta, counts)
    assert features.zero_shift_deg == pytest.approx(0.15, abs=0.02)
    assert 0 < features.zero_shift_deg_std < 0.02
    assert abs(features.zero_shift_deg - 0.15) < 4 * features.zero_shift_deg_std + 0.005
    assert features.crystallite_size_nm["anatase"] == pytest.approx(30.0, rel=0.1)


def test_scale_of_the_counts_does_not_change_the_fractions():
    two_theta, counts = measure({"anatase": 0.5, "rutile": 0.5}, {"anatase": 20.0, "rutile": 40.0})
    raw = analyse_pattern(two_theta, counts)
    scaled = analyse_pattern(two_theta, 10.0 * counts)
    for phase, fraction in raw.phase_fractions.items():
        assert scaled.phase_fractions[phase] == pytest.approx(fraction, abs=0.01)


def test_fit_without_amorphous_reports_it_as_zero():
    two_theta, counts = measure({"anatase": 0.5, "rutile": 0.5}, {"anatase": 20.0, "rutile": 40.0})
    features = analyse_pattern(
        two_theta, counts, phases=("anatase", "rutile"), include_amorphous=False
    )
    assert features.phase_fractions["amorphous"] == 0.0
    assert features.phase_fractions["anatase"] == pytest.approx(0.5, abs=0.05)


TWO_THETA = DIFFRACTOMETER.two_theta_deg
COUNTS = np.full(TWO_THETA.size, 100.0)


@pytest.mark.parametrize(
    ("two_theta", "counts", "kwargs", "message"),
    [
        (TWO_THETA, COUNTS[:-1], {}, "2048 points but counts has 2047"),
        (TWO_THETA[:0], COUNTS[:0], {}, "at least"),
        (TWO_THETA, np.where(TWO_THETA > 40, np.nan, COUNTS), {}, "finite"),
        (TWO_THETA, np.zeros_like(COUNTS), {}, "all zero"),
        (TWO_THETA[::-1], COUNTS, {}, "increase in equal steps"),
        (TWO_THETA, COUNTS, {"phases": ("quartz",)}, "unknown phase"),
        (TWO_THETA, COUNTS, {"phases": (), "include_amorphous": False}, "nothing to fit"),
    ],
)
def test_bad_pattern_is_refused_with_the_reason(two_theta, counts, kwargs, message):
    with pytest.raises(ValueError, match=message):
        analyse_pattern(two_theta, counts, **kwargs)
