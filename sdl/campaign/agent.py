"""The agent a campaign names, built over its problem: space, objectives and constraints."""

from __future__ import annotations

from typing import Any

from agents import HistoryAgent, Objective, make_agent
from sdl.campaign.config import CampaignConfig, CampaignConfigError


def build_agent(config: CampaignConfig) -> HistoryAgent:
    """The agent named in ``config``, over the campaign's search space and objectives.

    Raises
    ------
    CampaignConfigError
        The agent refuses the campaign (say an RL policy trained for another problem).
    """
    options = config.agent.options
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
