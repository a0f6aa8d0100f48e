"""Agents: the bluesky-adaptive surface, the bookkeeping of trials, and whether BO optimises."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping

import numpy as np
import pytest
import torch
from bluesky_adaptive.protocols import (
    CanRegisterSuggestions,
    Optimizer,
    SupportsStoppingCriteria,
    TrialFaultAware,
)
from botorch.exceptions.errors import ModelFittingError
from gpytorch.kernels import MaternKernel, RBFKernel

import agents.bayesian
import agents.hyperparameters
from agents import (
    AGENTS,
    Agent,
    BayesianOptimizationAgent,
    Objective,
    Parameter,
    SearchSpace,
    make_agent,
)

BRANIN_MINIMUM = 0.397887
AGENT_NAMES = sorted(AGENTS)


def branin(point: Mapping[str, float]) -> float:
    """The Branin function: three global minima of 0.397887 in ``[-5, 10] x [0, 15]``."""
    x1, x2 = point["x1"], point["x2"]
    return (
        (x2 - 5.1 / (4 * math.pi**2) * x1**2 + 5 / math.pi * x1 - 6) ** 2
        + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1)
        + 10
    )


@pytest.fixture
def space() -> SearchSpace:
    return SearchSpace((Parameter("x1", -5.0, 10.0, ""), Parameter("x2", 0.0, 15.0, "")))


@pytest.fixture
def objectives() -> list[Objective]:
    return [Objective("y", "minimize")]


def run_campaign(
    agent: Agent, function: Callable[[Mapping[str, float]], float], budget: int
) -> list[dict]:
    """Suggest, measure, ingest one point at a time; return the ingested points in order."""
    history = []
    for _ in range(budget):
        (suggestion,) = agent.suggest(1)
        point = {**suggestion, "y": function(suggestion)}
        agent.ingest([point])
        history.append(point)
    return history


def unit_distance(space: SearchSpace, a: Mapping[str, float], b: Mapping[str, float]) -> float:
    unit = space.to_unit(space.to_array([a, b]))
    return float(np.linalg.norm(unit[0] - unit[1]))


@pytest.mark.parametrize("name", AGENT_NAMES)
def test_every_agent_has_the_bluesky_adaptive_optimizer_surface(name, space, objectives):
    agent = make_agent(name, space, objectives, seed=0)
    for protocol in (
        Optimizer,
        TrialFaultAware,
        CanRegisterSuggestions,
        SupportsStoppingCriteria,
        Agent,
    ):
        assert isinstance(agent, protocol), protocol.__name__


def test_make_agent_lists_the_valid_names_for_an_unknown_one(space, objectives):
    with pytest.raises(
        ValueError, match=r"'genetic'.*\['bayesian', 'mapping', 'random', 'rl', 'sobol'\]"
    ):
        make_agent("genetic", space, objectives)


def test_make_agent_passes_options_to_the_constructor(space, objectives):
    agent = make_agent("bayesian", space, objectives, seed=4, n_initial=3, max_evaluations=9)
    assert (agent.seed, agent.n_initial, agent.max_evaluations) == (4, 3, 9)


@pytest.mark.parametrize("name", AGENT_NAMES)
def test_suggestions_lie_in_bounds_and_carry_unique_ids(name, space, objectives):
    agent = (
        make_agent(name, space, objectives, seed=1, n_initial=4)
        if name == "bayesian"
        else make_agent(name, space, objectives, seed=1)
    )
    run_campaign(agent, branin, 4)
    suggestions = agent.suggest(5) + agent.suggest()
    assert all(space.contains(s) for s in suggestions)
    assert all(set(s) == {"x1", "x2", "_id"} for s in suggestions)
    ids = [s["_id"] for s in suggestions]
    assert len(set(ids)) == len(ids) and all(isinstance(i, str) for i in ids)


@pytest.mark.parametrize("name", AGENT_NAMES)
def test_same_seed_and_history_give_the_same_suggestions(name, space, objectives):
    first, second = (make_agent(name, space, objectives, seed=5) for _ in range(2))
    history = run_campaign(first, branin, 6)
    second.ingest(history)
    (a,), (b,) = first.suggest(), second.suggest()
    assert a["_id"] != b["_id"]
    assert (a["x1"], a["x2"]) == pytest.approx((b["x1"], b["x2"]), abs=1e-6)


@pytest.mark.parametrize("name", AGENT_NAMES)
def test_an_agent_rebuilt_from_history_has_the_same_best_point(name, space, objectives):
    agent = make_agent(name, space, objectives, seed=2)
    history = run_campaign(agent, branin, 8)
    rebuilt = make_agent(name, space, objectives, seed=2)
    rebuilt.ingest(history)
    assert rebuilt.get_best_points() == agent.get_best_points()
    best_id, parameters, outcomes = agent.get_best_points()[0]
    best = {point["_id"]: point for point in history}[best_id]
    assert outcomes == {"y": min(point["y"] for point in history)} == {"y": best["y"]}
    assert parameters == {"x1": best["x1"], "x2": best["x2"]}


def test_bayesian_optimisation_beats_random_search_on_branin(space, objectives):
    budget, seeds = 20, range(3)
    regrets = {}
    for name in ("bayesian", "random"):
        regrets[name] = []
        for seed in seeds:
            agent = make_agent(name, space, objectives, seed=seed)
            run_campaign(agent, branin, budget)
            regrets[name].append(agent.get_best_points()[0][2]["y"] - BRANIN_MINIMUM)
    assert max(regrets["bayesian"]) < 0.5
    assert np.mean(regrets["bayesian"]) < 0.5 * np.mean(regrets["random"])


@pytest.mark.parametrize(("direction", "corner"), [("maximize", 1.0), ("minimize", 0.0)])
def test_bayesian_optimisation_goes_where_the_objective_improves(direction, corner):
    space = SearchSpace((Parameter("x", 0.0, 1.0, "mm"),))
    agent = BayesianOptimizationAgent(space, [Objective("y", direction)], seed=0)
    run_campaign(agent, lambda point: point["x"], 6)
    (suggestion,) = agent.suggest()
    assert suggestion["x"] == pytest.approx(corner, abs=0.1)
    assert agent.get_best_points()[0][1]["x"] == pytest.approx(corner, abs=0.25)


def test_ingest_accepts_results_that_carry_only_the_id(space, objectives):
    agent = make_agent("sobol", space, objectives)
    (suggestion,) = agent.suggest()
    agent.ingest([{"_id": suggestion["_id"], "y": 3.0}])
    assert agent.get_best_points() == [
        (suggestion["_id"], {"x1": suggestion["x1"], "x2": suggestion["x2"]}, {"y": 3.0})
    ]


def test_ingest_refuses_an_unknown_point_without_parameters(space, objectives):
    agent = make_agent("random", space, objectives)
    with pytest.raises(ValueError, match=r"not a known suggestion and lacks parameters \['x2'\]"):
        agent.ingest([{"_id": "elsewhere", "x1": 1.0, "y": 3.0}])


def test_bayesian_batch_of_three_gives_three_distinct_points(space, objectives):
    agent = BayesianOptimizationAgent(space, objectives, seed=0)
    run_campaign(agent, branin, 8)
    batch = agent.suggest(3)
    assert len(batch) == 3
    distances = [unit_distance(space, batch[i], batch[j]) for i in range(3) for j in range(i)]
    assert min(distances) > 0.02


def test_bayesian_does_not_suggest_pending_points_again(space, objectives):
    agent = BayesianOptimizationAgent(space, objectives, seed=0)
    run_campaign(agent, branin, 8)
    pending = [agent.suggest()[0] for _ in range(3)]
    distances = [unit_distance(space, pending[i], pending[j]) for i in range(3) for j in range(i)]
    assert min(distances) > 0.02
    assert len(agent.history.pending) == 3


@pytest.mark.parametrize("name", AGENT_NAMES)
def test_failed_trials_are_not_suggested_again(name, space, objectives):
    agent = make_agent(name, space, objectives, seed=0)
    run_campaign(agent, branin, 6)
    failed = []
    for _ in range(4):
        (suggestion,) = agent.suggest()
        agent.register_failures([suggestion])
        failed.append(suggestion)
    distances = [unit_distance(space, failed[i], failed[j]) for i in range(4) for j in range(i)]
    assert min(distances) > 0.02
    assert set(agent.history.failures) == {s["_id"] for s in failed}


def test_failed_and_nan_results_are_not_learned(space, objectives):
    agent = BayesianOptimizationAgent(space, objectives, seed=0, n_initial=3)
    history = run_campaign(agent, branin, 4)
    (nan_result,) = agent.suggest()
    agent.ingest([{**nan_result, "y": math.nan}])
    (missing_result,) = agent.suggest()
    agent.ingest([{"_id": missing_result["_id"], "other_feature": 1.0}])
    agent.register_failures([history[0]])
    assert set(agent.history.observations) == {p["_id"] for p in history[1:]}
    assert set(agent.history.failures) == {
        nan_result["_id"],
        missing_result["_id"],
        history[0]["_id"],
    }
    assert agent.get_best_points()[0][2]["y"] == min(p["y"] for p in history[1:])
    assert agent.history.n_evaluations == 6


def test_report_gives_the_beliefs_behind_the_latest_bayesian_batch(space, objectives):
    agent = BayesianOptimizationAgent(space, objectives, seed=0, n_initial=5)
    first = agent.suggest()
    assert agent.report() == {first[0]["_id"]: {}}
    agent.register_failures(first)
    run_campaign(agent, branin, 6)
    batch = agent.suggest(2)
    report = agent.report()
    assert set(report) == {s["_id"] for s in batch}
    for belief in report.values():
        assert set(belief) == {"acquisition_value", "y_predicted_mean", "y_predicted_std"}
        assert all(math.isfinite(value) for value in belief.values())
        assert belief["y_predicted_std"] > 0
        assert 0 < belief["y_predicted_mean"] < 400


@pytest.mark.parametrize("name", ["random", "sobol"])
def test_report_of_a_model_free_agent_has_empty_beliefs(name, space, objectives):
    agent = make_agent(name, space, objectives)
    batch = agent.suggest(2)
    assert agent.report() == {s["_id"]: {} for s in batch}


def test_gp_failure_falls_back_to_sobol_with_a_warning(space, objectives, monkeypatch, caplog):
    def failing_fit(mll):
        raise ModelFittingError("all attempts to fit the model have failed")

    monkeypatch.setattr(agents.hyperparameters, "fit_gpytorch_mll", failing_fit)
    agent = BayesianOptimizationAgent(space, objectives, seed=0, n_initial=3)
    run_campaign(agent, branin, 3)
    with caplog.at_level(logging.WARNING, logger="agents.bayesian"):
        (suggestion,) = agent.suggest()
    assert "Sobol" in caplog.text and "ModelFittingError" in caplog.text
    assert space.contains(suggestion)
    assert agent.report() == {suggestion["_id"]: {}}


def test_register_suggestions_adds_ids_and_treats_them_as_pending(space, objectives):
    agent = make_agent("bayesian", space, objectives)
    registered = agent.register_suggestions([{"x1": 1.0, "x2": 2.0, "_id": "ignored"}])
    (point,) = registered
    assert point["_id"] != "ignored" and point["_id"] in agent.history.pending
    agent.ingest([{"_id": point["_id"], "y": 5.0}])
    assert agent.get_best_points()[0][:2] == (point["_id"], {"x1": 1.0, "x2": 2.0})


def test_register_suggestions_refuses_points_outside_the_space(space, objectives):
    agent = make_agent("random", space, objectives)
    with pytest.raises(ValueError, match=r"x2 = 20 is outside the allowed range \[0, 15\]"):
        agent.register_suggestions([{"x1": 1.0, "x2": 20.0}])


def test_should_stop_when_the_budget_is_spent(space, objectives):
    agent = make_agent("sobol", space, objectives, max_evaluations=3)
    run_campaign(agent, branin, 2)
    assert agent.should_stop() == (False, None)
    run_campaign(agent, branin, 1)
    stop, reason = agent.should_stop()
    assert stop and "3 of 3 evaluations" in reason


def test_should_stop_when_the_target_is_reached(space):
    agent = make_agent("random", space, [Objective("y", "minimize", target=1.0)])
    agent.ingest([{"x1": 0.0, "x2": 0.0, "y": 2.0, "_id": "far"}])
    assert agent.should_stop() == (False, None)
    agent.ingest([{"x1": 3.0, "x2": 2.0, "y": 0.5, "_id": "close"}])
    stop, reason = agent.should_stop()
    assert stop and "close" in reason and "target 1" in reason


def test_model_free_agents_return_the_pareto_set_for_several_objectives(space):
    objectives = [Objective("yield", "maximize"), Objective("cost", "minimize")]
    agent = make_agent("random", space, objectives)
    agent.ingest(
        [
            {"x1": 0.0, "x2": 0.0, "yield": 0.5, "cost": 1.0, "_id": "cheap"},
            {"x1": 1.0, "x2": 1.0, "yield": 0.9, "cost": 3.0, "_id": "rich"},
            {"x1": 2.0, "x2": 2.0, "yield": 0.4, "cost": 2.0, "_id": "dominated"},
        ]
    )
    assert [best[0] for best in agent.get_best_points()] == ["cheap", "rich"]


def test_bayesian_refuses_a_reference_point_for_a_single_objective(space, objectives):
    with pytest.raises(ValueError, match="reference_point needs a value for every objective"):
        BayesianOptimizationAgent(space, objectives, reference_point={"y": 1.0})


def test_objectives_must_not_reuse_parameter_names(space):
    with pytest.raises(ValueError, match=r"both as parameter and objective: \['x1'\]"):
        make_agent("sobol", space, [Objective("x1", "maximize")])


@pytest.mark.parametrize(("kernel", "kind"), [("matern52", MaternKernel), ("rbf", RBFKernel)])
def test_bayesian_kernel_option_sets_the_covariance(kernel, kind):
    cube = SearchSpace(tuple(Parameter(name, 0.0, 1.0, "") for name in "abc"))
    X = np.random.default_rng(0).random((8, 3))
    agent = BayesianOptimizationAgent(cube, [Objective("y", "maximize")], kernel=kernel)
    agent.ingest([{"a": a, "b": b, "c": c, "y": a - b} for a, b, c in X])
    model, _ = agent._fitted_acquisition(0, None)
    assert isinstance(model.covar_module, kind)
    assert model.covar_module.lengthscale.shape == (1, 3)  # one lengthscale per parameter


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"max_evaluations": 0}, "max_evaluations must be at least 1"),
        ({"n_initial": 1}, r"n_initial: Input should be greater than or equal to 2 \(got 1\)"),
        ({"num_restarts": 20, "raw_samples": 10}, r"raw_samples \(10\) must be at least"),
    ],
)
def test_bayesian_refuses_invalid_options(space, objectives, options, message):
    with pytest.raises(ValueError, match=message):
        BayesianOptimizationAgent(space, objectives, **options)


def test_bayesian_refuses_fewer_than_one_torch_thread(space, objectives):
    with pytest.raises(
        ValueError, match=r"torch_threads: Input should be greater than or equal to 1 \(got 0\)"
    ):
        BayesianOptimizationAgent(space, objectives, torch_threads=0)


@pytest.fixture
def two_torch_threads():
    """Torch at two intra-op threads for the test, the previous setting restored after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


@pytest.mark.usefixtures("two_torch_threads")
def test_bayesian_proposes_on_its_own_threads_and_restores_the_callers(
    space, objectives, monkeypatch
):
    threads_while_fitting = []
    fit = agents.hyperparameters.fit_gpytorch_mll

    def recording_fit(mll):
        threads_while_fitting.append(torch.get_num_threads())
        return fit(mll)

    monkeypatch.setattr(agents.hyperparameters, "fit_gpytorch_mll", recording_fit)
    agent = BayesianOptimizationAgent(space, objectives, seed=0, n_initial=3)
    run_campaign(agent, branin, 4)
    assert threads_while_fitting == [1]
    assert torch.get_num_threads() == 2
    untouched = BayesianOptimizationAgent(
        space, objectives, seed=0, n_initial=3, torch_threads=None
    )
    run_campaign(untouched, branin, 4)
    assert threads_while_fitting == [1, 2]


def test_bayesian_proposal_does_not_depend_on_the_callers_thread_count(space, objectives):
    history = run_campaign(make_agent("bayesian", space, objectives, seed=3), branin, 7)
    proposals = []
    previous = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            agent = make_agent("bayesian", space, objectives, seed=3)
            agent.ingest(history)
            (proposal,) = agent.suggest()
            proposals.append((proposal["x1"], proposal["x2"]))
    finally:
        torch.set_num_threads(previous)
    assert proposals[0] == proposals[1]


def branin_pool_space(rows: int = 60) -> SearchSpace:
    grid = np.random.default_rng(3).random((rows, 2)) * [15.0, 15.0] + [-5.0, 0.0]
    return SearchSpace.from_candidates(["x1", "x2"], grid)


def test_bayesian_default_acquisition_is_ucb_on_a_pool_and_noisy_ei_otherwise(space, objectives):
    pool = branin_pool_space()
    assert BayesianOptimizationAgent(pool, objectives).acquisition == "qucb"
    assert BayesianOptimizationAgent(space, objectives).acquisition == "qlognei"
    constrained = BayesianOptimizationAgent(pool, objectives, outcome_constraints=["z <= 1"])
    assert constrained.acquisition == "qlognei"
    several = [Objective("y", "minimize"), Objective("z", "maximize")]
    assert BayesianOptimizationAgent(pool, several).acquisition == "qlognei"


def fitted_noise_variance(noise_prior: str, seed: int) -> float:
    """The GP's noise variance (standardised units) after 12 noisy results of a slope in 3-D."""
    cube = SearchSpace(tuple(Parameter(name, 0.0, 1.0, "") for name in "abc"))
    rng = np.random.default_rng(seed)
    X = rng.random((12, 3))
    y = X[:, 0] + rng.normal(0.0, 0.3, 12)  # the scatter is about half the variance of y
    agent = BayesianOptimizationAgent(cube, [Objective("y", "maximize")], noise_prior=noise_prior)
    agent.ingest([{"a": a, "b": b, "c": c, "y": v} for (a, b, c), v in zip(X, y, strict=True)])
    model, _ = agent._fitted_acquisition(0, None)
    return model.likelihood.noise.item()


def test_bayesian_gamma_noise_prior_takes_scatter_as_noise_where_the_default_does_not():
    broad = [fitted_noise_variance("gamma", seed) for seed in range(5)]
    default = [fitted_noise_variance("lognormal", seed) for seed in range(5)]
    pool_agent = BayesianOptimizationAgent(branin_pool_space(), [Objective("y", "minimize")])
    assert pool_agent.noise_prior == "lognormal"
    assert np.median(broad) > 0.1
    assert max(default) < 0.02  # the log-normal prior explains the scatter away


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"acquisition": "thompson"},
            r"acquisition: Input should be 'qlognei', 'qlogei' or 'qucb'",
        ),
        ({"acquisition": "qucb", "outcome_constraints": ["z <= 1"]}, "takes one objective"),
        ({"ucb_beta": -1.0}, r"ucb_beta: Input should be greater than or equal to 0"),
        (
            {"outcome_transform": "log"},
            r"outcome_transform: Input should be 'standardize' or 'bilog'",
        ),
        ({"kernel": "linear"}, r"kernel: Input should be 'matern52' or 'rbf'"),
        ({"kernel": "rbf", "kernel_prior": "gamma"}, "kernel 'rbf' takes kernel_prior"),
        ({"kernel_prior": "flat"}, r"kernel_prior: Input should be 'dim_scaled' or 'gamma'"),
        ({"noise_prior": "flat"}, r"noise_prior: Input should be 'lognormal' or 'gamma'"),
    ],
)
def test_bayesian_refuses_invalid_model_options(space, objectives, options, message):
    with pytest.raises(ValueError, match=message):
        BayesianOptimizationAgent(space, objectives, **options)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"acquisition": "qlognei"},
        {"acquisition": "qlogei"},
        {"acquisition": "qlogei", "outcome_transform": "bilog"},
        {"acquisition": "qucb", "ucb_beta": 1.0, "outcome_transform": "bilog"},
        {"kernel": "rbf"},
        {"kernel_prior": "gamma"},
        {"noise_prior": "gamma"},
    ],
)
def test_bayesian_pool_variants_find_good_rows_deterministically(objectives, options):
    pool = branin_pool_space()
    values = np.array(
        [branin(dict(zip(pool.names, row, strict=True))) for row in pool.candidate_array]
    )
    runs = []
    for _ in range(2):
        agent = BayesianOptimizationAgent(pool, objectives, seed=5, **options)
        runs.append(run_campaign(agent, branin, 15))
    without_ids = [[{k: v for k, v in p.items() if k != "_id"} for p in run] for run in runs]
    assert without_ids[0] == without_ids[1]
    found = sorted(point["y"] for point in runs[0])
    assert found[0] <= np.sort(values)[2]  # one of the pool's three best rows in 15 of 60
    beliefs = next(iter(agent.report().values()))
    assert math.isfinite(beliefs["y_predicted_mean"]) and beliefs["y_predicted_std"] >= 0


def test_bayesian_ucb_batch_on_a_pool_gives_distinct_rows(objectives):
    pool = branin_pool_space()
    agent = BayesianOptimizationAgent(pool, objectives, seed=0)
    run_campaign(agent, branin, 4)
    batch = agent.suggest(3)
    rows = {tuple(pool.to_array([point])[0]) for point in batch}
    assert len(rows) == 3
