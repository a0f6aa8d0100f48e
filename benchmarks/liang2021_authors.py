"""The authors' own loop of Liang et al. 2021, as a peer in ``liang2021.py``.

Their "STANDARD_v3" notebooks (PV-Lab/Benchmarking), rerun on a pool as written: the objective
signed for minimisation and standardised over the pool, one model fitted to the rows tried so
far, and the free row with the best acquisition value tried next (ties to the last such row, as
their ``max_ac <= ac_value`` loop does). Two recipes:

* ``authors-gp``: GPy ``Matern52(ARD=False) + Bias`` on the raw inputs, ``noise_var=0.01``,
  ``optimize_restarts(10, robust=True, optimizer="bfgs", max_iters=100)`` at every step, the
  kernel carried from step to step; acquisition ``std - mean`` (their "LCB11").
* ``authors-rf``: scikit-learn ``RandomForestRegressor(n_estimators=50)``, mean and standard
  deviation over its trees; acquisition ``75 std - 25 mean`` (their "LCB7525").

One departure: every campaign starts from a fresh kernel. The notebooks hand one GPy kernel
object to every campaign, so each campaign after the first starts from the previous one's
last fit, to the whole pool (docs/agents.md measures both). Needs GPy and scikit-learn
(``pip install -e ".[bench]"``, which also installs Ax).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np

RECIPES = ("authors-gp", "authors-rf")


def authors_rows(
    X: np.ndarray,
    y_to_minimise: np.ndarray,
    first_rows: Sequence[int],
    budget: int,
    recipe: str,
    seed: int,
    finished: Callable[[list[int]], bool],
) -> list[int]:
    """Rows tried, in order, by one of :data:`RECIPES` from ``first_rows`` on."""
    y = (y_to_minimise - y_to_minimise.mean()) / y_to_minimise.std()
    # GPy draws its restarts from numpy's global generator.
    np.random.seed(seed)
    kernel = _kernel(X.shape[1]) if recipe == "authors-gp" else None
    tried = [int(row) for row in first_rows]
    while len(tried) < budget and not finished(tried):
        free = np.setdiff1d(np.arange(len(y)), tried)
        if recipe == "authors-gp":
            mean, std = _gp(kernel, X[tried], y[tried], X[free])
            score = std - mean
        else:
            mean, std = _forest(X[tried], y[tried], X[free], seed + len(tried))
            score = 75.0 * std - 25.0 * mean
        tried.append(int(free[len(free) - 1 - int(np.argmax(score[::-1]))]))
    return tried


def _kernel(dim: int) -> object:
    import GPy

    return GPy.kern.Matern52(dim, variance=1.0, ARD=False) + GPy.kern.Bias(dim, variance=1.0)


def _gp(kernel: object, X: np.ndarray, y: np.ndarray, X_new: np.ndarray) -> tuple:
    import GPy

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = GPy.models.GPRegression(X, y[:, None], kernel=kernel, noise_var=0.01)
        model.optimize_restarts(
            num_restarts=10, robust=True, optimizer="bfgs", max_iters=100, verbose=False
        )
        mean, variance = model.predict(X_new)
    return mean[:, 0], np.sqrt(np.maximum(variance[:, 0], 0.0))


def _forest(X: np.ndarray, y: np.ndarray, X_new: np.ndarray, seed: int) -> tuple:
    from sklearn.ensemble import RandomForestRegressor

    forest = RandomForestRegressor(n_estimators=50, random_state=seed).fit(X, y)
    trees = np.array([tree.predict(X_new) for tree in forest.estimators_])
    return trees.mean(axis=0), trees.std(axis=0)
