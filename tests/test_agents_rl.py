"""The RL agent: its Optimizer surface, its weights file, and the training environment."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from agents import Objective, Parameter, RLAgent, SearchSpace, make_agent
from agents.rl import history_tokens, load_policy
from physics.phases import TIO2_PHASES
from sdl.analysis.truth import true_features
from sdl.cli import main as sdl_main
from sdl.training.rl import (
    HELD_OUT_STREAM,
    TIO2_OBJECTIVE,
    TIO2_SPACE,
    TRAIN_STREAM,
    draw_instance,
    held_out_instances,
    instance_rng,
    photoactive_area,
    reported_truth,
)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> str:
    """A tiny policy trained by the real command: 2 PPO batches of 4 campaigns of 4 steps."""
    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("rl") / "policy.pt"
    code = sdl_main(
        [
            "train-rl",
            "--out",
            str(path),
            "--episodes",
            "8",
            "--batch",
            "4",
            "--horizon",
            "4",
            "--hidden",
            "8",
            "--eval-instances",
            "0",
        ]
    )
    assert code == 0
    return str(path)


def tio2_agent(weights: str, seed: int = 0, **options) -> RLAgent:
    return make_agent("rl", TIO2_SPACE, [TIO2_OBJECTIVE], seed=seed, weights=weights, **options)


def play(agent: RLAgent, steps: int, seed: int = 0) -> list[dict]:
    """Suggest and ingest ``steps`` points measured on one held-apart instance."""
    (instance,) = held_out_instances(1)
    rng = np.random.default_rng(seed)
    points = []
    for _ in range(steps):
        (suggestion,) = agent.suggest()
        unit = TIO2_SPACE.to_unit(TIO2_SPACE.to_array([suggestion]))
        points.append({**suggestion, TIO2_OBJECTIVE.name: float(instance.measure(unit, rng)[0])})
        agent.ingest(points[-1:])
    return points


def test_training_command_writes_a_policy_that_records_its_problem(weights):
    policy = load_policy(weights, TIO2_SPACE, TIO2_OBJECTIVE)
    assert policy.dim == 4 and policy.horizon == 4
    saved = torch.load(weights, weights_only=True)
    assert saved["training"]["episodes"] == 8
    assert [p["name"] for p in saved["problem"]["space"]] == list(TIO2_SPACE.names)
    assert saved["problem"]["space"][0] == {
        "name": "temperature_c",
        "low": 250.0,
        "high": 950.0,
        "unit": "degC",
        "log": False,
    }
    assert saved["problem"]["objective"] == {
        "name": TIO2_OBJECTIVE.name,
        "direction": "maximize",
    }


def test_proposals_lie_in_the_space_and_report_the_policy_belief(weights):
    agent = tio2_agent(weights, max_evaluations=6)
    history = play(agent, 6)
    assert agent.should_stop() == (True, "budget spent: 6 of 6 evaluations")
    batch = agent.suggest(3)
    assert all(TIO2_SPACE.contains(s) for s in batch)
    assert len({s["_id"] for s in batch}) == 3
    assert len({s["temperature_c"] for s in batch}) == 3
    report = agent.report()
    assert set(report) == {s["_id"] for s in batch}
    belief = report[batch[0]["_id"]]
    assert TIO2_SPACE.contains({n: belief[f"{n}_policy_centre"] for n in TIO2_SPACE.names})
    assert 0 < belief["policy_spread_unit"] < 1
    best_id, _, outcomes = agent.get_best_points()[0]
    assert outcomes[TIO2_OBJECTIVE.name] == max(p[TIO2_OBJECTIVE.name] for p in history)


def test_same_seed_and_history_give_the_same_proposal(weights):
    first = tio2_agent(weights, seed=3)
    history = play(first, 5)
    rebuilt, other_seed = tio2_agent(weights, seed=3), tio2_agent(weights, seed=4)
    rebuilt.ingest(history)
    other_seed.ingest(history)
    (a,), (b,), (c,) = first.suggest(), rebuilt.suggest(), other_seed.suggest()
    names = TIO2_SPACE.names
    assert [a[n] for n in names] == pytest.approx([b[n] for n in names], abs=1e-9)
    assert [a[n] for n in names] != pytest.approx([c[n] for n in names], abs=1e-6)


def test_a_space_of_another_dimension_is_refused(weights):
    space = SearchSpace((Parameter("x1", 0.0, 1.0, ""), Parameter("x2", 0.0, 1.0, "")))
    with pytest.raises(
        ValueError, match=r"trained for another problem.*searches \['temperature_c'"
    ):
        make_agent("rl", space, [Objective("y", "maximize")], weights=weights)


def test_the_same_names_in_another_box_or_for_another_objective_are_refused(weights):
    wider = SearchSpace(
        tuple(
            Parameter(p.name, p.low, 1200.0, p.unit) if p.name == "temperature_c" else p
            for p in TIO2_SPACE.parameters
        )
    )
    with pytest.raises(ValueError) as refusal:
        make_agent("rl", wider, [Objective("grain_size_nm", "minimize")], weights=weights)
    message = str(refusal.value)
    assert "temperature_c: 250 to 950 degC in training, 250 to 1200 degC here" in message
    assert f"maximize {TIO2_OBJECTIVE.name} in training, minimize grain_size_nm here" in message
    assert "duration_h" not in message
    reordered = SearchSpace(tuple(reversed(TIO2_SPACE.parameters)))
    with pytest.raises(ValueError, match="the same, in another order"):
        make_agent("rl", reordered, [TIO2_OBJECTIVE], weights=weights)


def test_sdl_validate_refuses_a_campaign_whose_policy_was_trained_for_another_box(
    weights, tmp_path, capsys
):
    campaign = yaml.safe_load((Path(__file__).parent.parent / "examples/tio2_bo.yaml").read_text())
    campaign.update(
        data_dir=str(tmp_path / "data"),
        agent={"name": "rl", "options": {"weights": weights}},
        objectives=[{"name": TIO2_OBJECTIVE.name, "direction": "maximize"}],
    )
    path = tmp_path / "rl.yaml"
    path.write_text(yaml.safe_dump(campaign, sort_keys=False))
    assert sdl_main(["validate", str(path)]) == 0
    campaign["search_space"]["ph"]["high"] = 9.0
    path.write_text(yaml.safe_dump(campaign, sort_keys=False))
    assert sdl_main(["validate", str(path)]) == 2
    error = capsys.readouterr().err
    assert "agent (rl)" in error and "ph: 1 to 10 pH in training, 1 to 9 pH here" in error
    assert not (tmp_path / "data").exists()


def test_a_policy_file_that_does_not_record_its_problem_is_refused(weights, tmp_path):
    saved = torch.load(weights, weights_only=True)
    del saved["problem"]
    saved["format"] = "sdl-rl-policy-1"
    old = tmp_path / "old.pt"
    torch.save(saved, old)
    with pytest.raises(ValueError, match="records its search space and objective.*sdl train-rl"):
        tio2_agent(str(old))


def test_missing_weights_say_how_to_make_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="sdl train-rl --out"):
        tio2_agent(str(tmp_path / "absent.pt"))


def test_the_rl_agent_refuses_several_objectives(weights):
    objectives = [TIO2_OBJECTIVE, Objective("grain_size_nm", "minimize")]
    with pytest.raises(ValueError, match="one objective, got 2"):
        make_agent("rl", TIO2_SPACE, objectives, weights=weights)


def test_proposals_meet_linear_constraints(weights):
    agent = tio2_agent(weights, linear_constraints=["temperature_c + 50*duration_h <= 1000"])
    play(agent, 3)
    for suggestion in agent.suggest(4):
        assert suggestion["temperature_c"] + 50 * suggestion["duration_h"] <= 1000 + 1e-6


def test_history_features_do_not_depend_on_the_objective_scale():
    rng = np.random.default_rng(0)
    unit_x = torch.as_tensor(rng.random((1, 6, 3)), dtype=torch.float32)
    score = torch.as_tensor(rng.normal(size=(1, 6)), dtype=torch.float32)
    mask = torch.tensor([[True] * 5 + [False]])
    tokens, x_best = history_tokens(unit_x, score, mask)
    scaled, scaled_best = history_tokens(unit_x, 250.0 * score + 1e3, mask)
    torch.testing.assert_close(tokens, scaled, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(x_best, scaled_best)
    best = int(score[0, :5].argmax())
    assert tokens[0, best, 3] == 1.0 and tokens[0, best, 5] == 1.0
    assert torch.all(tokens[0, 5] == 0)


def test_the_environment_objective_is_the_simulator_truth():
    instance = draw_instance(instance_rng(TRAIN_STREAM, 0, 0))
    conditions = {"temperature_c": 520.0, "duration_h": 2.0, "ph": 4.0, "h2o_ti_ratio": 20.0}
    expected = true_features(instance.model.expected(conditions), TIO2_PHASES[1:])
    values = photoactive_area(instance.model, TIO2_SPACE.to_array([conditions]))
    assert values[0] == pytest.approx(expected[TIO2_OBJECTIVE.name], rel=1e-9)
    assert instance.median < values[0] <= instance.optimum * 1.05


def test_held_apart_instances_are_not_training_instances():
    held_out = held_out_instances(3)
    trained = [draw_instance(instance_rng(TRAIN_STREAM, 0, i)) for i in range(3)]
    assert all(h.model != t.model for h in held_out for t in trained)
    assert held_out[0].model == draw_instance(instance_rng(HELD_OUT_STREAM, 0)).model


def test_the_reward_scores_the_earliest_best_measured_point():
    measured = np.array([[1.0, 3.0, 2.0, 3.0]])
    truth = np.array([[0.1, 0.5, 0.9, 0.7]])
    np.testing.assert_array_equal(reported_truth(measured, truth), [[0.1, 0.5, 0.5, 0.5]])
