r"""Phase mapping: an agent whose goal is the phase diagram itself (the CAMEO idea).

Where Bayesian optimisation looks for the best conditions, this agent looks for the
conditions where its map of the phases is least certain, so that after ``N`` experiments the
map of which phases are present where (across a composition spread, say) is as right as it
can be. Optionally it trades that off against one property, as CAMEO does (Kusne et al.,
Nat. Commun. 11, 5966 (2020)).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.transforms.outcome import Standardize
from botorch.models.utils.gpytorch_modules import get_covar_module_with_dim_scaled_prior
from gpytorch.mlls import ExactMarginalLogLikelihood

from agents.base import HistoryAgent
from agents.baselines import sobol_box_points, sobol_pool_rows, sobol_unit_points
from agents.bayesian import MODEL_ERRORS, torch_threads_limited
from agents.options import MappingOptions, checked_options
from agents.protocol import ID_KEY, derived_seed, new_id
from agents.space import Objective, OutcomeConstraint, SearchSpace

logger = logging.getLogger(__name__)

#: How a result names a phase's fraction: ``<phase>_fraction``.
FRACTION_SUFFIX = "_fraction"

#: Smallest posterior standard deviation of a fraction, so presence is a probability.
MIN_STD = 1e-9

#: Reference points over which the entropy a measurement removes is averaged.
REFERENCE_POINTS = 512

#: Candidates whose joint posterior with the reference points is computed at once.
CANDIDATE_CHUNK = 256

#: Defaults of every option, from the one model that declares and checks them.
DEFAULTS = MappingOptions()


@dataclass(frozen=True, eq=False)
class PhaseMapPrediction:
    """The agent's map at some points: which phases are present, and how sure it is.

    Attributes
    ----------
    phases
        The mapped phases, in the column order of ``presence``.
    labels
        Per point, the phases predicted present (probability above one half), in ``phases``
        order: a hashable region label, ``()`` where none is.
    confidence
        Per point (``n``), the probability of that label: the product over phases of the
        probability of the predicted presence or absence.
    presence
        ``n x m`` probability that each phase's fraction exceeds the presence threshold.
    """

    phases: tuple[str, ...]
    labels: list[tuple[str, ...]]
    confidence: np.ndarray
    presence: np.ndarray


class PhaseMappingAgent(HistoryAgent):
    r"""Proposes where the phase map is least certain; optionally also where a property is good.

    Model. Each result reports the fraction of every phase (``<phase>_fraction``, as the XRD
    analysis records it). One GP per phase, a ``SingleTaskGP`` with ``m`` independent outputs
    (one per phase, each with its own hyperparameters): inputs in the unit cube
    (``SearchSpace.to_unit``), fractions standardised, ARD Matern 5/2 with BoTorch's
    dimension-scaled lengthscale prior and its log-normal noise prior, hyperparameters by
    ``fit_gpytorch_mll``. Phase ``k`` is present at ``x`` with probability

    .. math::

        p_k(x) = P\big(f_k(x) > t\big) = \Phi\big((\mu_k(x) - t) / \sigma_k(x)\big),

    ``t = presence_threshold``, from the posterior of the noiseless fraction ``f_k``. The map's
    label at ``x`` is the set of phases with ``p_k(x) > 1/2``; its confidence is
    ``prod_k max(p_k, 1 - p_k)`` (the phases taken as independent).

    Acquisition. Over a candidate set (``n_candidates`` scrambled Sobol points of the box that
    meet the linear constraints, drawn afresh for every proposal; on a pool, its unused rows),
    with ``H`` the binary entropy in bits (1 where a phase's presence is a coin toss, 0 where
    it is sure), the map term of ``acquisition="integrated"`` (default) is the entropy a
    measurement at ``x`` is expected to remove, averaged over reference points ``r`` (the
    first ``REFERENCE_POINTS`` candidates, which cover the space evenly),

    .. math::

        R(x) = \sum_k \tfrac{1}{|r|} \textstyle\sum_r H\big(p_k(r)\big)\, \rho_k(x, r)^2,
        \qquad
        \rho_k(x, r)^2 = \frac{\mathrm{Cov}(f_k(x), f_k(r))^2}
                              {(\sigma_k^2(x) + \sigma_{n,k}^2)\, \sigma_k^2(r)},

    the share of the variance of ``f_k(r)`` that a noisy result at ``x`` would explain, in the
    spirit of active learning by integrated variance reduction (Cohn's ALC). It prefers
    points whose result informs a wide uncertain region over the edges of the space, where
    the GP is unsure but a result informs little, and a measured spot (small ``sigma``) is
    not worth measuring again. ``acquisition="entropy"`` uses the entropy at the point itself,
    ``sum_k H(p_k(x)) / m``, instead. The map term ``M(x)`` (``R`` scaled by its maximum over
    the candidates, or the mean entropy) is traded against the property and damped near known
    trials:

    .. math::

        \alpha(x) = \big[(1 - w)\,M(x) + w\,\tilde u(x)\big]\,
                    \big(1 - e^{-d(x)^2 / 2\rho^2}\big),

    ``w = property_weight``, ``u = mu + sqrt(beta) sigma`` the upper confidence bound of the
    objective's own GP (sign-flipped to be maximised, the same kind of model) scaled to
    ``[0, 1]`` over the candidates, ``d(x)`` the unit-cube distance to the nearest trial
    already known (observed, pending or failed) and ``rho = exclusion_radius``. On a boundary
    the entropy stays high however often it is measured (the fraction sits at the threshold);
    the damping keeps the ``entropy`` rule, and the property term, from measuring one spot
    again, and spreads a batch.

    Batches. ``suggest(q)`` takes the best candidate, adds it to the known trials (so its
    neighbourhood is damped) and takes the next: a local-penalisation rule without
    fantasies, so a batch spreads along the uncertain regions rather than refining one spot.

    The first ``n_initial`` trials come from a scrambled Sobol design: the ``k``-th trial
    takes the ``k``-th point of the sequence that meets the linear constraints (without them,
    ``SobolAgent``'s points; on a pool, ``SobolAgent``'s rows). So do later trials while fewer
    than ``n_initial`` results carry every phase's fraction, or if a GP cannot be fitted (both
    logged). Every proposal is seeded from ``seed`` and the size of the history, so the same
    history gives the same proposal.

    Parameters
    ----------
    space
        Where to search.
    objectives
        What the campaign measures as its objective; modelled only with ``property_weight``
        above 0 (then exactly one). ``get_best_points`` ranks by it as for every agent.
    seed
        Non-negative seed.
    max_evaluations
        Budget for ``should_stop`` (None: none).
    outcome_constraints
        Limits on measured outcomes; they decide which trial may be best and do not steer
        the map.
    phases
        The phases to map: each result's ``<phase>_fraction`` for each. None (default): every
        ``<name>_fraction`` the observed results carry (names sorted). A result that lacks one
        of them (or reports it as not finite) is not used for the map.
    presence_threshold
        A phase counts as present above this fraction (default 0.05, about what a powder
        pattern detects).
    n_initial
        Results with phase fractions before the map is modelled (default 5).
    n_candidates
        Candidates per proposal in a box (default 1024).
    exclusion_radius
        ``rho`` of the damping, in unit-cube distance (default 0.05; 0 switches it off).
    property_weight
        ``w``: 0 (default) maps only, 1 follows the objective's UCB only.
    acquisition
        The map term: ``"integrated"`` (default), entropy removed over the space, or
        ``"entropy"``, entropy at the point.
    ucb_beta
        ``beta`` of the objective's UCB (default 2).
    torch_threads
        Torch's intra-op threads while proposing (default 1; see ``BayesianOptimizationAgent``).

    Notes
    -----
    ``report()`` gives, for each point of the latest model-based batch, ``acquisition_value``,
    ``map_entropy_bits`` (the summed ``H(p_k)``), ``entropy_removed_bits`` (``R``; NaN with
    ``acquisition="entropy"``), ``label_confidence``, and
    ``<phase>_presence_probability`` for every phase; with ``property_weight`` above 0 also
    ``<objective>_predicted_mean`` and ``<objective>_predicted_std``. Sobol points have empty
    beliefs. ``predict_map`` gives the map itself at any points.
    """

    def __init__(
        self,
        space: SearchSpace,
        objectives: Sequence[Objective],
        seed: int = 0,
        max_evaluations: int | None = None,
        *,
        outcome_constraints: Sequence[OutcomeConstraint | str | Mapping[str, Any]] = (),
        phases: Sequence[str] | None = DEFAULTS.phases,
        presence_threshold: float = DEFAULTS.presence_threshold,
        n_initial: int = DEFAULTS.n_initial,
        n_candidates: int = DEFAULTS.n_candidates,
        exclusion_radius: float = DEFAULTS.exclusion_radius,
        property_weight: float = DEFAULTS.property_weight,
        acquisition: str = DEFAULTS.acquisition,
        ucb_beta: float = DEFAULTS.ucb_beta,
        torch_threads: int | None = DEFAULTS.torch_threads,
    ) -> None:
        super().__init__(
            space,
            objectives,
            seed=seed,
            max_evaluations=max_evaluations,
            outcome_constraints=outcome_constraints,
        )
        options = checked_options(
            MappingOptions,
            {
                "phases": None if phases is None else list(phases),
                "presence_threshold": presence_threshold,
                "n_initial": n_initial,
                "n_candidates": n_candidates,
                "exclusion_radius": exclusion_radius,
                "property_weight": property_weight,
                "acquisition": acquisition,
                "ucb_beta": ucb_beta,
                "torch_threads": torch_threads,
            },
        )
        options.check_problem(len(self.objectives), len(self.history.outcome_constraints))
        self.phases = None if options.phases is None else tuple(options.phases)
        self.presence_threshold = options.presence_threshold
        self.n_initial = options.n_initial
        self.n_candidates = options.n_candidates
        self.exclusion_radius = options.exclusion_radius
        self.property_weight = options.property_weight
        self.acquisition = options.acquisition
        self.ucb_beta = options.ucb_beta
        self.torch_threads = options.torch_threads
        #: Phase fractions each trial's result reported, by ``_id``.
        self._fractions: dict[str, dict[str, float]] = {}

    def ingest(self, points: Sequence[Mapping[str, Any]]) -> None:
        """Learn results as every agent does, keeping each one's ``<phase>_fraction`` values."""
        identified = []
        for point in points:
            if point.get(ID_KEY) is None:
                point = {**point, ID_KEY: new_id()}
            self._fractions[str(point[ID_KEY])] = self._fractions_in(point)
            identified.append(point)
        super().ingest(identified)

    def _fractions_in(self, point: Mapping[str, Any]) -> dict[str, float]:
        """``{phase: fraction}`` of every finite ``<phase>_fraction`` in a result."""
        fractions = {}
        for name, value in point.items():
            if not name.endswith(FRACTION_SUFFIX) or name in self.space.names:
                continue
            try:
                fraction = float(value)
            except (TypeError, ValueError):
                continue
            if math.isfinite(fraction):
                fractions[name[: -len(FRACTION_SUFFIX)]] = fraction
        return fractions

    def mapped_phases(self) -> tuple[str, ...]:
        """The phases the map covers: ``phases``, else those the observed results report."""
        if self.phases is not None:
            return self.phases
        reported = {
            phase
            for trial_id in self.history.observations
            for phase in self._fractions.get(trial_id, {})
        }
        return tuple(sorted(reported))

    def _map_data(self) -> tuple[tuple[str, ...], torch.Tensor, torch.Tensor]:
        """The mapped phases, ``n x d`` unit-cube inputs and ``n x m`` fractions of the
        observed results that report every mapped phase."""
        phases = self.mapped_phases()
        parameters, fractions = [], []
        for trial_id, observation in self.history.observations.items():
            reported = self._fractions.get(trial_id, {})
            if phases and all(phase in reported for phase in phases):
                parameters.append(observation.parameters)
                fractions.append([reported[phase] for phase in phases])
        unit_X = self.space.to_unit(self.space.to_array(parameters))
        return (
            phases,
            torch.from_numpy(unit_X),
            torch.tensor(fractions, dtype=torch.float64).reshape(len(fractions), len(phases)),
        )

    def _gp(self, train_X: torch.Tensor, train_Y: torch.Tensor) -> SingleTaskGP:
        """A fitted GP with one independent output per column of ``train_Y`` (``n x m``)."""
        outputs = train_Y.shape[-1]
        model = SingleTaskGP(
            train_X,
            train_Y,
            covar_module=get_covar_module_with_dim_scaled_prior(
                ard_num_dims=self.space.dim,
                batch_shape=torch.Size([outputs]) if outputs > 1 else torch.Size(),
                use_rbf_kernel=False,
            ),
            outcome_transform=Standardize(m=outputs),
        )
        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        return model

    def _fitted_map(self) -> tuple[tuple[str, ...], SingleTaskGP]:
        """The phases and the phase-fraction GP fitted to the results that report them.

        Raises ``ValueError`` with fewer than two such results. The fit is seeded from the
        number of results, so it depends on the results alone.
        """
        phases, train_X, train_Y = self._map_data()
        if len(train_X) < 2:
            raise ValueError(
                f"no phase map yet: {len(train_X)} result(s) report the fraction of every "
                f"phase {list(phases)}, at least 2 are needed"
            )
        with torch.random.fork_rng(devices=[]), torch_threads_limited(self.torch_threads):
            torch.manual_seed(derived_seed(self.seed, len(train_X)))
            return phases, self._gp(train_X, train_Y)

    def _presence(
        self, model: SingleTaskGP, unit_X: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``n x m`` probability that each phase is present at ``unit_X`` (``n x d``), and the
        ``n`` confidence of the predicted label."""
        mean, std = _marginals(model, unit_X)
        presence = torch.special.ndtr((mean - self.presence_threshold) / std.clamp_min(MIN_STD))
        confidence = torch.maximum(presence, 1.0 - presence).prod(dim=-1)
        return presence, confidence

    def predict_map(self, points: Sequence[Mapping[str, float]]) -> PhaseMapPrediction:
        """The map at ``points`` (each ``{parameter: value}``): labels, confidence, presence.

        Raises ``ValueError`` before two results report every mapped phase's fraction.
        """
        phases, model = self._fitted_map()
        unit_X = torch.from_numpy(self.space.to_unit(self.space.to_array(points)))
        with torch_threads_limited(self.torch_threads):
            presence, confidence = self._presence(model, unit_X)
        present = (presence > 0.5).numpy()
        labels = [
            tuple(phase for phase, here in zip(phases, row, strict=True) if here) for row in present
        ]
        return PhaseMapPrediction(phases, labels, confidence.numpy(), presence.numpy())

    def _propose(self, num_points: int) -> tuple[np.ndarray, list[dict[str, float]]]:
        if not self._map_ready():
            return sobol_box_points(self, num_points), [{} for _ in range(num_points)]
        candidates = self._box_candidates()
        try:
            rows, beliefs = self._choose(num_points, candidates)
        except MODEL_ERRORS as error:
            self._warn_fallback(error, num_points)
            return sobol_box_points(self, num_points), [{} for _ in range(num_points)]
        return candidates[rows], beliefs

    def _propose_from_pool(
        self, num_points: int, remaining: np.ndarray
    ) -> tuple[np.ndarray, list[dict[str, float]]]:
        no_beliefs: list[dict[str, float]] = [{} for _ in range(num_points)]
        sobol = sobol_pool_rows(self, num_points, remaining), no_beliefs
        if not self._map_ready():
            return sobol
        try:
            rows, beliefs = self._choose(
                num_points, self.space.to_unit(self.space.candidate_array[remaining])
            )
        except MODEL_ERRORS as error:
            self._warn_fallback(error, num_points)
            return sobol
        return remaining[rows], beliefs

    def _map_ready(self) -> bool:
        """Whether ``n_initial`` results report the phase fractions (logged if they should)."""
        mapped = len(self._map_data()[1])
        if mapped >= self.n_initial:
            return True
        if len(self.history.observations) >= self.n_initial:
            logger.warning(
                "only %d of %d results report the fraction of every phase %s; proposing "
                "Sobol points until %d do",
                mapped,
                len(self.history.observations),
                list(self.mapped_phases()) or "(none reported)",
                self.n_initial,
            )
        return False

    def _warn_fallback(self, error: Exception, num_points: int) -> None:
        logger.warning(
            "phase-map GP failed with %d observations (%s: %s); proposing %d Sobol point(s)",
            len(self.history.observations),
            type(error).__name__,
            error,
            num_points,
        )

    def _box_candidates(self) -> np.ndarray:
        """``n_candidates x d`` unit-cube points of a fresh scrambled Sobol set that meet the
        linear constraints (discrete parameters at their levels)."""
        seed = derived_seed(self.seed, self.history.n_known)
        unit = self.feasible_unit_points(
            lambda k: sobol_unit_points(self.space.dim, k, seed, 0), self.n_candidates
        )
        return np.asarray(self.space.to_unit(self.space.from_unit(unit)))

    def _known_unit(self) -> np.ndarray:
        """``k x d`` unit-cube locations of every trial known: observed, pending, failed."""
        locations = [
            *(observation.parameters for observation in self.history.observations.values()),
            *self.history.pending.values(),
            *(p for p in self.history.failures.values() if p is not None),
        ]
        return np.asarray(self.space.to_unit(self.space.to_array(locations)))

    def _damping(self, candidates: np.ndarray, known: np.ndarray) -> np.ndarray:
        """``1 - exp(-d^2 / 2 rho^2)`` per candidate, ``d`` its distance to the nearest of
        ``known`` (1 everywhere with no known point or ``rho`` 0)."""
        if len(known) == 0 or self.exclusion_radius == 0:
            return np.ones(len(candidates))
        squared = ((candidates[:, None, :] - known[None, :, :]) ** 2).sum(-1).min(axis=1)
        return -np.expm1(-squared / (2.0 * self.exclusion_radius**2))

    def _choose(
        self, num_points: int, candidates: np.ndarray
    ) -> tuple[np.ndarray, list[dict[str, float]]]:
        """Indices of ``num_points`` distinct rows of ``candidates`` (``n x d``, unit cube),
        chosen greedily by the damped acquisition, and the belief behind each."""
        phases, model = self._fitted_map()
        unit_X = torch.from_numpy(candidates)
        with torch_threads_limited(self.torch_threads):
            presence, confidence = self._presence(model, unit_X)
            entropy = _binary_entropy_bits(presence)
            entropy_bits = entropy.sum(dim=-1).numpy()
            if self.acquisition == "integrated":
                reference = slice(0, REFERENCE_POINTS)
                removed = self._entropy_removed(
                    model, unit_X, unit_X[reference], entropy[reference]
                )
                peak = float(removed.max())
                mapping = removed / peak if peak > 0 else removed
            else:
                removed = np.full(len(candidates), math.nan)
                mapping = entropy_bits / max(len(phases), 1)
            score = (1.0 - self.property_weight) * mapping
            property_beliefs: dict[str, np.ndarray] = {}
            if self.property_weight > 0:
                ucb, property_beliefs = self._property_bound(unit_X)
                span = ucb.max() - ucb.min()
                scaled = (ucb - ucb.min()) / span if span > 0 else np.zeros_like(ucb)
                score = score + self.property_weight * scaled
        damping = self._damping(candidates, self._known_unit())
        free = np.ones(len(candidates), dtype=bool)
        chosen: list[int] = []
        values: list[float] = []
        for _ in range(num_points):
            acquisition = np.where(free, score * damping, -np.inf)
            best = int(np.argmax(acquisition))
            chosen.append(best)
            values.append(float(acquisition[best]))
            free[best] = False
            damping = np.minimum(damping, self._damping(candidates, candidates[[best]]))
        beliefs = []
        for row, value in zip(chosen, values, strict=True):
            belief = {
                "acquisition_value": value,
                "map_entropy_bits": float(entropy_bits[row]),
                "entropy_removed_bits": float(removed[row]),
                "label_confidence": float(confidence[row]),
            }
            for k, phase in enumerate(phases):
                belief[f"{phase}_presence_probability"] = float(presence[row, k])
            for name, column in property_beliefs.items():
                belief[name] = float(column[row])
            beliefs.append(belief)
        return np.array(chosen, dtype=int), beliefs

    def _entropy_removed(
        self,
        model: SingleTaskGP,
        candidates: torch.Tensor,
        reference: torch.Tensor,
        reference_entropy: torch.Tensor,
    ) -> np.ndarray:
        """Per candidate (``n x d``), the map entropy a measurement there is expected to
        remove, in bits per ``reference`` point (``r x d``, entropy ``r x m``).

        ``sum_k mean_r H_k(r) rho_k(x, r)^2``, ``rho_k`` the posterior correlation of the
        noisy fraction measured at ``x`` with ``f_k(r)``: the share of ``f_k(r)``'s variance
        that measurement would explain. Candidates are taken in chunks so that only
        ``m x (chunk + r)^2`` covariances exist at once.
        """
        outputs = reference_entropy.shape[-1]
        model.eval()
        noise = model.likelihood.noise.detach().reshape(outputs, 1, 1)
        removed = []
        with torch.no_grad():
            for chunk in candidates.split(CANDIDATE_CHUNK):
                joint = torch.cat([chunk, reference])
                # Latent posterior in standardised units (the shares do not depend on units).
                distribution = model(joint.unsqueeze(0) if outputs > 1 else joint)
                covariance = distribution.covariance_matrix.reshape(outputs, len(joint), -1)
                variance = covariance.diagonal(dim1=-2, dim2=-1)
                n = len(chunk)
                share = covariance[:, :n, n:] ** 2 / (
                    (variance[:, :n, None] + noise) * variance[:, None, n:].clamp_min(MIN_STD**2)
                )
                removed.append(torch.einsum("kcr,rk->c", share, reference_entropy))
        return (torch.cat(removed) / len(reference)).numpy()

    def _property_bound(self, unit_X: torch.Tensor) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The objective's upper confidence bound at ``unit_X`` (sign-flipped to be maximised)
        and its predicted mean and std there in the objective's units."""
        (objective,) = self.objectives
        observations = list(self.history.observations.values())
        train_X = torch.from_numpy(
            self.space.to_unit(self.space.to_array([obs.parameters for obs in observations]))
        )
        train_y = torch.tensor(
            [[objective.sign * obs.outcomes[objective.name]] for obs in observations],
            dtype=torch.float64,
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derived_seed(self.seed, len(observations), 1))
            model = self._gp(train_X, train_y)
        mean, std = (column[..., 0] for column in _marginals(model, unit_X))
        ucb = (mean + math.sqrt(self.ucb_beta) * std).numpy()
        return ucb, {
            f"{objective.name}_predicted_mean": (objective.sign * mean).numpy(),
            f"{objective.name}_predicted_std": std.numpy(),
        }


def _marginals(model: SingleTaskGP, unit_X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and std of each output at each of the ``n x d`` points, ``n x m`` each.

    Each point is its own batch (``n x 1 x d``): only the marginals are computed, never the
    ``n x n`` joint covariance.
    """
    with torch.no_grad():
        posterior = model.posterior(unit_X.unsqueeze(-2))
        return posterior.mean[..., 0, :], posterior.variance[..., 0, :].clamp_min(0.0).sqrt()


def _binary_entropy_bits(p: torch.Tensor) -> torch.Tensor:
    """``-p log2 p - (1 - p) log2 (1 - p)``, elementwise (0 at 0 and 1)."""
    q = 1.0 - p
    return -(torch.xlogy(p, p) + torch.xlogy(q, q)) / math.log(2.0)
