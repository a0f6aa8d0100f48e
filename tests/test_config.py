"""The campaign file: the example is valid; every mistake is reported by its field path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sdl.campaign.config import CampaignConfigError, load_campaign, parse_campaign

EXAMPLE = Path(__file__).parent.parent / "examples" / "tio2_bo.yaml"


@pytest.fixture
def campaign():
    return yaml.safe_load(EXAMPLE.read_text())


def test_example_campaign_is_valid():
    config = load_campaign(EXAMPLE)
    assert config.budget == 30 and config.agent.name == "bayesian"
    assert set(config.search_space) == {"temperature_c", "duration_h", "ph", "h2o_ti_ratio"}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: c.update(colour="blue"), r"colour: Extra inputs are not permitted"),
        (
            lambda c: c["search_space"]["temperature_c"].update(low=900, high=300),
            r"search_space\.temperature_c: .*low must be below high",
        ),
        (lambda c: c["search_space"]["ph"].pop("unit"), r"search_space\.ph\.unit: Field required"),
        (lambda c: c.update(budget=0), r"budget: Input should be greater than 0"),
        (lambda c: c["agent"].update(name="oracle"), r"agent\.name: .*unknown agent 'oracle'"),
        (lambda c: c["objectives"][0].update(direction="up"), r"objectives\.0\.direction"),
        (
            lambda c: c["objectives"][0].update(name="happiness"),
            r"objectives\.0\.name: 'happiness' is not measured.*photoactive_area_m2_g",
        ),
        (
            lambda c: c.update(instruments=["xrd"]),
            r"'photoactive_area_m2_g' is not measured by instruments \['xrd'\]",
        ),
        (lambda c: c["devices"].update(system="unobtainium"), r"devices\.system: .*unknown"),
        (lambda c: c.update(instruments=["xrd", "xrd"]), r"instruments: .*must not repeat"),
        (lambda c: c.update(fixed_conditions={"ph": 3.0}), r"fixed_conditions: \['ph'\] are also"),
    ],
)
def test_bad_campaign_is_refused_naming_the_field(campaign, mutate, message):
    mutate(campaign)
    with pytest.raises(CampaignConfigError, match=message):
        parse_campaign(campaign)


def test_missing_file_and_bad_yaml_are_clear_errors(tmp_path):
    with pytest.raises(CampaignConfigError, match="campaign file not found"):
        load_campaign(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(CampaignConfigError, match="not valid YAML"):
        load_campaign(broken)


@pytest.mark.parametrize(
    "path",
    sorted((Path(__file__).parent.parent / "examples").glob("*.yaml")),
    ids=lambda path: path.name,
)
def test_every_example_campaign_is_valid(path):
    assert load_campaign(path).budget > 0


def test_a_discrete_knob_reaches_the_agent_and_its_levels_are_checked(tmp_path):
    from sdl.campaign.agent import build_agent

    data = yaml.safe_load(EXAMPLE.read_text())
    data["search_space"]["ph"] = {"low": 1, "high": 10, "unit": "pH", "values": [2, 4, 7]}
    config = parse_campaign(data)
    proposals = build_agent(config).suggest(3)
    assert {p["ph"] for p in proposals} <= {2.0, 4.0, 7.0}
    data["search_space"]["ph"]["values"] = [2, 12]
    with pytest.raises(CampaignConfigError, match=r"search_space\.ph: .*\[12\.0\] lie outside"):
        parse_campaign(data)


def test_an_rl_campaign_must_name_its_trained_policy_and_the_file_must_exist(campaign, tmp_path):
    campaign["agent"] = {"name": "rl"}
    with pytest.raises(CampaignConfigError, match=r"agent\.options: .*weights: .*sdl train-rl"):
        parse_campaign(campaign)
    policy = tmp_path / "rl_tio2.pt"
    campaign["agent"]["options"] = {"weights": str(policy)}
    with pytest.raises(CampaignConfigError, match=r"agent\.options: .*weights: no such file"):
        parse_campaign(campaign)
    policy.write_bytes(b"")
    assert parse_campaign(campaign).agent.options.weights == policy
