r"""Reinforcement learning: a policy network that proposes the next conditions from the history.

The policy :math:`\pi_\theta(x_{n+1} \mid \{(x_j, y_j)\}_{j \le n})` was trained (by
``sdl train-rl``, see ``sdl/training/rl.py``) on many simulated campaigns whose physics was drawn
at random, so it has learned how such landscapes tend to look and how to search them on a
small budget. Here it is only evaluated: no learning happens during a campaign beyond what the
history tells the network.

Inputs are scale-free. Each observed point becomes a token ``[x, q, z, b]``: ``x`` its unit-cube
coordinates (``SearchSpace.to_unit``), ``q`` the rank quantile of its objective in the history
(1 = best), ``z`` its objective standardised over the history and clipped to ``[-3, 3]``, ``b``
whether it is the best. Objectives to minimise are negated first, so the network always
maximises, whatever the units or scale.

Network (``HistoryPolicy``): a shared MLP embeds every token; ``K`` learned queries attend over
the embedded tokens (multi-head attention pooling, permutation invariant, any history length;
a learned "empty" token makes an empty history valid); an MLP head reads the pooled vector,
the coordinates of the best point and the campaign's progress ``n / horizon`` and gives, per
dimension, a gate ``g``, a free centre ``m`` and a spread ``s``. The next point is

.. math::

    c = g \odot x_\mathrm{best} + (1 - g) \odot m, \qquad
    x = \mathrm{sigmoid}(\mathrm{logit}(c) + s \odot \varepsilon),\ \varepsilon \sim N(0, I),

a Gaussian in logit space, so every draw lies inside the unit cube and the gate makes
"search near the best so far" as easy to learn as "go somewhere new".

The network is built for one dimension ``d`` (the weights file records it, with the horizon it
was trained for); the agent refuses a search space of another dimension.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from agents.base import OVERSAMPLING, HistoryAgent
from agents.baselines import nearest_rows
from agents.protocol import derived_seed
from agents.space import Objective, OutcomeConstraint, SearchSpace

logger = logging.getLogger(__name__)

#: Tag of the weights files this module writes and reads.
POLICY_FORMAT = "sdl-rl-policy-2"

#: Features per history token besides the ``d`` coordinates: rank quantile, z-score, best flag.
SCORE_FEATURES = 3

#: Range of the per-dimension spread of the policy, in logit units (log of the std).
LOG_STD_RANGE = (-4.0, 1.0)

#: Smallest distance from 0 and 1 of a centre before its logit is taken.
LOGIT_EPS = 1e-4

#: Unit-cube distance a proposal keeps from pending and failed trials and from its batch.
MIN_SEPARATION = 0.05


def history_tokens(unit_x: Tensor, score: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Scale-free features of every history point, and the coordinates of the best one.

    Parameters
    ----------
    unit_x
        ``N x L x d`` unit-cube coordinates of up to ``L`` points in each of ``N`` histories.
    score
        ``N x L`` objective values to maximise (any scale).
    mask
        ``N x L``, True where a point exists; the others are ignored.

    Returns
    -------
    tokens, x_best
        ``N x L x (d + 3)``: ``x``, rank quantile in ``(0, 1]`` (1 = best, ties share the mean
        rank), z-score clipped to ``[-3, 3]`` (0 when the history has no spread), best flag;
        zero where ``mask`` is False. ``N x d``: the best point (0.5 everywhere in an empty
        history).
    """
    valid = mask.to(score.dtype)
    count = valid.sum(-1, keepdim=True).clamp(min=1.0)
    above = score[..., :, None] - score[..., None, :]
    others = mask[..., None, :]
    below = ((above > 0) & others).sum(-1)
    ties = ((above == 0) & others).sum(-1)
    quantile = (below + 0.5 * (ties - 1) + 1) / count
    mean = (score * valid).sum(-1, keepdim=True) / count
    std = ((((score - mean) * valid) ** 2).sum(-1, keepdim=True) / count).sqrt()
    spread = torch.where(std > 0, std, torch.ones_like(std))
    z_score = torch.where(std > 0, (score - mean) / spread, torch.zeros_like(score))
    masked = torch.where(mask, score, torch.full_like(score, -torch.inf))
    best = masked.max(-1, keepdim=True).values
    is_best = (masked == best) & mask
    best_index = masked.argmax(-1)
    x_best = unit_x[torch.arange(len(unit_x)), best_index]
    x_best = torch.where(mask.any(-1, keepdim=True), x_best, torch.full_like(x_best, 0.5))
    tokens = torch.cat(
        [unit_x, quantile[..., None], z_score.clamp(-3.0, 3.0)[..., None], is_best[..., None]],
        dim=-1,
    )
    return tokens * valid[..., None], x_best


class HistoryPolicy(nn.Module):
    """The policy network: history of a campaign in, Gaussian (logit space) over the next point out.

    Parameters
    ----------
    dim
        Search-space dimension ``d``.
    horizon
        Campaign length it is trained for; ``n / horizon`` (at most 1) tells it how far along
        a campaign is, so it can explore early and exploit late.
    hidden
        Width of the token embedding and of the head.
    heads, queries
        Attention heads and learned pooling queries.
    """

    def __init__(
        self, dim: int, horizon: int = 30, hidden: int = 64, heads: int = 4, queries: int = 4
    ) -> None:
        super().__init__()
        if dim < 1 or horizon < 1:
            raise ValueError(f"dim and horizon must be at least 1, got {dim} and {horizon}")
        self.config = {
            "dim": dim,
            "horizon": horizon,
            "hidden": hidden,
            "heads": heads,
            "queries": queries,
        }
        self.dim, self.horizon = dim, horizon
        self.encoder = nn.Sequential(
            nn.Linear(dim + SCORE_FEATURES, hidden), nn.GELU(), nn.Linear(hidden, hidden)
        )
        self.empty = nn.Parameter(torch.zeros(1, 1, hidden))
        self.queries = nn.Parameter(0.1 * torch.randn(1, queries, hidden))
        self.pool = nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.head = nn.Sequential(
            nn.Linear(queries * hidden + dim + 1, hidden),
            nn.GELU(),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.Linear(hidden, 3 * dim),
        )

    def forward(self, unit_x: Tensor, score: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """``N x d`` centres in ``(0, 1)`` and ``N x d`` logit-space log-stds of the next point.

        Inputs as in ``history_tokens``.
        """
        tokens, x_best = history_tokens(unit_x, score, mask)
        batch = len(unit_x)
        keys = torch.cat([self.empty.expand(batch, -1, -1), self.encoder(tokens)], dim=1)
        padding = torch.cat([torch.zeros_like(mask[:, :1]), ~mask], dim=1)
        pooled, _ = self.pool(
            self.queries.expand(batch, -1, -1),
            keys,
            keys,
            key_padding_mask=padding,
            need_weights=False,
        )
        progress = (mask.sum(-1, keepdim=True) / self.horizon).clamp(max=1.0).to(x_best.dtype)
        gate, free, spread = self.head(
            torch.cat([pooled.flatten(1), x_best, progress], dim=-1)
        ).chunk(3, dim=-1)
        gate = torch.sigmoid(gate)
        centre = gate * x_best + (1.0 - gate) * torch.sigmoid(free)
        low, high = LOG_STD_RANGE
        return centre, low + (high - low) * torch.sigmoid(spread)


def action_distribution(centre: Tensor, log_std: Tensor) -> torch.distributions.Normal:
    """The Gaussian in logit space whose ``sigmoid`` is the next unit-cube point."""
    return torch.distributions.Normal(torch.logit(centre, eps=LOGIT_EPS), log_std.exp())


def save_policy(
    policy: HistoryPolicy,
    path: str | Path,
    space: SearchSpace,
    objective: Objective,
    training: Mapping[str, Any],
) -> None:
    """Write the policy's weights and shape, the search space and objective it was trained
    for, and how it was trained (``training``) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "format": POLICY_FORMAT,
            "config": dict(policy.config),
            "state_dict": policy.state_dict(),
            "problem": _problem(space, objective),
            "training": dict(training),
        },
        path,
    )


def load_policy(path: str | Path, space: SearchSpace, objective: Objective) -> HistoryPolicy:
    """The policy saved at ``path``, checked to be trained for this ``space`` and ``objective``.

    A policy acts in the unit cube of the box it was trained on, for the landscape of its
    objective: in another box, or for another objective, its proposals mean nothing.

    Raises
    ------
    FileNotFoundError
        If there is no file, with the command that makes one.
    ValueError
        If the file is not a policy of this module, or was trained for another problem (the
        message lists every difference).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no RL policy weights at {str(path)!r}; train them with 'sdl train-rl --out {path}'"
        )
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(saved, dict) or saved.get("format") != POLICY_FORMAT:
        raise ValueError(
            f"{str(path)!r} is not an RL policy file of this version ({POLICY_FORMAT}, which "
            f"records its search space and objective); train one with 'sdl train-rl'"
        )
    differences = _differences(saved["problem"], _problem(space, objective))
    if differences:
        raise ValueError(
            f"the RL policy in {str(path)!r} was trained for another problem than this "
            f"campaign's: {'; '.join(differences)}; train one for this campaign's search "
            "space and objective"
        )
    policy = HistoryPolicy(**saved["config"])
    policy.load_state_dict(saved["state_dict"])
    return policy.eval()


def _problem(space: SearchSpace, objective: Objective) -> dict[str, Any]:
    """What a policy is trained for, as plain data for its file."""
    return {
        "space": [
            {"name": p.name, "low": p.low, "high": p.high, "unit": p.unit, "log": p.log_scale}
            for p in space.parameters
        ],
        "objective": {"name": objective.name, "direction": objective.direction},
    }


def _differences(trained: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """How the problem a policy was ``trained`` for differs from the ``wanted`` one."""
    names, wanted_names = (
        [p["name"] for p in trained["space"]],
        [p["name"] for p in wanted["space"]],
    )
    if names != wanted_names:
        order = " (the same, in another order)" if sorted(names) == sorted(wanted_names) else ""
        return [
            f"it searches {names} in this order, the campaign {wanted_names}{order}"
        ] + _objective_differences(trained, wanted)
    differences = [
        f"{old['name']}: {old['low']:g} to {old['high']:g} {old['unit']}"
        f"{' (log)' if old['log'] else ''} in training, {new['low']:g} to {new['high']:g} "
        f"{new['unit']}{' (log)' if new['log'] else ''} here"
        for old, new in zip(trained["space"], wanted["space"], strict=True)
        if old != new
    ]
    return differences + _objective_differences(trained, wanted)


def _objective_differences(trained: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    old, new = trained["objective"], wanted["objective"]
    if old == new:
        return []
    return [
        f"objective: {old['direction']} {old['name']} in training, {new['direction']} "
        f"{new['name']} here"
    ]


class RLAgent(HistoryAgent):
    """Proposals drawn from a policy network trained by reinforcement learning (``sdl train-rl``).

    Each proposal is a draw from ``pi(x | history)`` (see the module docstring), seeded by the
    agent's seed and the number of trials it knows, so a rebuilt agent proposes the same
    points. A batch of ``q`` points is ``q`` independent draws from the same distribution.
    Draws closer than ``MIN_SEPARATION`` to a pending or failed trial (or to an earlier point
    of the batch) are skipped. With linear constraints, the first draws that meet them
    (rejection); on a pool, each draw takes the nearest free row. Outcome constraints are not
    modelled (a trial that breaks one is still never reported as best).

    Parameters
    ----------
    space, objectives, seed, max_evaluations, outcome_constraints
        As for every ``HistoryAgent``; exactly one objective.
    weights
        Path of the policy file written by ``sdl train-rl`` for this search space and
        objective (the file records both; another problem's policy is refused).
        None builds an untrained network (seeded; it proposes scattered points around the
        best so far) and logs a warning: for plumbing and tests, not for campaigns.

    ``report()`` gives, per proposal, the centre of the policy in parameter units
    (``<name>_policy_centre``) and its mean spread in the unit cube (``policy_spread_unit``).
    """

    def __init__(
        self,
        space: SearchSpace,
        objectives: Sequence[Objective],
        seed: int = 0,
        max_evaluations: int | None = None,
        outcome_constraints: Sequence[OutcomeConstraint | str | Mapping[str, Any]] = (),
        weights: str | Path | None = None,
    ) -> None:
        super().__init__(space, objectives, seed, max_evaluations, outcome_constraints)
        if len(self.objectives) != 1:
            raise ValueError(
                f"the rl agent optimises one objective, got {len(self.objectives)}: "
                f"{[o.name for o in self.objectives]}"
            )
        if weights is None:
            logger.warning(
                "rl agent without weights: proposing from an untrained policy; "
                "train one with 'sdl train-rl' and pass weights=PATH"
            )
            with torch.random.fork_rng():
                torch.manual_seed(self.seed)
                self.policy = HistoryPolicy(space.dim).eval()
        else:
            self.policy = load_policy(weights, space, self.objectives[0])

    def _history_tensors(self) -> tuple[Tensor, Tensor, Tensor]:
        """The observed points as a batch of one: ``1 x L x d`` unit x, ``1 x L`` score, mask.

        An empty history is one masked slot (``L = 1``), since the network pools over ``L``.
        """
        observations = list(self.history.observations.values())
        if not observations:
            return (
                torch.zeros(1, 1, self.space.dim),
                torch.zeros(1, 1),
                torch.zeros(1, 1, dtype=torch.bool),
            )
        objective = self.objectives[0]
        unit_x = self.space.to_unit(self.space.to_array([o.parameters for o in observations]))
        score = [objective.sign * o.outcomes[objective.name] for o in observations]
        return (
            torch.as_tensor(unit_x, dtype=torch.float32)[None],
            torch.as_tensor(score, dtype=torch.float32).reshape(1, -1),
            torch.ones(1, len(observations), dtype=torch.bool),
        )

    def _sampler(
        self, num_points: int
    ) -> tuple[Callable[[int], np.ndarray], list[dict[str, float]]]:
        """A function drawing ``k x d`` unit-cube points from the policy now, and the beliefs.

        Draws come from one generator seeded by the seed and the number of known trials.
        """
        with torch.no_grad():
            centre, log_std = self.policy(*self._history_tensors())
        distribution = action_distribution(centre, log_std)
        generator = torch.Generator().manual_seed(derived_seed(self.seed, self.history.n_known))

        def draw(k: int) -> np.ndarray:
            noise = torch.randn((k, self.space.dim), generator=generator)
            logits = distribution.loc + distribution.scale * noise
            return torch.sigmoid(logits).double().numpy()

        centre_values = self.space.from_unit(centre.double().numpy())[0]
        belief = {
            f"{name}_policy_centre": float(value)
            for name, value in zip(self.space.names, centre_values, strict=True)
        }
        # The std in the unit cube of a small logit-space step: sigmoid'(logit c) = c (1 - c).
        belief["policy_spread_unit"] = float((centre * (1.0 - centre) * log_std.exp()).mean())
        return draw, [dict(belief) for _ in range(num_points)]

    def _avoided_unit_points(self) -> np.ndarray:
        """``m x d`` unit-cube points of pending and failed trials (with known parameters)."""
        points = [
            *self.history.pending.values(),
            *(p for p in self.history.failures.values() if p is not None),
        ]
        return self.space.to_unit(self.space.to_array(points))

    def _separated(self, draw: Callable[[int], np.ndarray]) -> Callable[[int], np.ndarray]:
        """``draw`` made to keep ``MIN_SEPARATION`` from pending and failed trials and each other.

        Of ``OVERSAMPLING * k`` draws it keeps, in order, those far enough from everything
        kept or avoided; if too few are, the rest are the draws farthest from the avoided set.
        Without this a confident policy would propose a failed trial again, unchanged.
        """
        avoided = self._avoided_unit_points()

        def separated(k: int) -> np.ndarray:
            candidates = draw(OVERSAMPLING * k)
            taken = list(avoided)
            chosen: list[int] = []
            for index, point in enumerate(candidates):
                if not taken or np.linalg.norm(np.array(taken) - point, axis=1).min() >= (
                    MIN_SEPARATION
                ):
                    chosen.append(index)
                    taken.append(point)
                    if len(chosen) == k:
                        return candidates[chosen]
            distance = (
                np.linalg.norm(candidates[:, None] - avoided[None], axis=-1).min(axis=1)
                if len(avoided)
                else np.zeros(len(candidates))
            )
            distance[chosen] = np.inf
            return candidates[np.argsort(-distance, kind="stable")[:k]]

        return separated

    def _propose(self, num_points: int) -> tuple[np.ndarray, list[dict[str, float]]]:
        draw, beliefs = self._sampler(num_points)
        return self.feasible_unit_points(self._separated(draw), num_points), beliefs

    def _propose_from_pool(
        self, num_points: int, remaining: np.ndarray
    ) -> tuple[np.ndarray, list[dict[str, float]]]:
        draw, beliefs = self._sampler(num_points)
        pool_unit = self.space.to_unit(self.space.candidate_array)
        return nearest_rows(draw(num_points), pool_unit, remaining), beliefs
