"""The Fe-Ga-Pd-like spread: a thermodynamic phase diagram, its XRD and magnetisation."""

from __future__ import annotations

import numpy as np
import pytest

from physics.diffraction import CU_KALPHA1_ANGSTROM
from simulators.fegapd import (
    PHASE_NAMES,
    FeGaPdSpread,
    SpreadDiffractometer,
    default_phase_diagram,
    region_labels,
    simulate_spread,
    spread_compositions,
)


@pytest.fixture(scope="module")
def spread():
    return FeGaPdSpread()


def test_lever_rule_the_phases_add_up_to_the_overall_composition():
    diagram = default_phase_diagram()
    for composition in spread_compositions(0.05):
        equilibrium = diagram.equilibrium(composition)
        present = equilibrium.fractions > 0
        assert equilibrium.fractions.sum() == pytest.approx(1.0)
        balance = equilibrium.fractions[present] @ equilibrium.compositions[present]
        np.testing.assert_allclose(balance, composition, atol=1e-9)


def test_iron_corner_is_single_phase_bcc_and_the_spread_has_many_regions(spread):
    assert spread.truth(np.array([0.9, 0.06, 0.04])).region == ("bcc",)
    regions = {spread.truth(c).region for c in spread_compositions(0.02)}
    assert len(regions) >= 8
    assert any(len(r) == 1 for r in regions) and any(len(r) == 2 for r in regions)
    assert any(len(r) == 3 for r in regions)  # Gibbs: at most three phases in a ternary


def test_a_single_bcc_spot_diffracts_at_the_bragg_angle_of_its_lattice(spread):
    sample = spread.truth(np.array([0.9, 0.06, 0.04]))
    pattern = SpreadDiffractometer(line_counts=500.0).ideal_pattern(sample)
    two_theta = SpreadDiffractometer().two_theta_deg
    a_angstrom = 2.866 * sample.lattice_scale["bcc"]
    bragg_110 = 2.0 * np.degrees(np.arcsin(CU_KALPHA1_ANGSTROM / (2 * a_angstrom / np.sqrt(2))))
    # K-alpha2 (0.11 deg higher, half as strong) pulls the maximum up by a few hundredths.
    assert two_theta[np.argmax(pattern)] == pytest.approx(bragg_110, abs=0.08)


def test_dilute_iron_magnetises_less(spread):
    iron_rich = spread.truth(np.array([0.86, 0.08, 0.06])).polarisation_t
    diluted = spread.truth(np.array([0.45, 0.3, 0.25])).polarisation_t
    assert 1.5 < iron_rich < 2.2
    assert diluted < iron_rich - 0.4


def test_conditions_outside_the_spread_raise(spread):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="x_fe >= 0.4"):
        spread.synthesize({"x_ga": 0.4, "x_pd": 0.3}, rng, "s")
    with pytest.raises(ValueError, match="x_ga"):
        spread.synthesize({"x_ga": 0.7, "x_pd": 0.0}, rng, "s")


def test_the_spread_synthesises_a_sample_state_within_its_limits():
    sample = FeGaPdSpread().synthesize({"x_ga": 0.1, "x_pd": 0.1}, np.random.default_rng(1), "s1")
    assert sum(sample.phase_fractions.values()) == pytest.approx(1.0)
    assert set(sample.phase_fractions) <= set(PHASE_NAMES)


def test_simulated_spread_is_seeded_and_labels_its_regions():
    first = simulate_spread(np.random.default_rng(3), n_spots=20)
    again = simulate_spread(np.random.default_rng(3), n_spots=20)
    np.testing.assert_array_equal(first.patterns, again.patterns)
    assert first.patterns.shape == (20, first.two_theta_deg.size)
    np.testing.assert_allclose(first.compositions.sum(axis=1), 1.0)
    assert (first.compositions[:, 0] >= 0.4).all()
    labels = region_labels(first.regions)
    assert labels[0] == 0 and len(set(labels)) == len(set(first.regions))
