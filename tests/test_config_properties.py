"""Property-based: any search-space range is either accepted as given or refused by name."""

from __future__ import annotations

import math
from pathlib import Path

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.reactor import reactor_class
from devices.sim_lab import SimulatedLab
from sdl.campaign.config import CampaignConfigError, parse_campaign
from sdl.loop.runner import refusal_reason
from simulators.tio2 import TIO2_CONDITION_LIMITS, TiO2SolGel

EXAMPLE = yaml.safe_load((Path(__file__).parent.parent / "examples" / "tio2_bo.yaml").read_text())
numbers = st.floats(allow_nan=True, allow_infinity=True, width=64)


@settings(max_examples=200, deadline=None)
@given(low=numbers, high=numbers)
def test_a_range_is_accepted_exactly_when_finite_ordered_and_inside_the_safe_range(low, high):
    campaign = {
        **EXAMPLE,
        "search_space": {**EXAMPLE["search_space"], "ph": {"low": low, "high": high, "unit": "pH"}},
    }
    safe_low, safe_high, _ = TIO2_CONDITION_LIMITS["ph"]
    valid = math.isfinite(low) and math.isfinite(high) and safe_low <= low < high <= safe_high
    try:
        config = parse_campaign(campaign)
    except CampaignConfigError as error:
        assert not valid
        assert "search_space.ph" in str(error)
    else:
        assert valid
        assert (config.search_space["ph"].low, config.search_space["ph"].high) == (low, high)


@settings(max_examples=300, deadline=None)
@given(proposal=st.fixed_dictionaries({name: numbers for name in EXAMPLE["search_space"]}))
def test_a_proposal_is_refused_exactly_when_it_leaves_the_search_space_or_the_safe_limits(
    proposal,
):
    config = parse_campaign(EXAMPLE)
    reactor = reactor_class("PropertyReactor", TIO2_CONDITION_LIMITS)(
        name="reactor", lab=SimulatedLab(), model=TiO2SolGel()
    )
    safe = all(
        config.search_space[name].low <= value <= config.search_space[name].high
        and TIO2_CONDITION_LIMITS[name][0] <= value <= TIO2_CONDITION_LIMITS[name][1]
        for name, value in proposal.items()
    )
    reason = refusal_reason(proposal, config.search_space, reactor)
    assert (reason is None) == safe
    if reason is not None:  # the message names the condition that is out of range
        assert any(name in reason for name in proposal)
