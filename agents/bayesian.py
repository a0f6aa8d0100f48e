"""Bayesian optimisation on BoTorch: a Gaussian process and noisy expected improvement."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from botorch.acquisition.logei import qLogNoisyExpectedImprovement
from botorch.exceptions.errors import ModelFittingError
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.transforms.outcome import Standardize
from botorch.models.utils.gpytorch_modules import get_covar_module_with_dim_scaled_prior
from botorch.optim import optimize_acqf
from botorch.sampling.normal import SobolQMCNormalSampler
from gpytorch.mlls import ExactMarginalLogLikelihood
from linear_operator.utils.errors import NotPSDError

from agents.base import HistoryAgent
from agents.baselines import sobol_unit_points
from agents.protocol import derived_seed
from agents.space import Objective, SearchSpace

logger = logging.getLogger(__name__)

#: Errors that mean "the model could not be built or used"; the agent then explores instead.
MODEL_ERRORS = (ModelFittingError, NotPSDError, torch.linalg.LinAlgError)


class BayesianOptimizationAgent(HistoryAgent):
    r"""Bayesian optimisation of one objective with a GP and batch noisy expected improvement.

    Model. Inputs are the search space mapped to the unit cube by ``SearchSpace.to_unit``
    (log-scale parameters in log), so ``x`` is ``n x d`` in ``[0, 1]^d``; outputs are
    ``y = s * outcome`` with ``s = +1`` to maximise, ``-1`` to minimise, standardised to zero
    mean and unit variance (``Standardize``). A ``SingleTaskGP`` in double precision,

    .. math::

        f \sim \mathcal{GP}(c, k), \quad
        k(x, x') = \mathrm{Matern}_{5/2}\Big(\sqrt{\textstyle\sum_i (x_i - x'_i)^2 / \ell_i^2}\Big),
        \quad y = f(x) + \varepsilon,\ \varepsilon \sim \mathcal{N}(0, \sigma^2),

    with one lengthscale per parameter (ARD) under BoTorch's dimension-scaled prior
    ``log ell_i ~ N(sqrt(2) + log(d) / 2, 3)`` and its log-normal noise prior, hyperparameters
    by maximising the marginal likelihood (``fit_gpytorch_mll``). These priors keep a GP
    sensible with the handful of points a laboratory campaign has.

    Acquisition. ``qLogNoisyExpectedImprovement`` of a ``batch_shape x q x d`` candidate set
    ``X`` given the observed ``X_baseline`` (``n x d``) and the pending ``X_pending`` (``m x d``):

    .. math::

        \alpha(X) = \log \mathbb{E}\big[\max(\max_{x \in X} f(x)
                    - \max_{x \in X_\mathrm{baseline} \cup X_\mathrm{pending}} f(x),\ 0)\big],

    a Monte Carlo estimate over joint posterior samples of ``f`` (quasi-random normal base
    samples), smoothed so that it has useful gradients where the improvement is tiny. It takes
    the observation noise into account (no noisy "best value" is trusted) and, through
    ``X_pending``, the trials already proposed but not yet measured, so asynchronous or batch
    proposals do not repeat them. Failed trials join ``X_pending`` too: they are never learned
    from, and the acquisition gains nothing by proposing them again.
    ``optimize_acqf`` chooses the ``q`` points greedily in ``[0, 1]^d``: point ``j``
    maximises ``alpha`` with points ``1..j-1`` added to ``X_pending``, each from
    ``num_restarts`` gradient-based starts picked among ``raw_samples`` quasi-random candidates.
    Greedy batches are nearly as good as joint ``q x d`` optimisation and every point of the
    batch is worth measuring on its own.

    The first ``n_initial`` trials come from a scrambled Sobol design (as ``SobolAgent``). If
    the GP cannot be fitted or used, the proposal falls back to Sobol with a logged warning.
    Every proposal is seeded from ``seed`` and the size of the history, so the same history
    gives the same proposal.

    Parameters
    ----------
    space
        Where to search.
    objectives
        Exactly one objective (a list of one, like the other agents take).
    seed
        Non-negative seed.
    n_initial
        Observations to collect from the Sobol design before the GP takes over (at least 2).
    max_evaluations
        Budget for ``should_stop`` (None: none).
    num_restarts, raw_samples
        Starts of the gradient-based acquisition optimiser, and the quasi-random candidates
        they are chosen from.
    mc_samples
        Quasi-Monte-Carlo posterior samples that estimate the acquisition.

    Notes
    -----
    ``report()`` gives, for each point of the latest model-based batch,
    ``acquisition_value`` (log expected improvement of that point alone, given the pending
    trials, in log units of the objective), and ``{objective}_predicted_mean`` and
    ``{objective}_predicted_std`` (posterior of ``f``, in the objective's units). Points from
    the Sobol design have empty beliefs.
    """

    def __init__(
        self,
        space: SearchSpace,
        objectives: Sequence[Objective],
        seed: int = 0,
        n_initial: int = 5,
        max_evaluations: int | None = None,
        *,
        num_restarts: int = 10,
        raw_samples: int = 512,
        mc_samples: int = 128,
    ) -> None:
        super().__init__(space, objectives, seed=seed, max_evaluations=max_evaluations)
        if len(self.objectives) != 1:
            names = [o.name for o in self.objectives]
            raise ValueError(
                f"BayesianOptimizationAgent optimises exactly one objective, got {len(names)}: "
                f"{names}; multi-objective optimisation is not supported yet"
            )
        for name, value, least in (
            ("n_initial", n_initial, 2),
            ("num_restarts", num_restarts, 1),
            ("raw_samples", raw_samples, 1),
            ("mc_samples", mc_samples, 1),
        ):
            if value < least:
                raise ValueError(f"{name} must be at least {least}, got {value}")
        if raw_samples < num_restarts:
            raise ValueError(
                f"raw_samples ({raw_samples}) must be at least num_restarts ({num_restarts})"
            )
        self.objective = self.objectives[0]
        self.n_initial = n_initial
        self.num_restarts = num_restarts
        self.raw_samples = raw_samples
        self.mc_samples = mc_samples

    def _propose(self, num_points: int) -> tuple[np.ndarray, list[dict[str, float]]]:
        if len(self.history.observations) < self.n_initial:
            return self._sobol(num_points)
        proposal_seed = derived_seed(self.seed, self.history.n_known)
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(proposal_seed)
                return self._model_based(num_points, proposal_seed)
        except MODEL_ERRORS as error:
            logger.warning(
                "Gaussian process failed with %d observations (%s: %s); proposing %d Sobol "
                "point(s) instead",
                len(self.history.observations),
                type(error).__name__,
                error,
                num_points,
            )
            return self._sobol(num_points)

    def _sobol(self, num_points: int) -> tuple[np.ndarray, list[dict[str, float]]]:
        unit_points = sobol_unit_points(self.space.dim, num_points, self.seed, self.history.n_known)
        return unit_points, [{} for _ in range(num_points)]

    def _model_based(
        self, num_points: int, proposal_seed: int
    ) -> tuple[np.ndarray, list[dict[str, float]]]:
        """Fit the GP to the observations and maximise qLogNEI for ``num_points`` points."""
        train_X, train_Y = self._training_data()
        model = SingleTaskGP(
            train_X,
            train_Y,
            covar_module=get_covar_module_with_dim_scaled_prior(
                ard_num_dims=self.space.dim, use_rbf_kernel=False
            ),
            outcome_transform=Standardize(m=1),
        )
        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        acquisition = qLogNoisyExpectedImprovement(
            model,
            X_baseline=train_X,
            sampler=SobolQMCNormalSampler(torch.Size([self.mc_samples]), seed=proposal_seed),
            X_pending=self._pending_unit(),
        )
        unit_cube = torch.stack([torch.zeros(self.space.dim), torch.ones(self.space.dim)]).double()
        candidates, _ = optimize_acqf(
            acquisition,
            bounds=unit_cube,
            q=num_points,
            num_restarts=self.num_restarts,
            raw_samples=self.raw_samples,
            options={"seed": proposal_seed},
            sequential=True,
        )
        return candidates.detach().clamp(0.0, 1.0).numpy(), self._beliefs_at(
            model, acquisition, candidates
        )

    def _training_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``n x d`` unit-cube inputs and ``n x 1`` outcomes, sign-flipped to be maximised."""
        observations = list(self.history.observations.values())
        unit_X = self.space.to_unit(self.space.to_array([obs.parameters for obs in observations]))
        outcomes = [
            [self.objective.sign * obs.outcomes[self.objective.name]] for obs in observations
        ]
        return torch.from_numpy(unit_X), torch.tensor(outcomes, dtype=torch.float64)

    def _pending_unit(self) -> torch.Tensor | None:
        """``m x d`` unit-cube locations of pending and failed trials (None if there are none)."""
        locations = [
            *self.history.pending.values(),
            *(p for p in self.history.failures.values() if p is not None),
        ]
        if not locations:
            return None
        return torch.from_numpy(self.space.to_unit(self.space.to_array(locations)))

    def _beliefs_at(
        self,
        model: SingleTaskGP,
        acquisition: qLogNoisyExpectedImprovement,
        candidates: torch.Tensor,
    ) -> list[dict[str, float]]:
        """Per candidate (``q x d``): its own log-EI and the posterior of the objective there."""
        name = self.objective.name
        with torch.no_grad():
            acquisition_values = acquisition(candidates.unsqueeze(-2))
            posterior = model.posterior(candidates)
            means = self.objective.sign * posterior.mean.squeeze(-1)
            stds = posterior.variance.clamp_min(0.0).sqrt().squeeze(-1)
        return [
            {
                "acquisition_value": float(value),
                f"{name}_predicted_mean": float(mean),
                f"{name}_predicted_std": float(std),
            }
            for value, mean, std in zip(acquisition_values, means, stds, strict=True)
        ]
