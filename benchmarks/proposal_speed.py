"""The Bayesian agent's proposal in a running campaign: seconds, and what speed costs in results.

Issue 24's goal: at most 0.2 s median for one proposal at 200 observations in 5 dimensions on
one core. Unlike ``agent_latency.py`` (a fresh agent per proposal), the agent here lives on as
in a campaign: it has ``--observations`` results of the Ackley function on ``[0, 1]^5`` and then
proposes ``--steps`` times, learning each proposal's result before the next, so whatever it
carries from one proposal to the next (the GP's hyperparameters) counts.

Sample efficiency, to see what the speed costs: the same agent from scratch on Hartmann-6
(BoTorch's test function, negated to maximise) and on 4-dimensional Ackley, ``--budget``
experiments, ``--seeds`` seeds; reported is the median over seeds of the best value's
regret (distance to the optimum) at half and at the whole budget.

Variants: ``before`` is the agent at ``BEFORE`` (every proposal fits the GP from BoTorch's
default starting values), run in the same invocation on that commit's packages; ``after`` is
the working tree with its defaults (each fit starts from the latest anchor's optimum,
``agents/hyperparameters.py``) and with ``refit_growth`` set (the anchor's hyperparameters
used unfitted until the results grow by that fraction).

    python benchmarks/proposal_speed.py [--steps 20] [--seeds 6] [--budget 40]

Prints one table (the goal beside each figure) and writes
``benchmarks/results/proposal_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from git_tree import ROOT, results_at

#: The agent before hyperparameters were carried from one proposal to the next.
BEFORE = "af85a5b"
RESULTS = ROOT / "benchmarks" / "results"
GOAL_S = 0.2
#: Variants measured on the working tree: label -> agent options.
AFTER = {
    "after (default)": {},
    "after, refit_growth 0.1": {"refit_growth": 0.1},
    "after, refit_growth 0.25": {"refit_growth": 0.25},
    "after, 0.1 + 5 restarts": {"refit_growth": 0.1, "num_restarts": 5, "raw_samples": 256},
}


def ackley(x: np.ndarray) -> np.ndarray:
    """Ackley's function (minimum 0) of ``n x d`` points in ``[0, 1]^d`` mapped to
    ``[-5, 10]^d``; negated, so larger is better."""
    z = -5.0 + 15.0 * x
    d = x.shape[1]
    value = (
        -20.0 * np.exp(-0.2 * np.sqrt((z**2).sum(axis=1) / d))
        - np.exp(np.cos(2 * math.pi * z).sum(axis=1) / d)
        + 20.0
        + math.e
    )
    return -value


def hartmann6(x: np.ndarray) -> np.ndarray:
    """BoTorch's Hartmann-6 on ``[0, 1]^6``, negated (maximum 3.32237)."""
    from botorch.test_functions import Hartmann

    with torch.no_grad():
        return -Hartmann(dim=6)(torch.as_tensor(x, dtype=torch.double)).numpy()


PROBLEMS = {"hartmann6": (hartmann6, 6, 3.32237), "ackley4": (ackley, 4, 0.0)}


def _agent(d: int, seed: int, options: dict):
    from agents import Objective, Parameter, SearchSpace, make_agent

    space = SearchSpace(tuple(Parameter(f"x{i}", 0.0, 1.0, "") for i in range(d)))
    return make_agent("bayesian", space, [Objective("y", "maximize")], seed=seed, **options)


def _step(agent, function, d: int) -> float:
    """One proposal, measured and learned from; its wall seconds."""
    started = time.perf_counter()
    (point,) = agent.suggest(1)
    seconds = time.perf_counter() - started
    x = np.array([[point[f"x{i}"] for i in range(d)]])
    agent.ingest([{"_id": point["_id"], "y": float(function(x)[0])}])
    return seconds


def latency(options: dict, observations: int, steps: int, seed: int) -> dict:
    """Seconds of each of ``steps`` proposals by one agent from ``observations`` results on."""
    d = 5
    agent = _agent(d, seed, options)
    x = np.random.default_rng(seed).random((observations, d))
    agent.ingest(
        [
            {**{f"x{i}": float(v) for i, v in enumerate(row)}, "y": float(y)}
            for row, y in zip(x, ackley(x), strict=True)
        ]
    )
    seconds = [_step(agent, ackley, d) for _ in range(steps)]
    return {"median_s": statistics.median(seconds), "worst_s": max(seconds), "seconds": seconds}


def efficiency(options: dict, budget: int, seeds: int) -> dict:
    """Median regret over ``seeds`` campaigns at half and all of ``budget``, per problem."""
    out = {}
    for name, (function, d, optimum) in PROBLEMS.items():
        regrets = []
        for seed in range(seeds):
            agent = _agent(d, seed, options)
            best = []
            for _ in range(budget):
                _step(agent, function, d)
                best.append(max(o.outcomes["y"] for o in agent.history.observations.values()))
            regrets.append((optimum - best[budget // 2 - 1], optimum - best[-1]))
        out[name] = {
            "regret_half": statistics.median(r[0] for r in regrets),
            "regret_end": statistics.median(r[1] for r in regrets),
        }
    return out


def measure(options: dict, args: argparse.Namespace) -> dict:
    torch.set_num_threads(1)
    return {
        "latency": latency(options, args.observations, args.steps, args.seed),
        "efficiency": efficiency(options, args.budget, args.seeds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--observations", type=int, default=200)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--budget", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="(internal) write and stop")
    parser.add_argument("--before", default=BEFORE, help="commit to compare against")
    args = parser.parse_args()
    if args.json:  # one variant, for the before column
        args.json.write_text(json.dumps(measure({}, args)))
        return
    own = ["--observations", str(args.observations), "--steps", str(args.steps)]
    own += ["--seeds", str(args.seeds), "--budget", str(args.budget), "--seed", str(args.seed)]
    rows = {f"before ({args.before})": results_at(args.before, __file__, own)}
    for label, options in AFTER.items():
        rows[label] = measure(options, args)
    print(
        f"{args.observations} observations in 5 dimensions, {args.steps} proposals, one torch "
        f"thread; load average {os.getloadavg()[0]:.1f}. Regret: median of {args.seeds} seeds "
        f"after {args.budget // 2} / {args.budget} experiments (smaller is better)"
    )
    problems = list(PROBLEMS)
    header = f"{'variant':<28} {'median s':>9} {'worst s':>8} {'goal':>6}"
    header += "".join(f" {p + ' regret':>22}" for p in problems)
    print(header)
    for label, row in rows.items():
        lat, eff = row["latency"], row["efficiency"]
        line = f"{label:<28} {lat['median_s']:9.3f} {lat['worst_s']:8.3f} {GOAL_S:6.1f}"
        for p in problems:
            line += f" {eff[p]['regret_half']:10.3f} / {eff[p]['regret_end']:9.3f}"
        print(line)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "proposal_speed.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
