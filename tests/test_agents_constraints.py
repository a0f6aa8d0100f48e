"""Constraints, several objectives and mixed spaces: what a campaign file can ask of an agent."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agents import (
    LinearConstraint,
    Objective,
    OutcomeConstraint,
    Parameter,
    SearchSpace,
    make_agent,
)

#: A cheaper acquisition optimiser: these tests check feasibility, not optimisation quality.
FAST = {"num_restarts": 2, "raw_samples": 64}


@pytest.fixture
def box() -> SearchSpace:
    return SearchSpace((Parameter("a", 0.0, 1.0, ""), Parameter("b", 0.0, 1.0, "")))


def test_outcome_and_linear_constraints_parse_from_campaign_text():
    assert OutcomeConstraint.parse("rutile_fraction <= 0.05") == OutcomeConstraint(
        "rutile_fraction", "<=", 0.05
    )
    assert OutcomeConstraint.parse({"name": "p", "op": ">=", "bound": 2}).satisfied(2.0)
    constraint = LinearConstraint.parse("a + 2*b - 0.5*c <= 1")
    assert constraint.coefficients == (("a", 1.0), ("b", 2.0), ("c", -0.5))
    with pytest.raises(ValueError, match="must read 'name <= bound' \\(or with '>='\\)"):
        OutcomeConstraint.parse("rutile_fraction < 0.05")


def test_a_linear_constraint_must_name_parameters_that_are_not_log_scaled():
    with pytest.raises(ValueError, match="names 'c', which is not a parameter"):
        SearchSpace((Parameter("a", 0.0, 1.0, ""),), linear_constraints=("a + c <= 1",))
    with pytest.raises(ValueError, match="log scale"):
        SearchSpace(
            (Parameter("a", 1.0, 2.0, "", log_scale=True),), linear_constraints=("a <= 1.5",)
        )


@pytest.mark.parametrize("name", ["random", "sobol", "bayesian"])
def test_every_proposal_meets_the_linear_constraints(name):
    space = SearchSpace(
        (Parameter("a", 0.0, 1.0, ""), Parameter("b", 0.0, 2.0, "")),
        linear_constraints=("a + b <= 1",),
    )
    options = {"n_initial": 3, **FAST} if name == "bayesian" else {}
    agent = make_agent(name, space, [Objective("y", "maximize")], seed=1, **options)
    for _ in range(4):
        batch = agent.suggest(2)
        for point in batch:
            space.validate(point)
            assert point["a"] + point["b"] <= 1.0 + 1e-6
        agent.ingest([{"_id": p["_id"], "y": p["a"] + 2 * p["b"]} for p in batch])
    # The optimum of a + 2 b under a + b <= 1 is on the edge, at (0, 1).
    best = agent.get_best_points()[0][2]["y"]
    assert best > (1.6 if name == "bayesian" else 0.5)


def test_pool_rows_that_break_a_linear_constraint_are_never_proposed(box):
    rows = [{"a": 0.1, "b": 0.1}, {"a": 0.9, "b": 0.9}, {"a": 0.2, "b": 0.5}, {"a": 0.5, "b": 0.6}]
    agent = make_agent(
        "random",
        box,
        [Objective("y", "maximize")],
        candidates=rows,
        linear_constraints=["a + b <= 1"],
    )
    space = agent.space
    assert sorted(int(space.candidate_index(space.to_array([p]))[0]) for p in agent.suggest(2)) == [
        0,
        2,
    ]
    with pytest.raises(ValueError, match="only 0 of the 4 candidates remain"):
        agent.suggest(1)


def test_an_infeasible_observation_is_never_the_best(box):
    agent = make_agent(
        "random", box, [Objective("y", "maximize")], outcome_constraints=["impurity <= 0.1"]
    )
    agent.ingest(
        [
            {"a": 0.1, "b": 0.1, "y": 9.0, "impurity": 0.5, "_id": "impure"},
            {"a": 0.2, "b": 0.2, "y": 3.0, "impurity": 0.05, "_id": "pure"},
            {"a": 0.3, "b": 0.3, "y": 5.0, "_id": "unmeasured"},
        ]
    )
    assert [best[0] for best in agent.get_best_points()] == ["pure"]
    assert "unmeasured" in agent.history.failures


def test_bayesian_keeps_to_the_safe_side_of_an_outcome_constraint(box):
    """Maximise a + b while the measured 'temperature' 100 a must stay at or below 30."""
    agent = make_agent(
        "bayesian",
        box,
        [Objective("y", "maximize")],
        seed=0,
        n_initial=4,
        outcome_constraints=[{"name": "temperature", "op": "<=", "bound": 30.0}],
    )
    late = []
    for iteration in range(12):
        (point,) = agent.suggest(1)
        if iteration >= 8:
            late.append(point)
        agent.ingest(
            [{"_id": point["_id"], "y": point["a"] + point["b"], "temperature": 100.0 * point["a"]}]
        )
    belief = agent.report()
    assert {"temperature_predicted_mean", "y_predicted_mean"} <= set(next(iter(belief.values())))
    assert sum(p["a"] <= 0.35 for p in late) >= 3
    (_, parameters, outcomes) = agent.get_best_points()[0]
    assert outcomes["temperature"] <= 30.0 and outcomes["y"] > 1.1


def test_a_window_on_one_outcome_and_a_limit_on_a_minimised_objective_are_kept(box):
    """Minimise y = (a - 0.8)^2 + b/2 while 0.3 <= t = a <= 0.6 (two constraints on one
    outcome) and y itself stays at or below 0.2 (a constraint on the minimised objective, whose
    model column is sign-flipped): the best is a = 0.6, b = 0."""
    agent = make_agent(
        "bayesian",
        box,
        [Objective("y", "minimize")],
        seed=0,
        n_initial=4,
        outcome_constraints=["t >= 0.3", "t <= 0.6", "y <= 0.2"],
        **FAST,
    )
    late = []
    for iteration in range(14):
        (point,) = agent.suggest(1)
        if iteration >= 9:
            late.append(point)
        y = (point["a"] - 0.8) ** 2 + point["b"] / 2
        agent.ingest([{"_id": point["_id"], "y": y, "t": point["a"]}])
    assert sum(0.25 <= p["a"] <= 0.65 and p["b"] <= 0.3 for p in late) >= 3
    (_, parameters, outcomes) = agent.get_best_points()[0]
    assert 0.3 <= outcomes["t"] <= 0.6 and outcomes["y"] <= 0.2


def test_bayesian_with_two_objectives_spreads_over_the_pareto_front(box):
    """Trade-off: f1 = a and f2 = 1 - a^2 + b/10 are both maximised; the front is b = 1."""
    objectives = [Objective("f1", "maximize"), Objective("f2", "maximize")]
    agent = make_agent("bayesian", box, objectives, seed=0, n_initial=4)
    for _ in range(5):
        batch = agent.suggest(2)
        agent.ingest(
            [{"_id": p["_id"], "f1": p["a"], "f2": 1 - p["a"] ** 2 + p["b"] / 10} for p in batch]
        )
    front = agent.get_best_points()
    assert len(front) >= 3
    values = np.array([[o["f1"], o["f2"]] for _, _, o in front])
    assert not any(
        np.all(other >= value) and np.any(other > value) for value in values for other in values
    )
    beliefs = next(iter(agent.report().values()))
    assert set(beliefs) >= {"acquisition_value", "f1_predicted_mean", "f2_predicted_std"}
    assert math.isfinite(beliefs["acquisition_value"])


def test_reference_point_must_cover_every_objective(box):
    objectives = [Objective("f1", "maximize"), Objective("f2", "minimize")]
    with pytest.raises(ValueError, match=r"missing \['f2'\]"):
        make_agent("bayesian", box, objectives, reference_point={"f1": 0.0})


@pytest.mark.parametrize(
    "layers, solvent",
    [
        (Parameter.integer("layers", 1, 4), (0, 1, 2)),
        # Levels that stop short of the bounds (BoTorch's mixed optimiser once refused them).
        (Parameter("layers", 0.0, 10.0, "", values=(1, 2, 3, 4)), (1, 2)),
    ],
    ids=["levels-at-the-bounds", "levels-inside-the-bounds"],
)
def test_discrete_and_categorical_parameters_only_take_their_levels(layers, solvent):
    space = SearchSpace(
        (
            Parameter("temperature", 100.0, 200.0, "degC"),
            layers,
            Parameter("solvent", 0.0, 3.0, "", values=solvent, categorical=True),
        )
    )
    with pytest.raises(ValueError, match=r"layers = 2.5 is not one of its levels"):
        space.validate({"temperature": 150.0, "layers": 2.5, "solvent": 1.0})
    for name in ("sobol", "bayesian"):
        options = {"n_initial": 4, **FAST} if name == "bayesian" else {}
        agent = make_agent(name, space, [Objective("y", "maximize")], seed=2, **options)
        for _ in range(3):
            batch = agent.suggest(2)
            for point in batch:
                space.validate(point)
            agent.ingest(
                [
                    {
                        "_id": p["_id"],
                        "y": -(((p["temperature"] - 150) / 50) ** 2)
                        + p["layers"]
                        + (p["solvent"] == 1),
                    }
                    for p in batch
                ]
            )
