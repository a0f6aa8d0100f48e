"""Bayesian optimisation on BoTorch: a Gaussian process and noisy expected improvement."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from botorch.acquisition import AcquisitionFunction
from botorch.acquisition.logei import qLogExpectedImprovement, qLogNoisyExpectedImprovement
from botorch.acquisition.monte_carlo import qUpperConfidenceBound
from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
from botorch.acquisition.multi_objective.objective import IdentityMCMultiOutputObjective
from botorch.acquisition.objective import GenericMCObjective
from botorch.exceptions.errors import ModelFittingError
from botorch.models import MixedSingleTaskGP, ModelListGP, SingleTaskGP
from botorch.models.transforms.outcome import (
    Bilog,
    ChainedOutcomeTransform,
    OutcomeTransform,
    Standardize,
)
from botorch.models.utils.gpytorch_modules import (
    get_covar_module_with_dim_scaled_prior,
    get_gaussian_likelihood_with_gamma_prior,
    get_gaussian_likelihood_with_lognormal_prior,
    get_matern_kernel_with_gamma_prior,
)
from botorch.optim import optimize_acqf
from botorch.optim.optimize_mixed import optimize_acqf_mixed_alternating
from botorch.sampling.normal import SobolQMCNormalSampler
from botorch.utils.multi_objective.hypervolume import infer_reference_point
from botorch.utils.multi_objective.pareto import is_non_dominated
from gpytorch.mlls import ExactMarginalLogLikelihood, SumMarginalLogLikelihood
from linear_operator.utils.errors import NotPSDError

from agents.base import HistoryAgent
from agents.baselines import sobol_box_points, sobol_pool_rows
from agents.hyperparameters import HyperparameterMemory
from agents.options import BayesianOptions, checked_options
from agents.protocol import derived_seed
from agents.space import Objective, OutcomeConstraint, SearchSpace

logger = logging.getLogger(__name__)

#: Candidates per evaluation of the acquisition on a pool (bounds the memory of one call).
POOL_CHUNK = 1024

#: Errors that mean "the model could not be built or used"; the agent then explores instead.
MODEL_ERRORS = (ModelFittingError, NotPSDError, torch.linalg.LinAlgError)

#: Posterior samples for the reported mean and std where no closed form exists (``bilog``).
BELIEF_SAMPLES = 256

#: Defaults of every option, from the one model that declares and checks them.
DEFAULTS = BayesianOptions()


class BayesianOptimizationAgent(HistoryAgent):
    r"""Bayesian optimisation with GPs: noisy expected improvement, or hypervolume improvement.

    Model. Inputs are the search space mapped to the unit cube by ``SearchSpace.to_unit``
    (log-scale parameters in log), so ``x`` is ``n x d`` in ``[0, 1]^d``; outputs are
    ``y = s * outcome`` with ``s = +1`` to maximise, ``-1`` to minimise, standardised to zero
    mean and unit variance (``Standardize``). A ``SingleTaskGP`` in double precision,

    .. math::

        f \sim \mathcal{GP}(c, k), \quad
        k(x, x') = \mathrm{Matern}_{5/2}\Big(\sqrt{\textstyle\sum_i (x_i - x'_i)^2 / \ell_i^2}\Big),
        \quad y = f(x) + \varepsilon,\ \varepsilon \sim \mathcal{N}(0, \sigma^2),

    with one lengthscale per parameter (ARD) under BoTorch's dimension-scaled prior
    ``log ell_i ~ N(sqrt(2) + log(d) / 2, 3)`` and its log-normal noise prior
    ``log sigma^2 ~ N(-4, 1)`` (standardised units), hyperparameters by maximising the marginal
    likelihood (``fit_gpytorch_mll``). These priors keep a GP sensible with the handful of
    points a laboratory campaign has. The noise prior expects nearly noiseless results: with
    ten or twenty results that scatter a lot, the GP then explains the scatter by short
    lengthscales; ``noise_prior="gamma"`` lets it be noise instead (``docs/agents.md``, "A
    noise prior for measured data", measures both).

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

    Pool. In a pool-based space (``SearchSpace.candidates``) the acquisition is evaluated on
    every remaining candidate row instead (``n_c x 1 x d``), the best row is taken, joins
    ``X_pending``, and so on for ``q`` rows; failed rows are simply never offered again.
    With one objective and no outcome constraints the default acquisition on a pool is the
    upper confidence bound ``qUpperConfidenceBound`` (``acquisition="qucb"``),

    .. math::

        \alpha(X) = \mathbb{E}\big[\max_{x \in X} \mu(x)
                    + \sqrt{\beta \pi / 2}\,|f(x) - \mu(x)|\big]
                  \approx \mu(x) + \sqrt{\beta}\,\sigma(x) \quad (q = 1),

    with ``beta = ucb_beta = 2`` (the mean plus about 1.4 posterior standard deviations,
    between the Liang et al. authors' LCB weight of 1 and GPyOpt's default of 2). A pool is
    searched for *many* good rows among finitely many: once a very good row is known,
    expected improvement over it is tiny everywhere and its ranking of the rest follows the
    posterior's tails, whereas UCB keeps ranking rows by an optimistic estimate of their
    value; it needs no incumbent either. Pending and earlier batch rows enter through
    ``X_pending`` (joint samples), as for qLogNEI. On the Liang et al. (2021) pools this
    raised the acceleration factor on most data sets and was level on synthetic pools
    (``benchmarks/synthetic_pools.py``; ``docs/agents.md``, "Acquisition on a pool").

    Constraints. Each outcome constraint's outcome gets its own GP (as above, in a
    ``ModelListGP`` with the objective's) and multiplies the acquisition's samples by a smooth
    feasibility indicator of ``outcome <= bound`` (or ``>=``), so proposals stay where the
    limit is likely met. Linear input constraints go to the optimiser as inequalities in the
    unit cube (on a pool, rows that break them are skipped).

    Several objectives. ``qLogNoisyExpectedHypervolumeImprovement``: the expected (log)
    growth of the hypervolume dominated by the Pareto front of the noiseless objectives,
    above a reference point (``reference_point``, else BoTorch's ``infer_reference_point``:
    the observed front's nadir less 10 % of its range). ``get_best_points`` returns the Pareto
    set of the feasible observations.

    Mixed spaces. Discrete parameters (``Parameter.values``, ``Parameter.integer``) and
    categorical ones are optimised by ``optimize_acqf_mixed_alternating`` (alternating
    discrete neighbourhood search and continuous L-BFGS); with a categorical parameter the
    GP is a ``MixedSingleTaskGP`` (a categorical kernel on those columns).

    The first ``n_initial`` trials come from a scrambled Sobol design (as ``SobolAgent``). If
    the GP cannot be fitted or used, the proposal falls back to Sobol with a logged warning.
    Every proposal is seeded from ``seed`` and the size of the history, so the same history
    gives the same proposal.

    Parameters
    ----------
    space
        Where to search.
    objectives
        One objective, or several for a Pareto front.
    seed
        Non-negative seed.
    n_initial
        Observations to collect from the Sobol design before the GP takes over (at least 2;
        default 5 in a box, 2 on a pool, whose rows already mark out where to look).
    max_evaluations
        Budget for ``should_stop`` (None: none).
    outcome_constraints
        Limits on measured outcomes (``"rutile_fraction <= 0.05"``); see ``HistoryAgent``.
    reference_point
        Multi-objective only: ``{objective: value}``, the worst value of each objective still
        worth anything; the hypervolume is measured above it.
    num_restarts, raw_samples
        Starts of the gradient-based acquisition optimiser, and the quasi-random candidates
        they are chosen from.
    mc_samples
        Quasi-Monte-Carlo posterior samples that estimate the acquisition.
    acquisition
        One objective: ``"qlognei"`` (noisy expected improvement), ``"qlogei"`` (expected
        improvement over the best posterior mean at an observed point) or ``"qucb"`` (upper
        confidence bound); None (default): ``"qucb"`` on a pool with one objective and no
        outcome constraints, else ``"qlognei"``. Several objectives or outcome constraints
        need ``"qlognei"`` (which then means qLogNEHVI / constrained qLogNEI).
    ucb_beta
        ``beta`` of ``"qucb"``: the bound is about ``mean + sqrt(beta) * std`` (default 2).
    outcome_transform
        ``"standardize"`` (default): zero mean, unit variance. ``"bilog"``: standardise, then
        ``sign(y) log(1 + |y|)``, then standardise again; compresses outliers beyond about
        one standard deviation so that a few extreme results do not set the GP's scale
        (reported beliefs are then moments of posterior samples).
    kernel
        ``"matern52"`` (default): ARD Matern 5/2. ``"rbf"``: ARD squared exponential, the
        smoother kernel of BoTorch's own default GP, with the ``"dim_scaled"`` prior only
        (``docs/agents.md``, "A smoother kernel", measures both).
        Not used by the categorical ``MixedSingleTaskGP``.
    kernel_prior
        ``"dim_scaled"`` (default): BoTorch's dimension-scaled log-normal lengthscale prior.
        ``"gamma"``: BoTorch's earlier ``Gamma(3, 6)`` lengthscale prior with a scaled kernel
        (``Gamma(2, 0.15)`` output scale). Not used by the categorical ``MixedSingleTaskGP``.
    noise_prior
        Prior of the observation noise variance (standardised units): ``"lognormal"``
        (default), BoTorch's ``LogNormal(-4, 1)``, best for nearly noiseless results;
        ``"gamma"``, BoTorch's earlier ``Gamma(1.1, 0.05)``, broad, for results with much
        scatter (on the Liang et al. P3HT pool it raised the AF from 2.98 to 3.33).
    noise
        ``"inferred"`` (default): one noise level per outcome, fitted with the other
        hyperparameters. ``"measured"``: each result's own reported uncertainty
        (``<outcome>_std``, as the analysis records it) is its noise variance, a fixed and
        heteroskedastic noise model; where a result reported none, the fitted noise is used
        for that proposal instead (logged).
    torch_threads
        Torch's intra-op threads while a proposal is computed (the caller's setting is
        restored afterwards); None leaves torch's setting alone. The default, 1, is the fast
        choice: a campaign's GP (a few hundred observations, ``d`` hyperparameters) is many
        small tensor operations that gain nothing from a second thread, and when the cores
        are busy with other work every parallel region waits for a descheduled thread, which
        made a proposal 5 to 20 times slower on a loaded 2-core machine. One thread also makes
        the proposal independent of the machine's core count (no reduction-order effects).

    Notes
    -----
    ``report()`` gives, for each point of the latest model-based batch,
    ``acquisition_value`` (log expected improvement, or log hypervolume improvement, of that
    point alone given the pending trials), and ``{outcome}_predicted_mean`` and
    ``{outcome}_predicted_std`` for every modelled outcome (objectives and constrained
    outcomes; posterior of ``f``, in the outcome's units). Points from the Sobol design have
    empty beliefs.
    """

    def __init__(
        self,
        space: SearchSpace,
        objectives: Sequence[Objective],
        seed: int = 0,
        n_initial: int | None = DEFAULTS.n_initial,
        max_evaluations: int | None = None,
        *,
        outcome_constraints: Sequence[OutcomeConstraint | str | Mapping[str, Any]] = (),
        reference_point: Mapping[str, float] | None = None,
        num_restarts: int = DEFAULTS.num_restarts,
        raw_samples: int = DEFAULTS.raw_samples,
        mc_samples: int = DEFAULTS.mc_samples,
        torch_threads: int | None = DEFAULTS.torch_threads,
        acquisition: str | None = DEFAULTS.acquisition,
        ucb_beta: float = DEFAULTS.ucb_beta,
        outcome_transform: str = DEFAULTS.outcome_transform,
        kernel: str = DEFAULTS.kernel,
        kernel_prior: str = DEFAULTS.kernel_prior,
        noise_prior: str = DEFAULTS.noise_prior,
        noise: str = DEFAULTS.noise,
        refit_growth: float = DEFAULTS.refit_growth,
    ) -> None:
        super().__init__(
            space,
            objectives,
            seed=seed,
            max_evaluations=max_evaluations,
            outcome_constraints=outcome_constraints,
        )
        if reference_point is not None:
            missing = sorted({o.name for o in self.objectives} - set(reference_point))
            if missing or len(self.objectives) < 2:
                raise ValueError(
                    "reference_point needs a value for every objective of a multi-objective "
                    f"campaign; missing {missing}, objectives {[o.name for o in self.objectives]}"
                )
        self.reference_point = None if reference_point is None else dict(reference_point)
        options = checked_options(
            BayesianOptions,
            {
                "n_initial": n_initial,
                "num_restarts": num_restarts,
                "raw_samples": raw_samples,
                "mc_samples": mc_samples,
                "torch_threads": torch_threads,
                "acquisition": acquisition,
                "ucb_beta": ucb_beta,
                "outcome_transform": outcome_transform,
                "kernel": kernel,
                "kernel_prior": kernel_prior,
                "noise_prior": noise_prior,
                "noise": noise,
                "refit_growth": refit_growth,
            },
        )
        options.check_problem(len(self.objectives), len(self.history.outcome_constraints))
        single = len(self.objectives) == 1 and not self.history.outcome_constraints
        self.acquisition: str = options.acquisition or (
            "qucb" if space.is_pool and single else "qlognei"
        )
        self.n_initial: int = options.n_initial or (2 if space.is_pool else 5)
        self.kernel = options.kernel
        self.kernel_prior = options.kernel_prior
        self.noise_prior = options.noise_prior
        self.noise = options.noise
        self.ucb_beta = options.ucb_beta
        self.outcome_transform = options.outcome_transform
        self.num_restarts = options.num_restarts
        self.raw_samples = options.raw_samples
        self.mc_samples = options.mc_samples
        self.torch_threads = options.torch_threads
        self.hyperparameters = HyperparameterMemory(options.refit_growth)

    def _propose(self, num_points: int) -> tuple[np.ndarray, list[dict[str, float]]]:
        return self._model_or_sobol(
            num_points,
            lambda seed: self._model_based(num_points, seed),
            lambda: self._sobol(num_points),
        )

    def _propose_from_pool(
        self, num_points: int, remaining: np.ndarray
    ) -> tuple[np.ndarray, list[dict[str, float]]]:
        return self._model_or_sobol(
            num_points,
            lambda seed: self._model_based_on_pool(num_points, remaining, seed),
            lambda: (sobol_pool_rows(self, num_points, remaining), [{}] * num_points),
        )

    def _model_or_sobol(
        self,
        num_points: int,
        model_based: Callable[[int], tuple[np.ndarray, list[dict[str, float]]]],
        sobol: Callable[[], tuple[np.ndarray, list[dict[str, float]]]],
    ) -> tuple[np.ndarray, list[dict[str, float]]]:
        """The model's proposal once ``n_initial`` points are observed, else (or on error) Sobol."""
        if len(self.history.observations) < self.n_initial:
            return sobol()
        proposal_seed = derived_seed(self.seed, self.history.n_known)
        try:
            with torch.random.fork_rng(devices=[]), torch_threads_limited(self.torch_threads):
                torch.manual_seed(proposal_seed)
                return model_based(proposal_seed)
        except MODEL_ERRORS as error:
            logger.warning(
                "Gaussian process failed with %d observations (%s: %s); proposing %d Sobol "
                "point(s) instead",
                len(self.history.observations),
                type(error).__name__,
                error,
                num_points,
            )
            return sobol()

    def _sobol(self, num_points: int) -> tuple[np.ndarray, list[dict[str, float]]]:
        return sobol_box_points(self, num_points), [{} for _ in range(num_points)]

    def _fitted_acquisition(
        self, proposal_seed: int, X_pending: torch.Tensor | None
    ) -> tuple[SingleTaskGP | ModelListGP, AcquisitionFunction]:
        """The GP fitted to the observations and the acquisition over it, given ``X_pending``.

        One output per recorded outcome (objectives, then constrained outcomes), each
        sign-flipped so that larger is better for objectives. One objective: qLogNEI; several:
        qLogNEHVI. Outcome constraints enter both as feasibility weights on the samples.
        """
        train_X, train_Y = self._training_data()
        train_Yvar = self._measured_variances()
        categorical = [i for i, p in enumerate(self.space.parameters) if p.categorical]

        def mll_on(k: int) -> ExactMarginalLogLikelihood | SumMarginalLogLikelihood:
            """The (unfitted) marginal likelihood of the GP on the first ``k`` results."""
            outputs = [
                self._gp(
                    train_X[:k],
                    y[:k, None],
                    categorical,
                    None if train_Yvar is None else train_Yvar[:k, column, None],
                )
                for column, y in enumerate(train_Y.unbind(-1))
            ]
            if len(outputs) == 1:
                return ExactMarginalLogLikelihood(outputs[0].likelihood, outputs[0])
            joint = ModelListGP(*outputs)
            return SumMarginalLogLikelihood(joint.likelihood, joint)

        model: SingleTaskGP | ModelListGP = self.hyperparameters.fit(mll_on, len(train_X)).model
        sampler = SobolQMCNormalSampler(torch.Size([self.mc_samples]), seed=proposal_seed)
        n_objectives = len(self.objectives)
        # Each outcome has one column (two constraints on it, a window, share it); an
        # objective's column is sign-flipped to be maximised, its constraint is not.
        names, signs = self.history.outcome_names, {o.name: o.sign for o in self.objectives}
        constraints = [
            _constraint_callable(names.index(c.name), c, signs.get(c.name, 1.0))
            for c in self.history.outcome_constraints
        ]
        if n_objectives == 1 and self.acquisition == "qucb":
            return model, qUpperConfidenceBound(
                model, beta=self.ucb_beta, sampler=sampler, X_pending=X_pending
            )
        if n_objectives == 1 and self.acquisition == "qlogei":
            with torch.no_grad():
                best_f = _moments(model.posterior(train_X))[0].max()
            return model, qLogExpectedImprovement(
                model, best_f=best_f, sampler=sampler, X_pending=X_pending
            )
        if n_objectives == 1:
            return model, qLogNoisyExpectedImprovement(
                model,
                X_baseline=train_X,
                sampler=sampler,
                X_pending=X_pending,
                # With constraints the model has several outputs and the objective is the first.
                objective=GenericMCObjective(_first_output) if constraints else None,
                constraints=constraints or None,
            )
        return model, qLogNoisyExpectedHypervolumeImprovement(
            model,
            ref_point=self._reference_point(train_Y[:, :n_objectives]).tolist(),
            X_baseline=train_X,
            sampler=sampler,
            X_pending=X_pending,
            objective=IdentityMCMultiOutputObjective(outcomes=list(range(n_objectives))),
            constraints=constraints or None,
            prune_baseline=True,
        )

    def _gp(
        self,
        train_X: torch.Tensor,
        train_y: torch.Tensor,
        categorical: list[int],
        train_yvar: torch.Tensor | None = None,
    ) -> SingleTaskGP:
        """One outcome's GP (``train_y`` is ``n x 1``): ARD Matern 5/2 or RBF, or mixed if
        categorical; with ``train_yvar`` (``n x 1``) the noise of each result is fixed."""
        transform: OutcomeTransform
        if self.outcome_transform == "bilog":
            transform = ChainedOutcomeTransform(
                standardize=Standardize(m=1), bilog=Bilog(), restandardize=Standardize(m=1)
            )
        else:
            transform = Standardize(m=1)
        likelihood = None
        if train_yvar is None:
            likelihood = (
                get_gaussian_likelihood_with_gamma_prior()
                if self.noise_prior == "gamma"
                else get_gaussian_likelihood_with_lognormal_prior()
            )
        if categorical:
            return MixedSingleTaskGP(
                train_X,
                train_y,
                cat_dims=categorical,
                train_Yvar=train_yvar,
                likelihood=likelihood,
                outcome_transform=transform,
            )
        if self.kernel_prior == "gamma":
            covar_module = get_matern_kernel_with_gamma_prior(ard_num_dims=self.space.dim)
        else:
            covar_module = get_covar_module_with_dim_scaled_prior(
                ard_num_dims=self.space.dim, use_rbf_kernel=self.kernel == "rbf"
            )
        return SingleTaskGP(
            train_X,
            train_y,
            train_Yvar=train_yvar,
            covar_module=covar_module,
            likelihood=likelihood,
            outcome_transform=transform,
        )

    def _reference_point(self, objective_Y: torch.Tensor) -> torch.Tensor:
        """Hypervolume reference (in maximised units): given, or just below the observed worst.

        Without a given ``reference_point``, BoTorch's ``infer_reference_point`` on the
        observed Pareto front: its nadir less 10 % of the front's range in every objective.
        """
        if self.reference_point is not None:
            return torch.tensor(
                [o.sign * self.reference_point[o.name] for o in self.objectives],
                dtype=torch.float64,
            )
        return infer_reference_point(objective_Y[is_non_dominated(objective_Y)])

    def _model_based_on_pool(
        self, num_points: int, remaining: np.ndarray, proposal_seed: int
    ) -> tuple[np.ndarray, list[dict[str, float]]]:
        """Rows of the pool that maximise qLogNEI, chosen greedily one after another.

        The acquisition is evaluated on every remaining candidate; the best joins
        ``X_pending`` before the next is chosen, so a batch does not crowd one spot.
        """
        pending = self._unit_of(list(self.history.pending.values()))
        model, acquisition = self._fitted_acquisition(proposal_seed, pending)
        choices = torch.from_numpy(self.space.to_unit(self.space.candidate_array[remaining]))
        free = torch.ones(len(remaining), dtype=torch.bool)
        chosen: list[int] = []
        with torch.no_grad():
            for _ in range(num_points):
                values = torch.cat(
                    [acquisition(batch.unsqueeze(-2)) for batch in choices.split(POOL_CHUNK)]
                )
                best = int(torch.argmax(values.masked_fill(~free, -math.inf)))
                chosen.append(best)
                free[best] = False
                acquisition.set_X_pending(_stacked(pending, choices[chosen]))
        acquisition.set_X_pending(pending)
        return remaining[chosen], self._beliefs_at(model, acquisition, choices[chosen])

    def _model_based(
        self, num_points: int, proposal_seed: int
    ) -> tuple[np.ndarray, list[dict[str, float]]]:
        """Fit the GP to the observations and maximise qLogNEI for ``num_points`` points."""
        model, acquisition = self._fitted_acquisition(proposal_seed, self._pending_unit())
        unit_cube = torch.stack([torch.zeros(self.space.dim), torch.ones(self.space.dim)]).double()
        levels = {
            column: self.space.level_coordinates(column).tolist()
            for column in self.space.discrete_levels()
        }
        common: dict[str, Any] = {
            "bounds": unit_cube,
            "q": num_points,
            "num_restarts": self.num_restarts,
            "raw_samples": self.raw_samples,
            "sequential": True,
            "inequality_constraints": self._unit_inequalities(),
        }
        if levels:
            # BoTorch wants each discrete dimension's bounds to be its first and last level.
            for column, coordinates in levels.items():
                unit_cube[:, column] = torch.tensor(
                    [min(coordinates), max(coordinates)], dtype=torch.double
                )
            categorical = {c: v for c, v in levels.items() if self.space.parameters[c].categorical}
            candidates, _ = optimize_acqf_mixed_alternating(
                acquisition,
                discrete_dims={c: v for c, v in levels.items() if c not in categorical} or None,
                cat_dims=categorical or None,
                **common,
            )
        else:
            candidates, _ = optimize_acqf(acquisition, options={"seed": proposal_seed}, **common)
        return candidates.detach().clamp(0.0, 1.0).numpy(), self._beliefs_at(
            model, acquisition, candidates
        )

    def _unit_inequalities(self) -> list[tuple[torch.Tensor, torch.Tensor, float]] | None:
        """The linear constraints in unit-cube coordinates, as BoTorch's ``sum a x >= b``.

        With ``x = low + u (high - low)``, ``sum_i a_i x_i <= b`` becomes
        ``sum_i -a_i (high_i - low_i) u_i >= -(b - sum_i a_i low_i)``.
        """
        if not self.space.linear_constraints:
            return None
        low, high = self.space.bounds
        inequalities = []
        for constraint in self.space.linear_constraints:
            columns = [self.space.names.index(name) for name, _ in constraint.coefficients]
            a = np.array([c for _, c in constraint.coefficients])
            sign = -1.0 if constraint.op == "<=" else 1.0
            inequalities.append(
                (
                    torch.tensor(columns, dtype=torch.long),
                    torch.tensor(sign * a * (high[columns] - low[columns]), dtype=torch.float64),
                    float(sign * (constraint.bound - a @ low[columns])),
                )
            )
        return inequalities

    def _training_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``n x d`` unit-cube inputs and ``n x m`` outcomes: objectives sign-flipped to be
        maximised, then the constrained outcomes as measured."""
        observations = list(self.history.observations.values())
        unit_X = self.space.to_unit(self.space.to_array([obs.parameters for obs in observations]))
        signs = {o.name: o.sign for o in self.objectives}
        outcomes = [
            [signs.get(name, 1.0) * obs.outcomes[name] for name in self.history.outcome_names]
            for obs in observations
        ]
        return torch.from_numpy(unit_X), torch.tensor(outcomes, dtype=torch.float64)

    def _measured_variances(self) -> torch.Tensor | None:
        """``n x m`` variances of the results as measured (``noise="measured"``); None when
        the noise is inferred, or some result reported no uncertainty for some outcome."""
        if self.noise != "measured":
            return None
        observations = list(self.history.observations.values())
        names = self.history.outcome_names
        if not all(name in obs.uncertainties for obs in observations for name in names):
            logger.warning(
                "noise: measured, but some results reported no uncertainty for %s; the GP "
                "infers the noise for this proposal",
                list(names),
            )
            return None
        return torch.tensor(
            [[obs.uncertainties[name] ** 2 for name in names] for obs in observations],
            dtype=torch.float64,
        )

    def _pending_unit(self) -> torch.Tensor | None:
        """``m x d`` unit-cube locations of pending and failed trials (None if there are none)."""
        return self._unit_of(
            [
                *self.history.pending.values(),
                *(p for p in self.history.failures.values() if p is not None),
            ]
        )

    def _unit_of(self, locations: list[dict[str, float]]) -> torch.Tensor | None:
        """``m x d`` unit-cube tensor of the locations (None if there are none)."""
        if not locations:
            return None
        return torch.from_numpy(self.space.to_unit(self.space.to_array(locations)))

    def _beliefs_at(
        self,
        model: SingleTaskGP | ModelListGP,
        acquisition: AcquisitionFunction,
        candidates: torch.Tensor,
    ) -> list[dict[str, float]]:
        """Per candidate (``q x d``): its own acquisition value and the posterior of every
        modelled outcome there, in the outcome's units."""
        signs = torch.tensor(
            [
                {o.name: o.sign for o in self.objectives}.get(n, 1.0)
                for n in self.history.outcome_names
            ],
            dtype=torch.float64,
        )
        with torch.no_grad():
            acquisition_values = acquisition(candidates.unsqueeze(-2))
            means, variances = _moments(model.posterior(candidates))
            means = signs * means
            stds = variances.clamp_min(0.0).sqrt()
        beliefs = []
        for value, mean, std in zip(acquisition_values, means, stds, strict=True):
            belief = {"acquisition_value": float(value)}
            for k, name in enumerate(self.history.outcome_names):
                belief[f"{name}_predicted_mean"] = float(mean[k])
                belief[f"{name}_predicted_std"] = float(std[k])
            beliefs.append(belief)
        return beliefs


@contextmanager
def torch_threads_limited(num_threads: int | None) -> Iterator[None]:
    """Torch's intra-op thread count set to ``num_threads`` inside (None: left alone)."""
    previous = torch.get_num_threads()
    if num_threads is None or num_threads == previous:
        yield
        return
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _moments(posterior: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and variance; from samples where there is no closed form (``bilog``).

    ``posterior`` is a BoTorch ``Posterior`` whose ``mean`` may raise NotImplementedError (a
    ``TransformedPosterior``); the ``Posterior`` base class declares no ``mean``.
    """
    try:
        return posterior.mean, posterior.variance
    except NotImplementedError:
        samples = posterior.rsample(torch.Size([BELIEF_SAMPLES]))
        return samples.mean(0), samples.var(0)


def _stacked(first: torch.Tensor | None, second: torch.Tensor) -> torch.Tensor:
    """``first`` (``m x d`` or None) and ``second`` (``k x d``) as one ``(m + k) x d`` tensor."""
    return second if first is None else torch.cat([first, second])


def _first_output(Z: torch.Tensor, X: torch.Tensor | None = None) -> torch.Tensor:
    """The objective of a model whose first output is the objective and the rest constraints."""
    return Z[..., 0]


def _constraint_callable(
    output: int, constraint: OutcomeConstraint, sign: float = 1.0
) -> Callable[..., torch.Tensor]:
    """BoTorch's form of an outcome constraint: negative where ``output`` (times ``sign``,
    back to the value as measured) meets the limit."""
    if constraint.op == "<=":
        return lambda Z, X=None: sign * Z[..., output] - constraint.bound
    return lambda Z, X=None: constraint.bound - sign * Z[..., output]
