"""The agent a campaign names, built over its problem: space, objectives and constraints."""

from __future__ import annotations

from typing import Any

from agents import HistoryAgent, Objective, make_agent
from sdl.campaign.config import CampaignConfig


def build_agent(config: CampaignConfig) -> HistoryAgent:
    """The agent named in ``config``, over the campaign's search space and objectives."""
    options = config.agent.options
    problem: dict[str, Any] = {"outcome_constraints": config.constraints.outcomes}
    if options.takes_reference_point:
        problem["reference_point"] = config.reference_point
    return make_agent(
        config.agent.name,
        config.agent_space(),
        [Objective(o.name, o.direction, target=o.target) for o in config.objectives],
        seed=config.seed,
        max_evaluations=config.budget,
        **problem,
        **options.model_dump(),
    )
