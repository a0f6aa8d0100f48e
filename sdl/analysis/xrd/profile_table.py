"""A phase's profile at any crystallite size and zero shift, interpolated from a table.

Rendering a phase's hundred-odd pseudo-Voigt lines on every point of a pattern is what a
whole-pattern fit spent nine tenths of its time on, once per trial size and zero shift. A
profile is smooth in log(size), and a zero shift only translates it, so a
:class:`ProfileTable` renders it once per node of a log-size grid, on a 2-theta grid four
times finer than the pattern's, and gives the profile at any (size, zero shift) by 4-point
Lagrange interpolation in both, together with its derivatives in both (an analytic Jacobian
for the fit). Nodes are rendered when first needed and kept for the process: a campaign's
patterns share one grid, and a fit visits a few nodes around each phase's size.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np

from sdl.analysis.xrd.instrument import ProfileShape, render_humps, render_phase
from sdl.analysis.xrd.reference import ReferencePhase

#: Points of the table's 2-theta grid per step of the pattern's. With 4-point interpolation
#: the error is below 2e-3 of the height of the narrowest line (instrument-limited, FWHM two
#: pattern steps), and far below it for lines broadened by size.
OVERSAMPLING = 4

#: Spacing of the log(size) nodes: interpolation errors are below 1e-5 of the profile.
LOG_SIZE_NODE_STEP = 0.1

#: Crystallite sizes a table reaches, nm.
SIZE_RANGE_NM = (0.5, 5000.0)

#: The largest zero shift a table reaches, deg: beyond it the goniometer needs realigning.
MAX_ZERO_SHIFT_DEG = 1.0

#: Tables one process keeps (one per phase, grid and instrument).
_TABLES_KEPT = 64

#: A profile on a 2-theta grid for a crystallite size in nm (ignored by unsized components).
Renderer = Callable[[np.ndarray, float], np.ndarray]


def lagrange_weights(t: float) -> tuple[np.ndarray, np.ndarray]:
    """Weights of the 4-point Lagrange interpolant at nodes -1, 0, 1, 2 for ``0 <= t < 1``,
    and their derivatives in ``t``."""
    weights = np.array(
        [
            -t * (t - 1) * (t - 2) / 6,
            (t + 1) * (t - 1) * (t - 2) / 2,
            -(t + 1) * t * (t - 2) / 2,
            (t + 1) * t * (t - 1) / 6,
        ]
    )
    derivatives = np.array(
        [
            -(3 * t * t - 6 * t + 2) / 6,
            (3 * t * t - 4 * t - 1) / 2,
            -(3 * t * t - 2 * t - 2) / 2,
            (3 * t * t - 1) / 6,
        ]
    )
    return weights, derivatives


class ProfileTable:
    """One component's profile on one pattern grid, for any size and zero shift.

    Parameters
    ----------
    render
        The component's profile on a 2-theta grid at a crystallite size, nm.
    two_theta_min_deg, step_deg, n_points
        The pattern's grid: ``n_points`` steps of ``step_deg`` from ``two_theta_min_deg``.
    sized
        Whether the profile depends on the size (an amorphous hump does not).
    """

    def __init__(
        self,
        render: Renderer,
        two_theta_min_deg: float,
        step_deg: float,
        n_points: int,
        *,
        sized: bool = True,
    ) -> None:
        self._render = render
        self._n_points = n_points
        self._fine_step_deg = step_deg / OVERSAMPLING
        # Points beyond the largest shift leave room for the stencils (one step's worth).
        self._pad = math.ceil(MAX_ZERO_SHIFT_DEG / self._fine_step_deg) + OVERSAMPLING
        n_fine = (n_points - 1) * OVERSAMPLING + 1 + 2 * self._pad
        self._fine_grid = two_theta_min_deg + self._fine_step_deg * (np.arange(n_fine) - self._pad)
        # Node i holds log size (i + first node) * LOG_SIZE_NODE_STEP; one node if unsized.
        low, high = (math.log(size) / LOG_SIZE_NODE_STEP for size in SIZE_RANGE_NM)
        self._first_node = math.floor(low) - 1 if sized else 0
        n_nodes = math.ceil(high) + 3 - self._first_node if sized else 1
        self._nodes = np.empty((n_nodes, n_fine))
        self._rendered = np.zeros(n_nodes, bool)

    def _rendered_nodes(self, first: int, count: int) -> np.ndarray:
        """Nodes ``first`` to ``first + count - 1`` (table rows), rendered where not yet."""
        if first < 0 or first + count > len(self._nodes):
            low, high = SIZE_RANGE_NM
            raise ValueError(f"crystallite size must be within {low} to {high} nm")
        for row in range(first, first + count):
            if not self._rendered[row]:
                size_nm = math.exp((row + self._first_node) * LOG_SIZE_NODE_STEP)
                self._nodes[row] = self._render(self._fine_grid, size_nm)
                self._rendered[row] = True
        return self._nodes[first : first + count]

    def evaluate(
        self, log_size: float, zero_shift_deg: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The profile on the pattern's grid and its derivatives in log(size) and zero shift.

        Raises
        ------
        ValueError
            If the zero shift is beyond :data:`MAX_ZERO_SHIFT_DEG` or the size outside
            :data:`SIZE_RANGE_NM`.
        """
        if not abs(zero_shift_deg) <= MAX_ZERO_SHIFT_DEG:
            raise ValueError(
                f"zero_shift_deg must be within +-{MAX_ZERO_SHIFT_DEG} deg, got {zero_shift_deg}"
            )
        if len(self._nodes) == 1:
            nodes = self._rendered_nodes(0, 1)
            size_weights, size_derivatives = np.ones(1), np.zeros(1)
        else:
            position = log_size / LOG_SIZE_NODE_STEP - self._first_node
            first = math.floor(position)
            nodes = self._rendered_nodes(first - 1, 4)
            size_weights, size_derivatives = lagrange_weights(position - first)
            size_derivatives /= LOG_SIZE_NODE_STEP
        # Pattern point k sits at fine index pad + OVERSAMPLING k - zero_shift / fine step, so
        # its 4-point stencil is 4 consecutive fine points: row k of a (points, 4) view.
        position = self._pad - zero_shift_deg / self._fine_step_deg
        first = math.floor(position)
        shift_weights, shift_derivatives = lagrange_weights(position - first)
        shift_derivatives /= -self._fine_step_deg
        window = nodes[:, first - 1 : first - 1 + OVERSAMPLING * self._n_points]
        # The profile and its size derivative on the fine points, then each point's stencil.
        fine = np.stack([size_weights, size_derivatives]) @ window
        stencils = fine.reshape(2, self._n_points, OVERSAMPLING)[..., :4]
        sampled = stencils @ np.stack([shift_weights, shift_derivatives], axis=-1)
        return sampled[0, :, 0], sampled[1, :, 0], sampled[0, :, 1]


#: An amorphous phase's humps: ``(centre Q, FWHM Q, area)`` each.
Humps = tuple[tuple[float, float, float], ...]


@lru_cache(maxsize=_TABLES_KEPT)
def profile_table(
    component: ReferencePhase | Humps,
    shape: ProfileShape,
    two_theta_min_deg: float,
    step_deg: float,
    n_points: int,
) -> ProfileTable:
    """The process's table of a crystalline phase or an amorphous phase's humps, on this
    grid and instrument."""
    grid = (two_theta_min_deg, step_deg, n_points)
    if isinstance(component, ReferencePhase):
        phase = component
        return ProfileTable(lambda x, size_nm: render_phase(phase, x, size_nm, shape=shape), *grid)
    humps = component
    return ProfileTable(lambda x, _: render_humps(humps, x, shape=shape), *grid, sized=False)
