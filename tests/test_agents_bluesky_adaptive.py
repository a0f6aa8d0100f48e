"""Our agents drop into bluesky-adaptive's ``optimize`` plan, driving simulated ophyd hardware."""

from __future__ import annotations

import math
from collections import defaultdict

import pytest
from bluesky_adaptive.plans import optimize
from bluesky_adaptive.protocols import OptimizationProblem
from ophyd.sim import SynAxis, SynSignal

from agents import Objective, Parameter, SearchSpace, make_agent


def peak(x1: float, x2: float) -> float:
    """A smooth hill with its top, 10, at (1, -0.5)."""
    return 10.0 * math.exp(-((x1 - 1.0) ** 2 + (x2 + 0.5) ** 2) / 2.0)


@pytest.fixture
def hardware():
    x1, x2 = SynAxis(name="x1"), SynAxis(name="x2")
    signal = SynSignal(func=lambda: peak(x1.position, x2.position), name="signal")
    return x1, x2, signal


class RunRecorder:
    """Keeps every document by run, so an evaluation function can read a run back by uid."""

    def __init__(self) -> None:
        self.starts: dict[str, dict] = {}
        self.run_of_descriptor: dict[str, str] = {}
        self.events: dict[str, list[dict]] = defaultdict(list)

    def __call__(self, name: str, doc: dict) -> None:
        if name == "start":
            self.starts[doc["uid"]] = doc
        elif name == "descriptor":
            self.run_of_descriptor[doc["uid"]] = doc["run_start"]
        elif name == "event":
            self.events[self.run_of_descriptor[doc["descriptor"]]].append(doc)

    def evaluate(self, uid: str, suggestions) -> list[dict]:
        """Outcomes of run ``uid``: the signal at each suggestion, joined by ``_id``."""
        order = self.starts[uid]["blop_acquisition_order"]
        events = sorted(self.events[uid], key=lambda event: event["seq_num"])
        return [
            {"_id": trial_id, "signal": event["data"]["signal"]}
            for trial_id, event in zip(order, events, strict=True)
        ]


def problem(agent, hardware, recorder: RunRecorder) -> OptimizationProblem:
    x1, x2, signal = hardware
    return OptimizationProblem(
        optimizer=agent,
        actuators=[x1, x2],
        sensors=[signal],
        evaluation_function=recorder.evaluate,
    )


@pytest.fixture
def space() -> SearchSpace:
    return SearchSpace((Parameter("x1", -3.0, 3.0, "mm"), Parameter("x2", -3.0, 3.0, "mm")))


def test_bayesian_agent_runs_the_optimize_plan_and_learns_every_measurement(RE, hardware, space):
    recorder = RunRecorder()
    RE.subscribe(recorder)
    agent = make_agent("bayesian", space, [Objective("signal", "maximize")], seed=0, n_initial=4)
    RE(optimize(problem(agent, hardware, recorder), iterations=5, n_points=2))
    observations = list(agent.history.observations.values())
    assert len(observations) == 10 and not agent.history.pending
    for obs in observations:
        assert obs.outcomes["signal"] == pytest.approx(
            peak(obs.parameters["x1"], obs.parameters["x2"])
        )
    (_, best_parameters, best_outcomes) = agent.get_best_points()[0]
    assert best_outcomes["signal"] > 5.0, best_parameters


def test_optimize_without_iterations_stops_when_the_agent_says_so(RE, hardware, space):
    recorder = RunRecorder()
    RE.subscribe(recorder)
    agent = make_agent("sobol", space, [Objective("signal", "maximize")], max_evaluations=3)
    RE(optimize(problem(agent, hardware, recorder), iterations=None))
    assert agent.history.n_evaluations == 3
    assert agent.should_stop()[0]
