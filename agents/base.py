"""The bookkeeping every agent shares; a strategy only decides where to look next."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from agents.protocol import History
from agents.space import Objective, OutcomeConstraint, SearchSpace

#: Random draws per requested point when rejecting those that break linear constraints.
OVERSAMPLING = 64


class HistoryAgent(ABC):
    """An ``Agent`` whose whole state is a ``History``; subclasses implement ``_propose``.

    Parameters
    ----------
    space
        Where to search; every suggestion lies inside its bounds.
    objectives
        What to optimise.
    seed
        Non-negative seed; with the same history the agent proposes the same points.
    max_evaluations
        Budget: ``should_stop`` says stop once this many results were ingested (None: no budget).
        Failures registered without a result do not count, since such a trial may never have
        run (a proposal refused as unsafe).
    outcome_constraints
        Limits on measured outcomes, as ``OutcomeConstraint`` or ``"name <= bound"`` strings
        or ``{"name", "op", "bound"}`` mappings: a trial that breaks one is never the best.
        Model-free agents do not otherwise use them; Bayesian optimisation models them.
    """

    def __init__(
        self,
        space: SearchSpace,
        objectives: Sequence[Objective],
        seed: int = 0,
        max_evaluations: int | None = None,
        outcome_constraints: Sequence[OutcomeConstraint | str | Mapping[str, Any]] = (),
    ) -> None:
        if not isinstance(space, SearchSpace):
            raise TypeError(f"space must be a SearchSpace, got {type(space).__name__}")
        if not isinstance(seed, int | np.integer) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if max_evaluations is not None and max_evaluations < 1:
            raise ValueError(f"max_evaluations must be at least 1 or None, got {max_evaluations}")
        self.space = space
        self.history = History(
            space, objectives, [OutcomeConstraint.parse(c) for c in outcome_constraints]
        )
        self.objectives = self.history.objectives
        self.seed = int(seed)
        self.max_evaluations = max_evaluations
        self._beliefs: dict[str, dict[str, float]] = {}

    @abstractmethod
    def _propose(self, num_points: int) -> tuple[np.ndarray, list[dict[str, float]]]:
        """``num_points x d`` unit-cube coordinates to try next, and the belief about each."""

    @abstractmethod
    def _propose_from_pool(
        self, num_points: int, remaining: np.ndarray
    ) -> tuple[np.ndarray, list[dict[str, float]]]:
        """``num_points`` distinct rows of the pool, taken from ``remaining``, and the beliefs."""

    def remaining_candidates(self) -> np.ndarray:
        """Rows of the pool that meet the linear constraints and no trial has used yet."""
        used = [
            *self.history.pending.values(),
            *(obs.parameters for obs in self.history.observations.values()),
            *(p for p in self.history.failures.values() if p is not None),
        ]
        free = self.space.feasible(self.space.candidate_array)
        if used:
            rows = self.space.candidate_index(self.space.to_array(used))
            free[rows[rows >= 0]] = False
        return np.flatnonzero(free)

    def feasible_unit_points(
        self, draw: Callable[[int], np.ndarray], num_points: int
    ) -> np.ndarray:
        """``num_points`` unit-cube points from ``draw(k)`` (``k x d``) that meet the linear limits.

        Without linear constraints that is ``draw(num_points)``; with them, the first feasible
        points among ``OVERSAMPLING * num_points`` drawn.
        """
        if not self.space.linear_constraints:
            return draw(num_points)
        points = draw(OVERSAMPLING * num_points)
        feasible = points[self.space.feasible(self.space.from_unit(points))]
        if len(feasible) < num_points:
            limits = "; ".join(c.describe() for c in self.space.linear_constraints)
            raise ValueError(
                f"only {len(feasible)} of {len(points)} random points meet the linear "
                f"constraints ({limits}); they leave too little of the box to sample"
            )
        return feasible[:num_points]

    def suggest(self, num_points: int | None = None) -> list[dict[str, Any]]:
        """Propose ``num_points`` (default 1) points: parameter values plus a unique ``_id``.

        In a pool-based space the points are rows of the pool that no trial has used; a
        ``ValueError`` says so when fewer than ``num_points`` rows remain.
        """
        num_points = 1 if num_points is None else num_points
        if not isinstance(num_points, int | np.integer) or num_points < 1:
            raise ValueError(f"num_points must be a positive integer, got {num_points!r}")
        if self.space.is_pool:
            remaining = self.remaining_candidates()
            if len(remaining) < num_points:
                raise ValueError(
                    f"asked for {num_points} point(s) but only {len(remaining)} of the "
                    f"{len(self.space.candidate_array)} candidates remain unused"
                )
            rows, beliefs = self._propose_from_pool(int(num_points), remaining)
            values = self.space.candidate_array[rows]
        else:
            unit_points, beliefs = self._propose(int(num_points))
            values = self.space.from_unit(unit_points)
        suggestions = self.history.add_pending(self.space.to_points(values))
        self._beliefs = {
            suggestion["_id"]: belief
            for suggestion, belief in zip(suggestions, beliefs, strict=True)
        }
        return suggestions

    def ingest(self, points: Sequence[Mapping[str, Any]]) -> None:
        """Learn from results: parameters (or a known ``_id``), objective values and ``_id``.

        A point whose ``_id`` is unknown is learned as an external observation; one whose
        objective value is missing or not finite is recorded as failed, not learned.
        """
        self.history.ingest(points)

    def get_best_points(self) -> list[tuple[str, dict[str, float], dict[str, float]]]:
        """``[(_id, parameters, outcomes)]`` of the best observation so far (empty before any).

        With several objectives, the non-dominated (Pareto) observations.
        """
        return self.history.best_points()

    def register_failures(self, suggestions: Sequence[Mapping[str, Any]]) -> None:
        """Mark trials (by ``_id``) as failed: not learned from and not proposed again."""
        self.history.fail(suggestions)

    def register_suggestions(
        self, suggestions: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        """Accept points chosen elsewhere as pending trials; returns them with a new ``_id``.

        Raises ``ValueError`` if a point leaves the search space.
        """
        return self.history.register(suggestions)

    def should_stop(self) -> tuple[bool, str | None]:
        """``(True, reason)`` once the budget is spent or every objective target is met."""
        reason = self.history.stop_reason(self.max_evaluations)
        return reason is not None, reason

    def report(self) -> dict[str, dict[str, float]]:
        """Beliefs about each point of the latest ``suggest``, keyed by ``_id``."""
        return {trial_id: dict(belief) for trial_id, belief in self._beliefs.items()}
