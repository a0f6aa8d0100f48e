"""Phase mapping of a composition spread: cluster XRD patterns into phase regions.

The method follows the cluster analysis of combinatorial libraries (Long et al., Rev. Sci.
Instrum. 78, 072217 (2007)) with the composition-graph constraint of CAMEO (Kusne et al.,
Nat. Commun. 11, 5966 (2020)): a phase region is a connected patch of the composition
triangle whose patterns look alike.

1. Background removal per pattern (SNIP, :mod:`sdl.analysis.xrd.background`).
2. Square root of the net counts (stabilises Poisson variance, so strong peaks do not
   swamp the weak peaks of a minor phase), a Gaussian smoothing a little wider than a peak
   (so a small lattice shift across a region changes the pattern little), unit length.
3. Cosine distance between patterns.
4. Average-linkage agglomerative clustering in which only clusters that touch on the
   composition graph (the Delaunay triangulation of the compositions) may merge; it stops
   at a distance threshold, or at a requested number of regions.

The defaults were chosen on simulated spreads (:mod:`simulators.fegapd`), not on the
measured data set: see ``benchmarks/cameo_phase_mapping.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.spatial import Delaunay

from sdl.analysis.xrd.background import estimate_background

#: Average cosine distance above which two neighbouring regions stay apart.
DEFAULT_DISTANCE_THRESHOLD = 0.03

#: SNIP's largest clipping half window, deg 2-theta (peaks here are a few tenths wide).
DEFAULT_BACKGROUND_WIDTH_DEG = 1.5

#: Std of the Gaussian that smooths the net patterns before comparing them, deg 2-theta.
DEFAULT_SMOOTHING_DEG = 0.05


@dataclass(frozen=True, eq=False)
class PhaseMap:
    """Region assignment of every sample, with the evidence behind it.

    Attributes
    ----------
    labels
        Region index per sample, 0..n_regions-1, numbered by region size (largest first).
    distances
        Cosine distance between every pair of processed patterns, ``(n, n)``.
    neighbours
        Composition-graph edges ``(n_edges, 2)`` that merges were allowed along.
    confidence
        Per sample: 1 - (distance to its own region's other members) / (distance to the
        nearest other region), averaged; near 1 clearly inside a region, near 0 or below on
        a boundary (a silhouette-like score the agent can use to sample boundaries).
    """

    labels: np.ndarray
    distances: np.ndarray
    neighbours: np.ndarray
    confidence: np.ndarray

    @property
    def n_regions(self) -> int:
        """Number of phase regions found."""
        return int(self.labels.max()) + 1


def ternary_xy(compositions: np.ndarray) -> np.ndarray:
    """Cartesian coordinates in the composition triangle of ``(n, 3)`` fractions."""
    compositions = np.asarray(compositions, dtype=float)
    if compositions.ndim != 2 or compositions.shape[1] != 3:
        raise ValueError(f"compositions must be (n, 3), got shape {compositions.shape}")
    fractions = compositions / compositions.sum(axis=1, keepdims=True)
    x = fractions[:, 1] + 0.5 * fractions[:, 2]
    y = math.sqrt(3.0) / 2.0 * fractions[:, 2]
    return np.column_stack([x, y])


def composition_graph(compositions: np.ndarray) -> np.ndarray:
    """Edges ``(n_edges, 2)`` of the Delaunay triangulation of the compositions."""
    triangles = Delaunay(ternary_xy(compositions)).simplices
    edges = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [0, 2]]])
    edges = np.sort(edges, axis=1)
    return np.unique(edges, axis=0)


def preprocess_patterns(
    two_theta_deg: np.ndarray,
    patterns: np.ndarray,
    background_width_deg: float = DEFAULT_BACKGROUND_WIDTH_DEG,
    smoothing_deg: float = DEFAULT_SMOOTHING_DEG,
) -> np.ndarray:
    """Background-free, variance-stabilised, smoothed unit vectors, one row per pattern."""
    two_theta_deg = np.asarray(two_theta_deg, dtype=float)
    patterns = np.atleast_2d(np.asarray(patterns, dtype=float))
    if patterns.shape[1] != two_theta_deg.size:
        raise ValueError(
            f"patterns have {patterns.shape[1]} points but two_theta_deg has {two_theta_deg.size}"
        )
    step_deg = float(np.median(np.diff(two_theta_deg)))
    processed = np.empty_like(patterns)
    for row, counts in enumerate(patterns):
        background = estimate_background(
            two_theta_deg, counts, half_window_deg=background_width_deg, smooth_half_window_deg=0.0
        )
        net = np.sqrt(np.clip(counts - background, 0.0, None))
        processed[row] = gaussian_filter1d(net, smoothing_deg / step_deg)
    norms = np.linalg.norm(processed, axis=1, keepdims=True)
    return processed / np.where(norms > 0, norms, 1.0)


def _constrained_average_linkage(
    distances: np.ndarray, edges: np.ndarray, threshold: float, n_regions: int | None
) -> np.ndarray:
    count = len(distances)
    members: dict[int, list[int]] = {i: [i] for i in range(count)}
    # Sum of pairwise distances between clusters, kept for adjacent pairs only.
    linked: dict[tuple[int, int], float] = {
        (int(a), int(b)): float(distances[a, b]) for a, b in edges
    }
    target = n_regions if n_regions is not None else 1
    while len(members) > target and linked:
        (a, b), total = min(
            linked.items(),
            key=lambda item: item[1] / (len(members[item[0][0]]) * len(members[item[0][1]])),
        )
        if n_regions is None and total / (len(members[a]) * len(members[b])) > threshold:
            break
        merged = members.pop(a) + members.pop(b)
        new = max(members, default=-1) + 1 + count
        members[new] = merged
        updated: dict[tuple[int, int], float] = {}
        for (c, d), value in linked.items():
            if {c, d} == {a, b}:
                continue
            if c in (a, b) or d in (a, b):
                other = d if c in (a, b) else c
                key = (min(other, new), max(other, new))
                if key not in updated:
                    updated[key] = float(distances[np.ix_(members[other], merged)].sum())
            else:
                updated[(c, d)] = value
        linked = updated
    labels = np.empty(count, dtype=int)
    ordered = sorted(members.values(), key=len, reverse=True)
    for index, group in enumerate(ordered):
        labels[group] = index
    return labels


def _confidence(distances: np.ndarray, labels: np.ndarray) -> np.ndarray:
    regions = np.unique(labels)
    if len(regions) < 2:
        return np.ones(len(labels))
    mean_to = np.stack([distances[:, labels == r].mean(axis=1) for r in regions], axis=1)
    own = mean_to[np.arange(len(labels)), np.searchsorted(regions, labels)]
    mean_to[np.arange(len(labels)), np.searchsorted(regions, labels)] = np.inf
    nearest_other = mean_to.min(axis=1)
    return 1.0 - own / np.maximum(nearest_other, 1e-12)


def map_phases(
    two_theta_deg: np.ndarray,
    patterns: np.ndarray,
    compositions: np.ndarray,
    *,
    n_regions: int | None = None,
    distance_threshold: float = DEFAULT_DISTANCE_THRESHOLD,
    background_width_deg: float = DEFAULT_BACKGROUND_WIDTH_DEG,
    smoothing_deg: float = DEFAULT_SMOOTHING_DEG,
) -> PhaseMap:
    """Phase regions of a composition spread from its XRD patterns.

    Parameters
    ----------
    two_theta_deg
        The common 2-theta grid, deg.
    patterns
        Counts, one row per sample, ``(n, len(two_theta_deg))``.
    compositions
        ``(n, 3)`` mole fractions of the three elements, one row per sample.
    n_regions
        Stop at this many regions; ``None`` stops when the closest neighbouring regions are
        further apart than ``distance_threshold`` (average cosine distance).
    """
    patterns = np.atleast_2d(np.asarray(patterns, dtype=float))
    compositions = np.asarray(compositions, dtype=float)
    if len(patterns) != len(compositions):
        raise ValueError(
            f"{len(patterns)} patterns but {len(compositions)} compositions; need one each"
        )
    if len(patterns) < 4:
        raise ValueError(f"need at least 4 samples to map phases, got {len(patterns)}")
    if n_regions is not None and not 1 <= n_regions <= len(patterns):
        raise ValueError(f"n_regions must be in [1, {len(patterns)}], got {n_regions}")
    vectors = preprocess_patterns(two_theta_deg, patterns, background_width_deg, smoothing_deg)
    distances = np.clip(1.0 - vectors @ vectors.T, 0.0, 2.0)
    np.fill_diagonal(distances, 0.0)
    edges = composition_graph(compositions)
    labels = _constrained_average_linkage(distances, edges, distance_threshold, n_regions)
    return PhaseMap(
        labels=labels,
        distances=distances,
        neighbours=edges,
        confidence=_confidence(distances, labels),
    )


def _contingency(truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    _, truth_index = np.unique(truth, return_inverse=True)
    _, predicted_index = np.unique(predicted, return_inverse=True)
    table = np.zeros((truth_index.max() + 1, predicted_index.max() + 1))
    np.add.at(table, (truth_index, predicted_index), 1.0)
    return table


def _pairs(n: np.ndarray) -> np.ndarray:
    return n * (n - 1) / 2.0


def adjusted_rand_index(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Hubert-Arabie adjusted Rand index of two labellings (1 identical, ~0 random)."""
    table = _contingency(np.asarray(truth), np.asarray(predicted))
    index = float(_pairs(table).sum())
    rows = float(_pairs(table.sum(axis=1)).sum())
    cols = float(_pairs(table.sum(axis=0)).sum())
    expected = rows * cols / float(_pairs(table.sum()))
    maximum = 0.5 * (rows + cols)
    if maximum == expected:
        return 1.0
    return (index - expected) / (maximum - expected)


def fowlkes_mallows_index(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Fowlkes-Mallows index: geometric mean of pair precision and pair recall."""
    table = _contingency(np.asarray(truth), np.asarray(predicted))
    together = float(_pairs(table).sum())
    rows = float(_pairs(table.sum(axis=1)).sum())
    cols = float(_pairs(table.sum(axis=0)).sum())
    if rows == 0 or cols == 0:
        return 1.0 if rows == cols else 0.0
    return together / math.sqrt(rows * cols)
