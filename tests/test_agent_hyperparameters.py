"""The Bayesian agent's GP hyperparameters: fitted from anchors, carried between proposals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from botorch.models import SingleTaskGP
from gpytorch.mlls import ExactMarginalLogLikelihood

from agents import Objective, Parameter, SearchSpace, make_agent
from agents.hyperparameters import HyperparameterMemory, anchor

X = torch.as_tensor(np.random.default_rng(0).random((40, 2)))
Y = torch.sin(6 * X).sum(-1, keepdim=True)


def _mll_on(k: int) -> ExactMarginalLogLikelihood:
    model = SingleTaskGP(X[:k], Y[:k])
    return ExactMarginalLogLikelihood(model.likelihood, model)


def _parameters(mll) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in mll.model.named_parameters()}


def test_the_anchor_grid_depends_on_the_count_alone():
    assert [anchor(n, 0.1) for n in (2, 5, 10, 11, 12, 13, 200)] == [2, 5, 10, 11, 11, 13, 188]
    assert [anchor(n, 0.5) for n in (2, 3, 4, 5, 6, 7, 9, 10)] == [2, 3, 3, 5, 5, 5, 8, 8]


def test_a_fresh_memory_gives_the_same_fit_as_one_that_fitted_every_step_before():
    carried = HyperparameterMemory()
    for n in range(5, 25):
        last = carried.fit(_mll_on, n)
    fresh = HyperparameterMemory().fit(_mll_on, 24)
    for name, value in _parameters(fresh).items():
        assert torch.equal(value, _parameters(last)[name]), name


def test_with_refit_growth_only_anchors_are_fitted():
    memory = HyperparameterMemory(refit_growth=0.5)
    fits = []
    for n in range(5, 13):  # anchors of growth 0.5: 5, 8, 12
        mll = memory.fit(_mll_on, n)
        fits.append(memory.fits)
        assert len(mll.model.train_inputs[0]) == n  # conditioned on every result
    assert fits == [1, 1, 1, 2, 2, 2, 2, 3]
    # Between anchors the hyperparameters are the anchor's, unfitted.
    between, at_anchor = _parameters(memory.fit(_mll_on, 13)), _parameters(_fitted(12))
    assert all(torch.equal(between[name], at_anchor[name]) for name in at_anchor)


def _fitted(k: int) -> ExactMarginalLogLikelihood:
    return HyperparameterMemory(refit_growth=0.5).fit(_mll_on, k)


def test_a_resumed_agent_proposes_what_the_uninterrupted_one_does_with_refit_growth():
    space = SearchSpace(tuple(Parameter(f"x{i}", 0.0, 1.0, "") for i in range(2)))
    options = {"n_initial": 3, "num_restarts": 2, "raw_samples": 32, "refit_growth": 0.5}
    running = make_agent("bayesian", space, [Objective("y", "maximize")], seed=0, **options)
    for _ in range(7):
        (point,) = running.suggest(1)
        running.ingest([{"_id": point["_id"], "y": -((point["x0"] - 0.3) ** 2) - point["x1"]}])
    resumed = make_agent("bayesian", space, [Objective("y", "maximize")], seed=0, **options)
    resumed.ingest([{**o.parameters, **o.outcomes} for o in running.history.observations.values()])
    (a,), (b,) = running.suggest(1), resumed.suggest(1)
    assert (a["x0"], a["x1"]) == pytest.approx((b["x0"], b["x1"]), abs=1e-9)
    # Model-based proposals at 3 to 7 results: fitted at the anchors 3 and 5 only.
    assert running.hyperparameters.fits == 2


def _agent_with_results(noise: str, stds: list[float | None]):
    space = SearchSpace(tuple(Parameter(f"x{i}", 0.0, 1.0, "") for i in range(2)))
    options = {"n_initial": 2, "num_restarts": 2, "raw_samples": 32, "noise": noise}
    agent = make_agent("bayesian", space, [Objective("y", "maximize")], seed=0, **options)
    rng = np.random.default_rng(1)
    for std in stds:
        x0, x1 = rng.random(2)
        result = {"x0": x0, "x1": x1, "y": float(np.sin(5 * x0) + x1)}
        agent.ingest([result if std is None else {**result, "y_std": std}])
    return agent


def test_measured_noise_fixes_each_result_s_variance():
    from gpytorch.likelihoods import FixedNoiseGaussianLikelihood

    agent = _agent_with_results("measured", [0.1, 0.2, 0.05, 0.3, 0.1, 0.2])
    model, _ = agent._fitted_acquisition(0, None)
    assert isinstance(model.likelihood, FixedNoiseGaussianLikelihood)
    inferred, _ = _agent_with_results("inferred", [0.1] * 6)._fitted_acquisition(0, None)
    assert not isinstance(inferred.likelihood, FixedNoiseGaussianLikelihood)
    (point,) = agent.suggest(1)
    assert 0 <= point["x0"] <= 1


def test_a_result_without_its_uncertainty_falls_back_to_inferred_noise(caplog):
    from gpytorch.likelihoods import FixedNoiseGaussianLikelihood

    agent = _agent_with_results("measured", [0.1, 0.2, None, 0.3])
    with caplog.at_level("WARNING", logger="agents.bayesian"):
        model, _ = agent._fitted_acquisition(0, None)
    assert not isinstance(model.likelihood, FixedNoiseGaussianLikelihood)
    assert "reported no uncertainty" in caplog.text
