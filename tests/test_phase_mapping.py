"""Phase mapping: XRD patterns clustered into connected regions of the composition triangle."""

from __future__ import annotations

import numpy as np
import pytest

from sdl.analysis.xrd.phase_mapping import (
    adjusted_rand_index,
    composition_graph,
    fowlkes_mallows_index,
    map_phases,
)
from simulators.fegapd import region_labels, simulate_spread


def peak(two_theta, centre, width=0.15, height=200.0):
    return height * np.exp(-0.5 * ((two_theta - centre) / width) ** 2)


def two_region_spread(rng):
    """Spots left of x_ga = 0.25 show one phase, right of it another; Poisson counts."""
    x_ga, x_pd = np.meshgrid(np.linspace(0.05, 0.45, 9), np.linspace(0.05, 0.3, 6))
    compositions = np.column_stack([1 - x_ga.ravel() - x_pd.ravel(), x_ga.ravel(), x_pd.ravel()])
    two_theta = np.linspace(37.0, 48.0, 551)
    left = compositions[:, 1] < 0.25
    right_phase = peak(two_theta, 41.2) + peak(two_theta, 47.5, 0.15, 90)
    expected = 10.0 + np.where(left[:, None], peak(two_theta, 44.6), right_phase)
    return two_theta, rng.poisson(expected).astype(float), compositions, left.astype(int)


def test_two_phase_regions_with_distinct_peaks_are_recovered_exactly():
    two_theta, patterns, compositions, truth = two_region_spread(np.random.default_rng(0))
    phase_map = map_phases(two_theta, patterns, compositions)
    assert phase_map.n_regions == 2
    assert adjusted_rand_index(truth, phase_map.labels) == pytest.approx(1.0)
    assert phase_map.confidence.min() > 0.5


def test_regions_are_connected_on_the_composition_graph():
    two_theta, patterns, compositions, _ = two_region_spread(np.random.default_rng(1))
    phase_map = map_phases(two_theta, patterns, compositions, n_regions=2)
    for region in range(phase_map.n_regions):
        members = set(np.flatnonzero(phase_map.labels == region))
        reached, frontier = {min(members)}, [min(members)]
        while frontier:
            node = frontier.pop()
            for a, b in phase_map.neighbours:
                for here, there in ((a, b), (b, a)):
                    if here == node and there in members and there not in reached:
                        reached.add(there)
                        frontier.append(there)
        assert reached == members


def test_simulated_fegapd_spread_is_mapped_far_better_than_chance():
    spread = simulate_spread(np.random.default_rng(7), n_spots=120)
    truth = region_labels(spread.regions)
    phase_map = map_phases(spread.two_theta_deg, spread.patterns, spread.compositions)
    assert adjusted_rand_index(truth, phase_map.labels) > 0.2
    shuffled = np.random.default_rng(0).permutation(phase_map.labels)
    assert abs(adjusted_rand_index(truth, shuffled)) < 0.1


def test_rand_and_fowlkes_mallows_indices_on_known_cases():
    truth = np.array([0, 0, 0, 1, 1, 1])
    assert adjusted_rand_index(truth, [5, 5, 5, 2, 2, 2]) == pytest.approx(1.0)
    assert fowlkes_mallows_index(truth, [5, 5, 5, 2, 2, 2]) == pytest.approx(1.0)
    # One point moved: 4 pairs together in both; 6 pairs together in truth, 7 predicted.
    predicted = np.array([0, 0, 1, 1, 1, 1])
    assert fowlkes_mallows_index(truth, predicted) == pytest.approx(4 / np.sqrt(6 * 7))
    assert adjusted_rand_index(truth, predicted) == pytest.approx(
        (4 - 6 * 7 / 15) / (0.5 * (6 + 7) - 6 * 7 / 15)
    )


def test_composition_graph_links_neighbours_only():
    compositions = np.array([[0.8, 0.1, 0.1], [0.7, 0.2, 0.1], [0.7, 0.1, 0.2], [0.6, 0.2, 0.2]])
    edges = {tuple(e) for e in composition_graph(compositions)}
    assert (0, 1) in edges and (0, 2) in edges and (1, 3) in edges and (2, 3) in edges


def test_mismatched_inputs_raise():
    two_theta, patterns, compositions, _ = two_region_spread(np.random.default_rng(2))
    with pytest.raises(ValueError, match="compositions"):
        map_phases(two_theta, patterns, compositions[:-1])
    with pytest.raises(ValueError, match="points"):
        map_phases(two_theta[:-1], patterns, compositions)
