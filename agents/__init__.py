"""Decision makers: they see points and results only, never Bluesky or devices.

Every agent has the ``bluesky_adaptive.protocols.Optimizer`` surface (see ``Agent``) and is
built from a ``SearchSpace`` and a list of ``Objective`` by ``make_agent``.

The agent classes load torch, so they are imported on first use (``agents.RLAgent``,
``make_agent``): the search space, the options and the protocol stay light.
"""

from __future__ import annotations

import csv
import importlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from agents.base import HistoryAgent
from agents.options import AGENT_OPTIONS
from agents.protocol import ID_KEY, Agent, History, Observation
from agents.space import LinearConstraint, Objective, OutcomeConstraint, Parameter, SearchSpace

if TYPE_CHECKING:
    from agents.baselines import RandomAgent, SobolAgent
    from agents.bayesian import BayesianOptimizationAgent
    from agents.mapping import PhaseMappingAgent
    from agents.rl import RLAgent

#: Agent classes by the name a campaign uses, as ``module:Class``.
AGENTS: dict[str, str] = {name: options.agent_class for name, options in AGENT_OPTIONS.items()}


def agent_class(name: str) -> type[HistoryAgent]:
    """The class of the agent called ``name`` (one of ``AGENTS``)."""
    try:
        module, _, class_name = AGENTS[name].partition(":")
    except KeyError:
        raise ValueError(f"unknown agent {name!r}; valid names: {sorted(AGENTS)}") from None
    cls: type[HistoryAgent] = getattr(importlib.import_module(module), class_name)
    return cls


def __getattr__(name: str) -> Any:
    """An agent class by its class name, imported on first use."""
    for agent, path in AGENTS.items():
        if path.endswith(f":{name}"):
            return agent_class(agent)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_agent(
    name: str,
    space: SearchSpace,
    objectives: Sequence[Objective],
    seed: int = 0,
    candidates: str | Path | Sequence[Mapping[str, float]] | None = None,
    linear_constraints: Sequence[str | Mapping[str, Any] | LinearConstraint] = (),
    **options: Any,
) -> HistoryAgent:
    """The agent called ``name`` over ``space`` and ``objectives``.

    Parameters
    ----------
    name
        One of ``AGENTS``: ``"random"``, ``"sobol"``, ``"bayesian"``, ``"rl"``, ``"mapping"``.
    space, objectives, seed
        Passed to the agent's constructor.
    candidates
        Make the search a pool: the agent then proposes only these points, each once. A list
        of ``{parameter: value}`` mappings, or the path of a CSV file with one column per
        parameter (a header row naming them; other columns are ignored). Every candidate must
        lie inside ``space``. None keeps ``space`` as it is.
    linear_constraints
        Further linear limits on the conditions, added to ``space``'s: ``"a + 2*b <= 1"``
        strings, ``{"coefficients": {...}, "op": "<=", "bound": 1}`` mappings or
        ``LinearConstraint`` objects.
    **options
        Further constructor arguments: ``max_evaluations``, ``outcome_constraints``,
        ``reference_point`` and the agent's options (:mod:`agents.options`).
    """
    cls = agent_class(name)
    if candidates is not None or linear_constraints:
        space = SearchSpace(
            space.parameters,
            candidates=(
                space.candidates
                if candidates is None
                else tuple(map(tuple, candidate_rows(space, candidates).tolist()))
            ),
            linear_constraints=(
                *space.linear_constraints,
                *(LinearConstraint.parse(c) for c in linear_constraints),
            ),
        )
    return cls(space, objectives, seed=seed, **options)


def candidate_rows(
    space: SearchSpace, candidates: str | Path | Sequence[Mapping[str, float]]
) -> np.ndarray:
    """``n x d`` array of a candidate list or CSV file, columns in ``space``'s order."""
    rows: list[Mapping[str, Any]]
    if isinstance(candidates, str | Path):
        path = Path(candidates)
        with path.open(newline="") as file:
            rows = list(csv.DictReader(file))
        where = f"candidate file {str(path)!r}"
    else:
        rows = list(candidates)
        where = "candidates"
    missing = sorted({name for row in rows for name in space.names if name not in row})
    if missing:
        raise ValueError(f"{where}: no value for parameter(s) {missing}")
    return np.array([[float(row[name]) for name in space.names] for row in rows], dtype=float)


__all__ = [
    "AGENTS",
    "ID_KEY",
    "Agent",
    "BayesianOptimizationAgent",
    "History",
    "HistoryAgent",
    "LinearConstraint",
    "Objective",
    "Observation",
    "OutcomeConstraint",
    "Parameter",
    "PhaseMappingAgent",
    "RLAgent",
    "RandomAgent",
    "SearchSpace",
    "SobolAgent",
    "agent_class",
    "candidate_rows",
    "make_agent",
]
