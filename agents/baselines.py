"""Model-free baselines: uniform random search and a scrambled Sobol design.

Both are what a Bayesian optimiser must beat on the same budget. They learn nothing from
outcomes; they use the history only to know how many trials exist, which fixes where in their
random stream they continue, so a rebuilt agent continues the same design.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.quasirandom import SobolEngine

from agents.base import OVERSAMPLING, HistoryAgent
from agents.protocol import derived_seed


def sobol_unit_points(dim: int, num_points: int, seed: int, skip: int) -> np.ndarray:
    """Points ``skip`` to ``skip + num_points - 1`` of a scrambled Sobol sequence in ``[0, 1]^dim``.

    Returns a ``num_points x dim`` array; the same ``seed`` gives the same sequence.
    """
    engine = SobolEngine(dimension=dim, scramble=True, seed=seed)
    engine.fast_forward(skip)
    return engine.draw(num_points, dtype=torch.float64).numpy()


def sobol_box_points(agent: HistoryAgent, num_points: int) -> np.ndarray:
    """The agent's next ``num_points`` Sobol points in the unit cube that meet linear limits.

    The ``k``-th trial known takes the ``k``-th point of one scrambled sequence that meets the
    linear constraints, so the design keeps the sequence's even coverage inside them (taking
    the first feasible point of each block of points instead lines them up along one axis).
    """
    skip, need = agent.history.n_known, agent.history.n_known + num_points
    drawn = max(2 * need, 64)
    while True:
        unit = sobol_unit_points(agent.space.dim, drawn, agent.seed, 0)
        if not agent.space.linear_constraints:
            return unit[skip:need]
        feasible = unit[agent.space.feasible(agent.space.from_unit(unit))]
        if len(feasible) >= need:
            return feasible[skip:need]
        if drawn >= OVERSAMPLING * need:
            limits = "; ".join(c.describe() for c in agent.space.linear_constraints)
            raise ValueError(
                f"only {len(feasible)} of {drawn} Sobol points meet the linear constraints "
                f"({limits}); they leave too little of the box to sample"
            )
        drawn *= 2


def sobol_pool_rows(agent: HistoryAgent, num_points: int, remaining: np.ndarray) -> np.ndarray:
    """The pool rows nearest to the agent's next ``num_points`` Sobol points (distinct, free)."""
    unit_points = sobol_unit_points(agent.space.dim, num_points, agent.seed, agent.history.n_known)
    pool_unit = agent.space.to_unit(agent.space.candidate_array)
    return nearest_rows(unit_points, pool_unit, remaining)


def nearest_rows(
    unit_points: np.ndarray, pool_unit: np.ndarray, remaining: np.ndarray
) -> np.ndarray:
    """For each of the ``m x d`` ``unit_points`` in turn, the nearest still-free pool row.

    ``pool_unit`` is the whole pool in unit-cube coordinates (``n x d``), ``remaining`` the
    indices of its free rows (at least ``m``). A row is taken once: the result has ``m``
    distinct indices, so a space-filling design stays space filling on the pool.
    """
    free = list(map(int, remaining))
    rows = []
    for point in np.atleast_2d(unit_points):
        distances = np.linalg.norm(pool_unit[free] - point, axis=1)
        rows.append(free.pop(int(np.argmin(distances))))
    return np.array(rows, dtype=int)


class RandomAgent(HistoryAgent):
    """Uniform random search: each point is drawn independently, ``x ~ U(box)``.

    Uniform in the unit cube, i.e. log-uniform along log-scale parameters. On a pool, rows
    drawn uniformly without replacement from those not yet used.
    Beliefs in ``report()`` are empty: the agent has no model.
    """

    def _rng(self) -> np.random.Generator:
        return np.random.default_rng(derived_seed(self.seed, self.history.n_known))

    def _propose(self, num_points: int) -> tuple[np.ndarray, list[dict[str, float]]]:
        rng = self._rng()
        points = self.feasible_unit_points(lambda k: rng.random((k, self.space.dim)), num_points)
        return points, [{} for _ in range(num_points)]

    def _propose_from_pool(
        self, num_points: int, remaining: np.ndarray
    ) -> tuple[np.ndarray, list[dict[str, float]]]:
        rows = self._rng().choice(remaining, size=num_points, replace=False)
        return rows, [{} for _ in range(num_points)]


class SobolAgent(HistoryAgent):
    """Space filling: successive points of one scrambled Sobol sequence (Owen scrambling).

    The ``k``-th trial the agent knows of (suggested, registered or ingested) takes the ``k``-th
    point of the sequence, so ``n`` suggestions cover the box far more evenly than ``n`` random
    draws. Beliefs in ``report()`` are empty: the agent has no model.

    On a pool, each Sobol point takes the nearest row not yet used.
    """

    def _propose(self, num_points: int) -> tuple[np.ndarray, list[dict[str, float]]]:
        return sobol_box_points(self, num_points), [{} for _ in range(num_points)]

    def _propose_from_pool(
        self, num_points: int, remaining: np.ndarray
    ) -> tuple[np.ndarray, list[dict[str, float]]]:
        return sobol_pool_rows(self, num_points, remaining), [{} for _ in range(num_points)]
