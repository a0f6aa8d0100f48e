"""The surface every agent offers, and the record of trials that all agents keep the same way.

``Agent`` is structural (a ``typing.Protocol``): the methods of
``bluesky_adaptive.protocols.Optimizer`` and of its optional ``TrialFaultAware``,
``CanRegisterSuggestions`` and ``SupportsStoppingCriteria``, plus ``report``. It is written
out here rather than imported so that ``agents`` does not depend on Bluesky.

``History`` is what an agent has been told, keyed by the suggestion ``_id``. Every piece of
agent state is derived from it, so ingesting a campaign's points in order into a fresh agent
rebuilds the agent.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from agents.space import Objective, OutcomeConstraint, SearchSpace

logger = logging.getLogger(__name__)

#: Key of the suggestion id in suggestions, points and failures.
ID_KEY = "_id"


@runtime_checkable
class Agent(Protocol):
    """A decision maker that proposes conditions and learns from their outcomes."""

    def suggest(self, num_points: int | None = None) -> list[dict[str, Any]]:
        """Propose ``num_points`` (default 1) points, each with a fresh unique ``_id``."""
        ...

    def ingest(self, points: Sequence[Mapping[str, Any]]) -> None:
        """Learn measured outcomes; a point with a missing or non-finite outcome is a failure."""
        ...

    def get_best_points(self) -> list[tuple[str, dict[str, float], dict[str, float]]]:
        """``(_id, parameters, outcomes)`` of the best observation (Pareto set if several)."""
        ...

    def register_failures(self, suggestions: Sequence[Mapping[str, Any]]) -> None:
        """Mark trials as failed: never learned from, never proposed again."""
        ...

    def register_suggestions(
        self, suggestions: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        """Accept points chosen elsewhere (a person) as pending trials, adding their ``_id``."""
        ...

    def should_stop(self) -> tuple[bool, str | None]:
        """``(stop, reason)``: the budget is spent or a target is reached."""
        ...

    def report(self) -> dict[str, dict[str, float]]:
        """What the agent believed about each point of its latest ``suggest``, by ``_id``."""
        ...


def new_id() -> str:
    """A fresh suggestion id."""
    return uuid.uuid4().hex


def derived_seed(seed: int, *keys: int) -> int:
    """A 32-bit seed that depends only on ``seed`` and ``keys`` (e.g. how many trials are known).

    Agents seed each proposal with it so a rebuilt agent proposes what the original would have.
    """
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0])


@dataclass(frozen=True)
class Observation:
    """One learned trial: parameter values and outcome values, by name, and the standard
    uncertainty the measurement reported for each outcome (``<name>_std``), where it did."""

    parameters: dict[str, float]
    outcomes: dict[str, float]
    uncertainties: dict[str, float] = field(default_factory=dict)


class History:
    """The trials an agent knows about, by ``_id``, in the order it was told about them.

    A trial is in exactly one of three states:

    * pending: suggested or registered, no result yet;
    * observed: a result with a finite value for every objective (the only ones to learn from);
    * failed: the trial failed (``register_failures``) or its result lacked an objective value.
      Its parameters are kept where known so that agents can avoid proposing it again.

    Parameters
    ----------
    space
        The search space: the parameter names and bounds.
    objectives
        The objectives; their names must differ from each other and from the parameters'.
    outcome_constraints
        Limits on measured outcomes (objectives or other features). Their outcomes are
        recorded with every observation (a result without them is failed), and only
        observations that meet every limit can be best.
    """

    def __init__(
        self,
        space: SearchSpace,
        objectives: Sequence[Objective],
        outcome_constraints: Sequence[OutcomeConstraint] = (),
    ) -> None:
        objectives = tuple(objectives)
        if not objectives:
            raise ValueError("an agent needs at least one objective")
        if not all(isinstance(o, Objective) for o in objectives):
            raise TypeError("objectives must be Objective objects")
        names = [o.name for o in objectives]
        if len(set(names)) != len(names):
            raise ValueError(f"objective names must be unique, got {names}")
        clashes = sorted(set(names) & set(space.names))
        if clashes:
            raise ValueError(f"names used both as parameter and objective: {clashes}")
        self.space = space
        self.objectives = objectives
        self.outcome_constraints = tuple(outcome_constraints)
        clashes = sorted({c.name for c in self.outcome_constraints} & set(space.names))
        if clashes:
            raise ValueError(
                f"outcome constraints on parameters (use linear_constraints): {clashes}"
            )
        #: Every outcome an observation records: the objectives, then constrained outcomes.
        self.outcome_names = tuple(
            dict.fromkeys([*names, *(c.name for c in self.outcome_constraints)])
        )
        self.pending: dict[str, dict[str, float]] = {}
        self.observations: dict[str, Observation] = {}
        self.failures: dict[str, dict[str, float] | None] = {}
        self._evaluated: set[str] = set()

    @property
    def n_known(self) -> int:
        """How many trials this history holds, in any state."""
        return len(self.pending) + len(self.observations) + len(self.failures)

    @property
    def n_evaluations(self) -> int:
        """How many distinct trials came back through ``ingest``, failed measurements included."""
        return len(self._evaluated)

    def add_pending(self, parameters: Sequence[Mapping[str, float]]) -> list[dict[str, Any]]:
        """Record new pending trials; return them as suggestions with a fresh ``_id`` each."""
        suggestions = []
        for point in parameters:
            values = {name: float(point[name]) for name in self.space.names}
            trial_id = new_id()
            self.pending[trial_id] = values
            suggestions.append({**values, ID_KEY: trial_id})
        return suggestions

    def ingest(self, points: Sequence[Mapping[str, Any]]) -> None:
        """Record results; see ``Agent.ingest``."""
        for point in points:
            trial_id = str(point[ID_KEY]) if point.get(ID_KEY) is not None else new_id()
            parameters = self._parameters_of(trial_id, point)
            if parameters is None:
                missing = [name for name in self.space.names if name not in point]
                raise ValueError(
                    f"point {trial_id!r} is not a known suggestion and lacks parameters {missing}"
                )
            if not self.space.contains(parameters):
                logger.warning(
                    "learning from point %s outside the search space: %s", trial_id, parameters
                )
            self._forget(trial_id)
            self._evaluated.add(trial_id)
            outcomes = {name: _finite_or_nan(point.get(name)) for name in self.outcome_names}
            missing = [name for name, value in outcomes.items() if math.isnan(value)]
            if missing:
                logger.warning(
                    "trial %s has no finite value for %s: recorded as failed", trial_id, missing
                )
                self.failures[trial_id] = parameters
            else:
                uncertainties = {
                    name: std
                    for name in self.outcome_names
                    if (std := _finite_or_nan(point.get(f"{name}_std"))) > 0
                }
                self.observations[trial_id] = Observation(parameters, outcomes, uncertainties)

    def fail(self, suggestions: Sequence[Mapping[str, Any]]) -> None:
        """Record failed trials; see ``Agent.register_failures``."""
        for suggestion in suggestions:
            if suggestion.get(ID_KEY) is None:
                raise ValueError(f"a failed trial must carry its {ID_KEY!r}, got {suggestion}")
            trial_id = str(suggestion[ID_KEY])
            if trial_id in self.observations:
                logger.warning(
                    "trial %s was observed and is now failed: no longer learned from", trial_id
                )
            parameters = self._parameters_of(trial_id, suggestion)
            self._forget(trial_id)
            self.failures[trial_id] = parameters

    def register(self, suggestions: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Validate points chosen elsewhere and record them as pending with a fresh ``_id``."""
        for suggestion in suggestions:
            self.space.validate(suggestion)
        return self.add_pending(suggestions)

    def is_feasible(self, observation: Observation) -> bool:
        """Whether the observation meets every outcome constraint."""
        return all(c.satisfied(observation.outcomes[c.name]) for c in self.outcome_constraints)

    def best_points(self) -> list[tuple[str, dict[str, float], dict[str, float]]]:
        """The best feasible observation for one objective; the non-dominated set for several.

        Among equal values the earliest observation wins. Observations that break an outcome
        constraint are never best (empty if none meets them all).
        """
        ranked = [
            (trial_id, obs, np.array([o.sign * obs.outcomes[o.name] for o in self.objectives]))
            for trial_id, obs in self.observations.items()
            if self.is_feasible(obs)
        ]
        if len(self.objectives) == 1 and ranked:
            ranked = [max(ranked, key=lambda item: item[2][0])]
        return [
            (trial_id, dict(obs.parameters), dict(obs.outcomes))
            for trial_id, obs, score in ranked
            if not any(np.all(other >= score) and np.any(other > score) for _, _, other in ranked)
        ]

    def stop_reason(self, max_evaluations: int | None) -> str | None:
        """Why the campaign should stop now (budget spent, targets met), or None."""
        if max_evaluations is not None and self.n_evaluations >= max_evaluations:
            return f"budget spent: {self.n_evaluations} of {max_evaluations} evaluations"
        targeted = [o for o in self.objectives if o.target is not None]
        if targeted:
            for trial_id, obs in self.observations.items():
                if all(o.reached(obs.outcomes[o.name]) for o in targeted):
                    values = ", ".join(
                        f"{o.name} = {obs.outcomes[o.name]:g} (target {o.target:g})"
                        for o in targeted
                    )
                    return f"target reached by trial {trial_id}: {values}"
        return None

    def _parameters_of(self, trial_id: str, point: Mapping[str, Any]) -> dict[str, float] | None:
        """The trial's parameters: from the point if complete, else from what is on record."""
        if all(name in point for name in self.space.names):
            return {name: float(point[name]) for name in self.space.names}
        if trial_id in self.pending:
            return self.pending[trial_id]
        if trial_id in self.observations:
            return self.observations[trial_id].parameters
        return self.failures.get(trial_id)

    def _forget(self, trial_id: str) -> None:
        self.pending.pop(trial_id, None)
        self.observations.pop(trial_id, None)
        self.failures.pop(trial_id, None)


def _finite_or_nan(value: Any) -> float:
    """``value`` as a float, NaN if it is missing or not a finite number."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number if math.isfinite(number) else math.nan
