"""Hostile or careless campaign files: each is refused quickly, by its field, and leaves nothing
on disk; the problem (constraints, pool, reference point) and every agent option are checked
when the file is read."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sdl.campaign.config import CampaignConfigError, load_campaign, parse_campaign
from sdl.cli import main

ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "examples" / "tio2_bo.yaml"
EXAMPLE_TEXT = EXAMPLE.read_text()


@pytest.fixture
def campaign():
    return yaml.safe_load(EXAMPLE_TEXT)


def _written(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "campaign.yaml"
    path.write_text(text)
    return path


def test_a_repeated_key_is_refused_with_its_path_and_both_lines(tmp_path):
    text = EXAMPLE_TEXT.replace(
        "  ph: {low: 1, high: 10, unit: pH}\n",
        "  ph: {low: 1, high: 10, unit: pH}\n  ph: {low: 4, high: 5, unit: pH}\n",
    )
    with pytest.raises(CampaignConfigError, match=r"search_space\.ph: given twice \(lines \d+"):
        load_campaign(_written(tmp_path, text))


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path):
    layers = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    layers += [
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)
    ]
    with pytest.raises(CampaignConfigError, match=r"aliases \(\*name\) are not allowed") as error:
        load_campaign(_written(tmp_path, "\n".join(layers) + "\n"))
    assert len(str(error.value)) < 1000


def test_an_anchor_is_refused_even_without_an_alias(tmp_path):
    text = EXAMPLE_TEXT.replace("budget: 30", "budget: &b 30")
    with pytest.raises(CampaignConfigError, match=r"anchors \(&name\)"):
        load_campaign(_written(tmp_path, text))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: c.update(budget=True), r"budget: Input should be a valid integer"),
        (lambda c: c.update(budget=30.0), r"budget: Input should be a valid integer"),
        (lambda c: c.update(seed="3"), r"seed: Input should be a valid integer"),
        (
            lambda c: c["search_space"]["ph"].update(high=True),
            r"search_space\.ph\.high: Input should be a valid number",
        ),
        (
            lambda c: c["search_space"]["ph"].update(log_scale="yes"),
            r"search_space\.ph\.log_scale: Input should be a valid boolean",
        ),
        (
            lambda c: c["devices"].update(speedup=False),
            r"devices\.speedup: Input should be a valid number",
        ),
    ],
)
def test_no_bool_or_text_where_a_number_belongs(campaign, mutate, message):
    mutate(campaign)
    with pytest.raises(CampaignConfigError, match=message):
        parse_campaign(campaign)


def test_an_int_may_stand_for_a_float_and_a_dumped_campaign_reads_back(campaign):
    config = parse_campaign(campaign)
    assert config.search_space["ph"].low == 1.0
    assert parse_campaign(config.model_dump(mode="json")) == config


@pytest.mark.parametrize(
    ("agent", "message"),
    [
        (
            {"name": "bayesian", "options": {"n_inital": 3}},
            r"agent\.options\.n_inital: Extra inputs are not permitted",
        ),
        (
            {"name": "bayesian", "options": {"n_initial": 1}},
            r"agent\.options\.n_initial: Input should be greater than or equal to 2",
        ),
        (
            {"name": "bayesian", "options": {"kernel": "linear"}},
            r"agent\.options\.kernel: Input should be 'matern52' or 'rbf'",
        ),
        (
            {"name": "bayesian", "options": {"num_restarts": 20, "raw_samples": 10}},
            r"agent\.options: .*raw_samples \(10\) must be at least num_restarts \(20\)",
        ),
        (
            {"name": "sobol", "options": {"n_initial": 3}},
            r"agent\.options\.n_initial: Extra inputs are not permitted",
        ),
        (
            {"name": "bayesian", "options": {"linear_constraints": ["ph <= 5"]}},
            r"agent\.options\.linear_constraints: Extra inputs are not permitted",
        ),
        (
            {"name": "oracle"},
            r"agent\.name: .*choose from \['bayesian', 'mapping', 'random', 'rl', 'sobol'\]",
        ),
    ],
)
def test_every_agent_option_is_checked_when_the_file_is_read(campaign, agent, message):
    campaign["agent"] = agent
    with pytest.raises(CampaignConfigError, match=message):
        parse_campaign(campaign)


def test_an_acquisition_that_cannot_serve_the_problem_is_refused_by_the_agent_field(campaign):
    campaign["agent"] = {"name": "bayesian", "options": {"acquisition": "qucb"}}
    campaign["constraints"] = {"outcomes": ["rutile_fraction <= 0.05"]}
    with pytest.raises(CampaignConfigError, match=r"agent: acquisition 'qucb' takes one objective"):
        parse_campaign(campaign)


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        ({"constraints": {"linear": ["ph <> 5"]}}, r"constraints\.linear\.0: .*must read"),
        (
            {"constraints": {"linear": ["acidity <= 5"]}},
            r"constraints\.linear: .*names 'acidity', which is not a parameter",
        ),
        (
            {"constraints": {"outcomes": ["happiness >= 1"]}},
            r"constraints\.outcomes\.0: 'happiness' is not measured",
        ),
        (
            {"candidates": [{"temperature_c": 500, "duration_h": 2, "ph": 4}]},
            r"candidates: .*no value for parameter\(s\) \['h2o_ti_ratio'\]",
        ),
        (
            {"candidates": [{"temperature_c": 5000, "duration_h": 2, "ph": 4, "h2o_ti_ratio": 10}]},
            r"candidates: candidate 0: temperature_c = 5000 is outside",
        ),
        ({"candidates": "no-such-pool.csv"}, r"candidates: .*No such file"),
        ({"reference_point": {"photoactive_area_m2_g": 1}}, r"reference_point: hypervolume needs"),
    ],
)
def test_the_problem_is_checked_field_by_field(campaign, problem, message):
    campaign.update(problem)
    with pytest.raises(CampaignConfigError, match=message):
        parse_campaign(campaign)


def test_a_candidate_pool_from_csv_reaches_the_agent(campaign, tmp_path):
    from sdl.campaign.agent import build_agent

    pool = tmp_path / "pool.csv"
    pool.write_text("temperature_c,duration_h,ph,h2o_ti_ratio\n500,2,4,10\n600,3,5,20\n")
    campaign.update(candidates=str(pool), agent={"name": "random"})
    agent = build_agent(parse_campaign(campaign))
    proposals = agent.suggest(2)
    assert sorted(p["temperature_c"] for p in proposals) == [500.0, 600.0]


def test_validate_refuses_a_range_the_reactor_would_refuse(tmp_path, capsys):
    text = EXAMPLE_TEXT.replace(
        "temperature_c: {low: 250, high: 950", "temperature_c: {low: 250, high: 1500"
    )
    assert main(["validate", str(_written(tmp_path, text))]) == 2
    error = capsys.readouterr().err
    assert "search_space.temperature_c: [250, 1500] degC leaves the reactor's safe range" in error


def test_a_refused_campaign_leaves_nothing_on_disk(tmp_path, capsys):
    data_dir = tmp_path / "data"
    text = EXAMPLE_TEXT.replace("data_dir: sdl-data", f"data_dir: {data_dir}").replace(
        "budget: 30", "budget: true"
    )
    assert main(["run", str(_written(tmp_path, text)), "-q"]) == 2
    assert "budget: Input should be a valid integer" in capsys.readouterr().err
    assert not data_dir.exists()


def test_an_unwritable_data_dir_is_one_line_naming_it(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    text = EXAMPLE_TEXT.replace("data_dir: sdl-data", f"data_dir: {blocker / 'data'}")
    path = _written(tmp_path, text)
    done = subprocess.run(
        [sys.executable, "-m", "sdl.cli", "run", str(path), "-q", "--budget", "1"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert f"cannot write a catalog in {blocker / 'data'}" in done.stderr
