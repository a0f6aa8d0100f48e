"""An optimizer from outside, with bluesky-adaptive's ``Optimizer`` surface, run as our agent.

:class:`OptimizerAgent` keeps the campaign's record of trials (:class:`~agents.protocol.History`)
as every agent does, so resuming, failures, injections, refusals and stopping work as for ours,
and hands the optimizer what it needs: ``suggest`` for proposals and ``ingest`` for results
(under the optimizer's own ``_id`` where it gave one and the point ran as it proposed it).
Failures reach it too when it offers bluesky-adaptive's ``register_failures``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from agents.base import HistoryAgent
from agents.protocol import ID_KEY
from agents.space import Objective, SearchSpace

#: What an object must offer to be run as an agent (bluesky-adaptive's ``Optimizer``).
OPTIMIZER_METHODS = ("suggest", "ingest", "get_best_points")


def missing_methods(optimizer: Any) -> list[str]:
    """The ``Optimizer`` methods ``optimizer`` lacks (empty: it can be run)."""
    return [name for name in OPTIMIZER_METHODS if not callable(getattr(optimizer, name, None))]


class OptimizerAgent(HistoryAgent):
    """Runs ``optimizer`` over ``space``, in the box (a candidate pool is refused)."""

    def __init__(
        self,
        space: SearchSpace,
        objectives: Sequence[Objective],
        seed: int = 0,
        max_evaluations: int | None = None,
        outcome_constraints: Sequence[Any] = (),
        *,
        optimizer: Any,
    ) -> None:
        missing = missing_methods(optimizer)
        if missing:
            raise ValueError(
                f"{type(optimizer).__name__} is not an optimizer: it has no {missing} "
                "(bluesky-adaptive's Optimizer: suggest, ingest, get_best_points)"
            )
        if space.is_pool:
            raise ValueError("an external optimizer proposes in the box; a pool is not offered")
        super().__init__(space, objectives, seed, max_evaluations, outcome_constraints)
        self.optimizer = optimizer
        # our trial _id -> the optimizer's _id and the point it proposed
        self._theirs: dict[str, tuple[Any, dict[str, float]]] = {}
        self._latest: list[Mapping[str, Any]] = []

    def _propose(self, num_points: int) -> tuple[np.ndarray, list[dict[str, float]]]:
        self._latest = list(self.optimizer.suggest(num_points))
        if len(self._latest) != num_points:
            raise ValueError(
                f"the optimizer proposed {len(self._latest)} point(s), {num_points} were asked for"
            )
        for point in self._latest:
            missing = [name for name in self.space.names if name not in point]
            if missing:
                raise ValueError(f"the optimizer proposed a point without {missing}: {point}")
            self.space.validate({name: point[name] for name in self.space.names})
        return self.space.to_unit(self.space.to_array(self._latest)), [{} for _ in self._latest]

    def _propose_from_pool(
        self, num_points: int, remaining: np.ndarray
    ) -> tuple[np.ndarray, list[dict[str, float]]]:
        raise ValueError("an external optimizer proposes in the box; a pool is not offered")

    def suggest(self, num_points: int | None = None) -> list[dict[str, Any]]:
        """The optimizer's proposals, each with our ``_id`` (its own kept for ingesting)."""
        suggestions = super().suggest(num_points)
        for ours, theirs in zip(suggestions, self._latest, strict=True):
            if theirs.get(ID_KEY) is not None:
                point = {name: float(theirs[name]) for name in self.space.names}
                self._theirs[ours[ID_KEY]] = (theirs[ID_KEY], point)
        return suggestions

    def _their_id(self, point: Mapping[str, Any]) -> Any:
        """The optimizer's ``_id`` for this trial, if it ran where the optimizer proposed
        (an edited point is a new observation to it); else the campaign's."""
        theirs = self._theirs.get(str(point[ID_KEY]))
        if theirs is None or any(
            abs(float(point.get(name, value)) - value) > 1e-9 * max(1.0, abs(value))
            for name, value in theirs[1].items()
        ):
            return point[ID_KEY]
        return theirs[0]

    def ingest(self, points: Sequence[Mapping[str, Any]]) -> None:
        """Record the results, and tell the optimizer those it can learn from."""
        super().ingest(points)
        learned = []
        for point in points:
            observation = self.history.observations.get(str(point.get(ID_KEY)))
            if observation is not None:
                parameters = {**observation.parameters, ID_KEY: point[ID_KEY]}
                learned.append(
                    {**parameters, **observation.outcomes, ID_KEY: self._their_id(parameters)}
                )
        if learned:
            self.optimizer.ingest(learned)

    def register_failures(self, suggestions: Sequence[Mapping[str, Any]]) -> None:
        super().register_failures(suggestions)
        if callable(getattr(self.optimizer, "register_failures", None)):
            self.optimizer.register_failures(
                [
                    {**s, ID_KEY: self._theirs[str(s[ID_KEY])][0]}
                    for s in suggestions
                    if str(s[ID_KEY]) in self._theirs
                ]
            )
