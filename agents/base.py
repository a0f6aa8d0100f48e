"""The bookkeeping every agent shares; a strategy only decides where to look next."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from agents.protocol import History
from agents.space import Objective, SearchSpace


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
    """

    def __init__(
        self,
        space: SearchSpace,
        objectives: Sequence[Objective],
        seed: int = 0,
        max_evaluations: int | None = None,
    ) -> None:
        if not isinstance(space, SearchSpace):
            raise TypeError(f"space must be a SearchSpace, got {type(space).__name__}")
        if not isinstance(seed, int | np.integer) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if max_evaluations is not None and max_evaluations < 1:
            raise ValueError(f"max_evaluations must be at least 1 or None, got {max_evaluations}")
        self.space = space
        self.history = History(space, objectives)
        self.objectives = self.history.objectives
        self.seed = int(seed)
        self.max_evaluations = max_evaluations
        self._beliefs: dict[str, dict[str, float]] = {}

    @abstractmethod
    def _propose(self, num_points: int) -> tuple[np.ndarray, list[dict[str, float]]]:
        """``num_points x d`` unit-cube coordinates to try next, and the belief about each."""

    def suggest(self, num_points: int | None = None) -> list[dict[str, Any]]:
        """Propose ``num_points`` (default 1) points: parameter values plus a unique ``_id``."""
        num_points = 1 if num_points is None else num_points
        if not isinstance(num_points, int | np.integer) or num_points < 1:
            raise ValueError(f"num_points must be a positive integer, got {num_points!r}")
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
