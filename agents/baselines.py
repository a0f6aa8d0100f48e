"""Model-free baselines: uniform random search and a scrambled Sobol design.

Both are what a Bayesian optimiser must beat on the same budget. They learn nothing from
outcomes; they use the history only to know how many trials exist, which fixes where in their
random stream they continue, so a rebuilt agent continues the same design.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.quasirandom import SobolEngine

from agents.base import HistoryAgent
from agents.protocol import derived_seed


def sobol_unit_points(dim: int, num_points: int, seed: int, skip: int) -> np.ndarray:
    """Points ``skip`` to ``skip + num_points - 1`` of a scrambled Sobol sequence in ``[0, 1]^dim``.

    Returns a ``num_points x dim`` array; the same ``seed`` gives the same sequence.
    """
    engine = SobolEngine(dimension=dim, scramble=True, seed=seed)
    engine.fast_forward(skip)
    return engine.draw(num_points, dtype=torch.float64).numpy()


class RandomAgent(HistoryAgent):
    """Uniform random search: each point is drawn independently, ``x ~ U(box)``.

    Uniform in the unit cube, i.e. log-uniform along log-scale parameters.
    Beliefs in ``report()`` are empty: the agent has no model.
    """

    def _propose(self, num_points: int) -> tuple[np.ndarray, list[dict[str, float]]]:
        rng = np.random.default_rng(derived_seed(self.seed, self.history.n_known))
        return rng.random((num_points, self.space.dim)), [{} for _ in range(num_points)]


class SobolAgent(HistoryAgent):
    """Space filling: successive points of one scrambled Sobol sequence (Owen scrambling).

    The ``k``-th trial the agent knows of (suggested, registered or ingested) takes the ``k``-th
    point of the sequence, so ``n`` suggestions cover the box far more evenly than ``n`` random
    draws. Beliefs in ``report()`` are empty: the agent has no model.
    """

    def _propose(self, num_points: int) -> tuple[np.ndarray, list[dict[str, float]]]:
        unit_points = sobol_unit_points(self.space.dim, num_points, self.seed, self.history.n_known)
        return unit_points, [{} for _ in range(num_points)]
