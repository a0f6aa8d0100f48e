"""Pool-based search: agents propose only rows of a fixed candidate set, each at most once."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agents import AGENTS, Objective, Parameter, SearchSpace, make_agent

AGENT_NAMES = sorted(AGENTS)


def bumpy(x: np.ndarray) -> np.ndarray:
    """A 2-D test landscape on ``[0, 1]^2`` with one broad optimum near (0.7, 0.3)."""
    return np.exp(-((x[:, 0] - 0.7) ** 2 + (x[:, 1] - 0.3) ** 2) / 0.05) + 0.3 * np.sin(
        6 * x[:, 0]
    ) * np.cos(5 * x[:, 1])


@pytest.fixture
def pool() -> np.ndarray:
    return np.random.default_rng(7).random((120, 2))


@pytest.fixture
def space(pool) -> SearchSpace:
    return SearchSpace.from_candidates(["a", "b"], pool, units=["mm", "s"])


def row_of(space: SearchSpace, point) -> int:
    return int(space.candidate_index(space.to_array([point]))[0])


def measure(space: SearchSpace, suggestions) -> list[dict]:
    values = bumpy(space.to_array(suggestions))
    return [{"_id": s["_id"], "y": float(v)} for s, v in zip(suggestions, values, strict=True)]


def test_from_candidates_takes_the_bounds_of_the_pool(pool, space):
    assert space.is_pool and space.names == ("a", "b")
    np.testing.assert_allclose(space.bounds, [pool.min(axis=0), pool.max(axis=0)])
    assert [p.unit for p in space.parameters] == ["mm", "s"]
    np.testing.assert_array_equal(space.candidate_array, pool)


def test_a_constant_column_gets_a_usable_range():
    space = SearchSpace.from_candidates(["a", "b"], [[0.0, 2.0], [1.0, 2.0]])
    assert space.parameters[1].low < 2.0 < space.parameters[1].high


def test_a_pool_refuses_repeated_rows_and_rows_outside_the_bounds():
    parameters = (Parameter("a", 0.0, 1.0, ""), Parameter("b", 0.0, 1.0, ""))
    with pytest.raises(ValueError, match="candidate 0 appears 2 times.*average repeated"):
        SearchSpace(parameters, candidates=((0.1, 0.2), (0.1, 0.2)))
    with pytest.raises(ValueError, match=r"candidate 1: b = 3 is outside .*\[0, 1\]"):
        SearchSpace(parameters, candidates=((0.1, 0.2), (0.1, 3.0)))
    with pytest.raises(ValueError, match=r"n x 2 table"):
        SearchSpace(parameters, candidates=((0.1, 0.2, 0.3),))


def test_validate_refuses_a_point_that_is_not_a_candidate(space, pool):
    space.validate(dict(zip(space.names, pool[3], strict=True)))
    with pytest.raises(ValueError, match="not one of the 120 candidates"):
        space.validate({"a": float(pool[0, 0]), "b": float(pool[1, 1])})


@pytest.mark.parametrize("name", AGENT_NAMES)
def test_agents_propose_every_row_once_then_say_the_pool_is_spent(name):
    small = np.random.default_rng(1).random((9, 2))
    space = SearchSpace.from_candidates(["a", "b"], small)
    agent = make_agent(name, space, [Objective("y", "maximize")], seed=3)
    rows = []
    for _ in range(4):
        batch = agent.suggest(2)
        rows += [row_of(space, s) for s in batch]
        agent.ingest(measure(space, batch))
    rows += [row_of(space, s) for s in agent.suggest(1)]
    assert sorted(rows) == list(range(9))
    with pytest.raises(ValueError, match="only 0 of the 9 candidates remain"):
        agent.suggest(1)


@pytest.mark.parametrize("name", AGENT_NAMES)
def test_pending_and_failed_rows_are_not_proposed_again(name, space):
    agent = make_agent(name, space, [Objective("y", "maximize")], seed=0)
    agent.ingest(measure(space, agent.suggest(3)))
    failed = agent.suggest(2)
    agent.register_failures(failed)
    pending = agent.suggest(2)
    later = agent.suggest(3)
    used = {row_of(space, s) for s in [*failed, *pending]}
    assert used.isdisjoint(row_of(space, s) for s in later)
    assert len({row_of(space, s) for s in later}) == 3


@pytest.mark.parametrize("name", AGENT_NAMES)
def test_a_rebuilt_pool_agent_proposes_the_same_rows(name, space):
    agent = make_agent(name, space, [Objective("y", "maximize")], seed=5)
    points = []
    for _ in range(4):
        batch = agent.suggest(1)
        points += [{**s, **m} for s, m in zip(batch, measure(space, batch), strict=True)]
        agent.ingest(points[-1:])
    rebuilt = make_agent(name, space, [Objective("y", "maximize")], seed=5)
    rebuilt.ingest(points)
    assert row_of(space, agent.suggest(1)[0]) == row_of(space, rebuilt.suggest(1)[0])


def test_bayesian_on_a_pool_finds_the_best_row_sooner_than_random(space, pool):
    best_row = int(np.argmax(bumpy(pool)))

    def experiments_to_best(name: str, seed: int) -> int:
        agent = make_agent(name, space, [Objective("y", "maximize")], seed=seed)
        for n in range(1, len(pool) + 1):
            (suggestion,) = agent.suggest(1)
            if row_of(space, suggestion) == best_row:
                return n
            agent.ingest(measure(space, [suggestion]))
            if name == "bayesian" and n >= 25:
                break
        return len(pool) + 1

    bayesian = [experiments_to_best("bayesian", seed) for seed in range(2)]
    # Random needs (N + 1) / 2 = 60.5 experiments on average to find one given row.
    assert max(bayesian) <= 25, bayesian


def test_bayesian_on_a_pool_reports_beliefs_per_row(space):
    agent = make_agent("bayesian", space, [Objective("y", "maximize")], seed=0)
    agent.ingest(measure(space, agent.suggest(4)))
    batch = agent.suggest(2)
    beliefs = agent.report()
    assert set(beliefs) == {s["_id"] for s in batch}
    for belief in beliefs.values():
        assert set(belief) == {"acquisition_value", "y_predicted_mean", "y_predicted_std"}
        assert all(math.isfinite(v) for v in belief.values())


def test_make_agent_turns_a_box_into_a_pool_from_a_csv_file(tmp_path):
    box = SearchSpace((Parameter("a", 0.0, 10.0, "mm"), Parameter("b", 0.0, 1.0, "")))
    library = tmp_path / "library.csv"
    library.write_text("sample,a,b\ns1,1.0,0.5\ns2,2.0,0.25\ns3,9.5,0.75\n")
    agent = make_agent("sobol", box, [Objective("y", "maximize")], candidates=library)
    proposed = {(s["a"], s["b"]) for s in agent.suggest(3)}
    assert proposed == {(1.0, 0.5), (2.0, 0.25), (9.5, 0.75)}


def test_make_agent_refuses_candidates_that_leave_the_box_or_lack_a_parameter():
    box = SearchSpace((Parameter("a", 0.0, 10.0, "mm"), Parameter("b", 0.0, 1.0, "")))
    with pytest.raises(ValueError, match=r"b = 2 is outside"):
        make_agent("random", box, [Objective("y", "maximize")], candidates=[{"a": 1, "b": 2}])
    with pytest.raises(ValueError, match=r"no value for parameter\(s\) \['b'\]"):
        make_agent("random", box, [Objective("y", "maximize")], candidates=[{"a": 1}])
