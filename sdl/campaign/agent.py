"""The agent a campaign names, built over its search space and objectives."""

from __future__ import annotations

from typing import Any

from agents import Objective, Parameter, SearchSpace, make_agent
from sdl.campaign.config import CampaignConfig


def build_agent(config: CampaignConfig) -> Any:
    """The agent named in ``config``, over the campaign's search space and objectives."""
    space = SearchSpace(
        tuple(
            Parameter(
                name,
                p.low,
                p.high,
                p.unit,
                log_scale=p.log_scale,
                values=tuple(p.values) if p.values else None,
                categorical=p.categorical,
            )
            for name, p in config.search_space.items()
        )
    )
    objectives = [Objective(o.name, o.direction, target=o.target) for o in config.objectives]
    return make_agent(
        config.agent.name,
        space,
        objectives,
        seed=config.seed,
        max_evaluations=config.budget,
        **config.agent.options,
    )
