"""Property-based: any search-space range is either accepted as given or refused by name."""

from __future__ import annotations

import math
from pathlib import Path

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from sdl.config import CampaignConfigError, parse_campaign

EXAMPLE = yaml.safe_load((Path(__file__).parent.parent / "examples" / "tio2_bo.yaml").read_text())
numbers = st.floats(allow_nan=True, allow_infinity=True, width=64)


@settings(max_examples=200, deadline=None)
@given(low=numbers, high=numbers)
def test_a_range_is_accepted_exactly_when_finite_and_ordered(low, high):
    campaign = {**EXAMPLE, "search_space": {**EXAMPLE["search_space"],
                                            "ph": {"low": low, "high": high, "unit": "pH"}}}
    valid = math.isfinite(low) and math.isfinite(high) and low < high
    try:
        config = parse_campaign(campaign)
    except CampaignConfigError as error:
        assert not valid
        assert "search_space.ph" in str(error)
    else:
        assert valid
        assert (config.search_space["ph"].low, config.search_space["ph"].high) == (low, high)
