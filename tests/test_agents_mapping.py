"""The phase-mapping agent: it models which phases are present where and measures where the
map is least certain; reproducible, inside the space, reachable from a campaign file."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import yaml

from agents import Objective, Parameter, PhaseMappingAgent, SearchSpace, make_agent
from agents.options import MappingOptions
from sdl.campaign.agent import build_agent
from sdl.campaign.config import CampaignConfigError, load_campaign, parse_campaign

EXAMPLE = Path(__file__).parent.parent / "examples" / "fegapd_mapping.yaml"
OBJECTIVE = Objective("y", "maximize")

#: Where the toy map's phase "b" sets in (along x).
BOUNDARY = 0.5


@pytest.fixture
def space() -> SearchSpace:
    return SearchSpace(
        (Parameter("x", 0.0, 1.0, ""), Parameter("z", 0.0, 1.0, "")),
        linear_constraints=("x + z <= 1.5",),
    )


def two_region_result(point: dict) -> dict:
    """A single-phase field of "a" for x below ``BOUNDARY``, and beyond it a two-phase field
    whose "b" grows by the lever rule to 1 at x = 1; y = x."""
    b = max(0.0, (point["x"] - BOUNDARY) / (1.0 - BOUNDARY))
    return {**point, "a_fraction": 1.0 - b, "b_fraction": b, "y": point["x"]}


def grid_points(n: int = 4) -> list[dict]:
    """An ``n x n`` grid of the unit square that meets ``x + z <= 1.5``."""
    steps = np.linspace(0.05, 0.95, n)
    return [{"x": x, "z": z} for x in steps for z in steps if x + z <= 1.5]


def mapped_agent(space: SearchSpace, **options) -> PhaseMappingAgent:
    agent = PhaseMappingAgent(space, [OBJECTIVE], seed=3, **options)
    agent.ingest([two_region_result(p) for p in grid_points()])
    return agent


def test_same_seed_and_history_give_the_same_suggestions(space):
    first, second = mapped_agent(space), mapped_agent(space)
    a, b = first.suggest(2), second.suggest(2)
    assert space.to_array(a) == pytest.approx(space.to_array(b))
    assert first.report()[a[0]["_id"]] == pytest.approx(second.report()[b[0]["_id"]])


def test_an_agent_rebuilt_from_its_results_proposes_the_same(space):
    original = PhaseMappingAgent(space, [OBJECTIVE], seed=1, n_initial=3)
    results = []
    for _ in range(4):
        (point,) = original.suggest()
        results.append(two_region_result(point))
        original.ingest(results[-1:])
    rebuilt = PhaseMappingAgent(space, [OBJECTIVE], seed=1, n_initial=3)
    # As read back from a catalog: every result, some without the suggestion's id.
    rebuilt.ingest([results[0], *({k: v for k, v in r.items() if k != "_id"} for r in results[1:])])
    (a,), (b,) = original.suggest(), rebuilt.suggest()
    assert (a["x"], a["z"]) == pytest.approx((b["x"], b["z"]))


def test_a_batch_lies_inside_the_bounds_and_the_linear_constraint_and_spreads(space):
    agent = mapped_agent(space)
    batch = agent.suggest(4)
    for point in batch:
        space.validate(point)
    unit = space.to_unit(space.to_array(batch))
    distances = np.linalg.norm(unit[:, None] - unit[None], axis=-1)[np.triu_indices(4, 1)]
    assert distances.min() > 0.05


def test_it_measures_near_the_phase_boundary_more_often_than_random_would(space):
    agent = mapped_agent(space)
    chosen = []
    for _ in range(4):
        (point,) = agent.suggest()
        agent.ingest([two_region_result(point)])
        chosen.append(point["x"])
    # A uniform point lies within 0.15 of the boundary 30 % of the time.
    assert np.mean(np.abs(np.array(chosen) - BOUNDARY) < 0.15) >= 0.75


def test_the_predicted_map_labels_each_region_by_its_phases(space):
    agent = mapped_agent(space)
    prediction = agent.predict_map([{"x": 0.1, "z": 0.5}, {"x": 0.9, "z": 0.3}])
    assert prediction.phases == ("a", "b")
    assert prediction.labels == [("a",), ("a", "b")]
    assert prediction.presence.shape == (2, 2)
    assert (prediction.confidence > 0.85).all()


def test_report_gives_presence_and_entropy_behind_each_proposal(space):
    agent = mapped_agent(space)
    (point,) = agent.suggest()
    belief = agent.report()[point["_id"]]
    assert {"a_presence_probability", "b_presence_probability"} <= set(belief)
    assert 0 <= belief["map_entropy_bits"] <= 2
    assert belief["entropy_removed_bits"] > 0 and 0 < belief["acquisition_value"] <= 1
    assert 0 <= belief["label_confidence"] <= 1


def test_only_the_named_phases_are_mapped(space):
    agent = mapped_agent(space, phases=["b"])
    assert agent.mapped_phases() == ("b",)
    assert agent.predict_map([{"x": 0.1, "z": 0.5}]).labels == [()]


def test_the_property_weight_draws_proposals_towards_a_good_objective(space):
    agent = mapped_agent(space, property_weight=1.0)
    (point,) = agent.suggest()
    assert point["x"] > 0.8
    assert "y_predicted_mean" in agent.report()[point["_id"]]


def test_without_phase_fractions_it_proposes_sobol_points_and_says_why(space, caplog):
    agent = PhaseMappingAgent(space, [OBJECTIVE], seed=0, n_initial=2)
    agent.ingest([{"x": 0.2, "z": 0.2, "y": 1.0}, {"x": 0.7, "z": 0.1, "y": 2.0}])
    with caplog.at_level(logging.WARNING, logger="agents.mapping"):
        (point,) = agent.suggest()
    assert "report the fraction of every phase" in caplog.text
    assert space.contains(point) and agent.report() == {point["_id"]: {}}
    with pytest.raises(ValueError, match="no phase map yet"):
        agent.predict_map([point])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"presence_threshold": 0.0}, r"presence_threshold: Input should be greater than 0"),
        ({"property_weight": 1.5}, r"property_weight: Input should be less than or equal to 1"),
        ({"n_initial": 1}, r"n_initial: Input should be greater than or equal to 2"),
        ({"exclusion_radius": -0.1}, r"exclusion_radius: Input should be greater than or equal"),
        ({"acquisition": "ucb"}, r"acquisition: Input should be 'integrated' or 'entropy'"),
        ({"phases": ["a", "a"]}, r"phases must be distinct.*repeated: \['a'\]"),
    ],
)
def test_invalid_options_are_refused_by_name_with_the_allowed_range(space, options, message):
    with pytest.raises(ValueError, match=message):
        PhaseMappingAgent(space, [OBJECTIVE], **options)


def test_the_property_term_needs_exactly_one_objective(space):
    objectives = [OBJECTIVE, Objective("w", "minimize")]
    PhaseMappingAgent(space, objectives)
    with pytest.raises(ValueError, match=r"property_weight 0.5 .* one objective; .* has 2"):
        make_agent("mapping", space, objectives, property_weight=0.5)


def test_the_example_campaign_builds_the_mapping_agent():
    config = load_campaign(EXAMPLE)
    assert config.agent.name == "mapping"
    assert isinstance(config.agent.options, MappingOptions)
    agent = build_agent(config)
    assert isinstance(agent, PhaseMappingAgent)
    assert agent.phases == ("bcc", "fe3ga_d03", "fe3ga_l12", "fcc", "fepd_l10", "pdga_b20")
    assert agent.max_evaluations == config.budget


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"presence_treshold": 0.1}, r"agent\.options\.presence_treshold: Extra inputs"),
        ({"exclusion_radius": 2.0}, r"agent\.options\.exclusion_radius: .*less than or equal to 1"),
    ],
)
def test_a_campaign_file_refuses_bad_mapping_options_by_path(options, message):
    data = yaml.safe_load(EXAMPLE.read_text())
    data["agent"]["options"] = options
    with pytest.raises(CampaignConfigError, match=message):
        parse_campaign(data)
