"""Decision makers: they see points and results only, never Bluesky or devices.

Every agent has the ``bluesky_adaptive.protocols.Optimizer`` surface (see ``Agent``) and is
built from a ``SearchSpace`` and a list of ``Objective`` by ``make_agent``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agents.base import HistoryAgent
from agents.baselines import RandomAgent, SobolAgent
from agents.bayesian import BayesianOptimizationAgent
from agents.protocol import ID_KEY, Agent, History, Observation
from agents.space import Objective, Parameter, SearchSpace

#: Agent classes by the name a campaign uses.
AGENTS: dict[str, type[HistoryAgent]] = {
    "random": RandomAgent,
    "sobol": SobolAgent,
    "bayesian": BayesianOptimizationAgent,
}


def make_agent(
    name: str,
    space: SearchSpace,
    objectives: Sequence[Objective],
    seed: int = 0,
    **options: Any,
) -> HistoryAgent:
    """The agent called ``name`` over ``space`` and ``objectives``.

    Parameters
    ----------
    name
        One of ``AGENTS``: ``"random"``, ``"sobol"``, ``"bayesian"``.
    space, objectives, seed
        Passed to the agent's constructor.
    **options
        Further constructor arguments (``max_evaluations``, ``n_initial``, ...).
    """
    try:
        agent_class = AGENTS[name]
    except KeyError:
        raise ValueError(f"unknown agent {name!r}; valid names: {sorted(AGENTS)}") from None
    return agent_class(space, objectives, seed=seed, **options)


__all__ = [
    "AGENTS",
    "ID_KEY",
    "Agent",
    "BayesianOptimizationAgent",
    "History",
    "HistoryAgent",
    "Objective",
    "Observation",
    "Parameter",
    "RandomAgent",
    "SearchSpace",
    "SobolAgent",
    "make_agent",
]
