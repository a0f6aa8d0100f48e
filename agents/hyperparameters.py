"""The GP's hyperparameters carried from one proposal to the next, reproducibly.

Fitting the marginal likelihood from BoTorch's starting values takes most of a proposal once
a campaign has a few hundred results, yet one more result barely moves the optimum. So the
hyperparameters are fitted from scratch only on *anchors*: the first ``k`` results, for ``k``
on a fixed grid that grows by a fraction at each step (5, 6, 7, ..., 100, 110, 121, ...).
Each proposal's fit starts from the latest anchor's optimum, which takes a fraction of the
L-BFGS iterations; with ``refit_growth`` the anchor's hyperparameters are used as they are
and nothing is fitted between anchors (the GP still conditions on every result).

Because the anchors depend on the results alone (their order and number), an agent that
ingests the same history proposes the same point whatever it fitted before: a resumed
campaign proposes what the uninterrupted one would have.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from botorch.fit import fit_gpytorch_mll
from gpytorch.mlls import MarginalLogLikelihood

#: Growth of the anchor grid when every proposal fits (``refit_growth`` 0).
ANCHOR_GROWTH = 0.1
#: The first anchor (a GP needs a few results).
FIRST_ANCHOR = 2


def anchor(n: int, growth: float) -> int:
    """The largest anchor ``k <= n`` of the grid ``k' = max(k + 1, ceil(k (1 + growth)))``."""
    k = FIRST_ANCHOR
    while True:
        following = max(k + 1, math.ceil(k * (1.0 + growth)))
        if following > n:
            return min(k, n)
        k = following


class HyperparameterMemory:
    """Fits each proposal's GP from the hyperparameters of the latest anchor.

    Parameters
    ----------
    refit_growth
        0: every proposal fits on all results (warm, from the anchor; anchors every 10 %).
        Above 0: anchors grow by this fraction and their hyperparameters are used unfitted
        in between.
    """

    def __init__(self, refit_growth: float = 0.0) -> None:
        self.refit_growth = refit_growth
        self._anchor = 0
        self._values: dict[str, torch.Tensor] = {}
        self.fits = 0  # marginal-likelihood fits done (anchors and proposals), for tests

    def fit(self, mll_on: Callable[[int], MarginalLogLikelihood], n: int) -> MarginalLogLikelihood:
        """The marginal likelihood of the GP on all ``n`` results, its hyperparameters set;
        ``mll_on(k)`` builds the (unfitted) one on the first ``k`` results."""
        k = anchor(n, self.refit_growth or ANCHOR_GROWTH)
        mll = mll_on(n)
        if set(dict(mll.model.named_parameters())) != set(self._values):
            self._anchor = 0  # another kind of model (e.g. measured noise came or went)
        if k != self._anchor:
            prefix = mll if k == n else mll_on(k)
            self._fit(prefix)
            self._values = {
                name: value.detach().clone() for name, value in prefix.model.named_parameters()
            }
            self._anchor = k
            if k == n:
                return mll
        self._load(mll.model)
        if self.refit_growth:
            mll.eval()
        else:
            self._fit(mll)
        return mll

    def _fit(self, mll: MarginalLogLikelihood) -> None:
        fit_gpytorch_mll(mll)
        self.fits += 1

    def _load(self, model: torch.nn.Module) -> None:
        """Set ``model``'s hyperparameters to the anchor's (same names and shapes: the same
        kind of model on more results)."""
        current = dict(model.named_parameters())
        with torch.no_grad():
            for name, value in self._values.items():
                current[name].copy_(value)
