"""The agent a campaign names, built over its problem: space, objectives and constraints."""

from __future__ import annotations

from typing import Any

from agents import AGENTS, HistoryAgent, Objective, make_agent
from agents.external import OptimizerAgent
from sdl.campaign.config import CampaignConfig, CampaignConfigError
from sdl.plugins import agent_factory


def build_agent(config: CampaignConfig) -> HistoryAgent:
    """The agent named in ``config``, over the campaign's search space and objectives.

    Raises
    ------
    CampaignConfigError
        The agent refuses the campaign (say an RL policy trained for another problem).
    """
    options = config.agent.options
    if config.agent.name not in AGENTS:
        return _external_agent(config)
    problem: dict[str, Any] = {"outcome_constraints": config.constraints.outcomes}
    if options.takes_reference_point:
        problem["reference_point"] = config.reference_point
    try:
        return make_agent(
            config.agent.name,
            config.agent_space(),
            [Objective(o.name, o.direction, target=o.target) for o in config.objectives],
            seed=config.seed,
            max_evaluations=config.budget,
            **problem,
            **options.model_dump(),
        )
    except ValueError as error:
        raise CampaignConfigError(f"agent ({config.agent.name}): {error}") from None


def _external_agent(config: CampaignConfig) -> HistoryAgent:
    """The optimizer an agent plug-in's factory makes for this campaign, run as our agent."""
    name = config.agent.name
    factory = agent_factory(name)
    space = config.agent_space()
    parameters = [
        {"name": p.name, "low": p.low, "high": p.high, "unit": p.unit, "log_scale": p.log_scale}
        for p in space.parameters
    ]
    objectives = [{"name": o.name, "direction": o.direction} for o in config.objectives]
    try:
        optimizer = factory(  # type: ignore[misc]  # validation made sure it is one
            parameters=parameters,
            objectives=objectives,
            seed=config.seed,
            **config.agent.options.model_dump(),
        )
        return OptimizerAgent(
            space,
            [Objective(o.name, o.direction, target=o.target) for o in config.objectives],
            seed=config.seed,
            max_evaluations=config.budget,
            outcome_constraints=config.constraints.outcomes,
            optimizer=optimizer,
        )
    except Exception as error:  # the plug-in's own error, whatever it is
        raise CampaignConfigError(f"agent ({name}): {type(error).__name__}: {error}") from None
