"""Does the phase-mapping agent map the Fe-Ga-Pd spread better than random or Sobol sampling?

On the simulated Fe-Ga-Pd spread (:mod:`simulators.fegapd`, the search space of
``examples/fegapd_mapping.yaml``: ``x_ga, x_pd`` in ``[0, 0.55]``, ``x_ga + x_pd <= 0.6``) each
method chooses ``max(--budgets)`` compositions one at a time. Every chosen spot is deposited
by the simulator (with its composition noise) and "measured": its true phase fractions (atom
fractions) plus Gaussian noise of ``--fraction-noise`` (clipped at 0), standing in for the
XRD analysis, whose whole-pattern fit takes about a second a pattern and confuses
``bcc`` and ``fe3ga_d03`` (they share their fundamental lines) in a way that would score the
analysis, not the choice of points. The saturation polarisation is the simulator's truth.

After the first ``N`` experiments (each of ``--budgets``) the *same* map model, a fresh
:class:`agents.mapping.PhaseMappingAgent` (default options) that ingests those ``N``
results, predicts the phases present on a 0.01 grid of the whole search space (1861
compositions); the map is scored against the simulator's truth there (phases above 2 %
atom fraction, ``FeGaPdSample.region``) by the adjusted Rand index, and by the fraction of
the grid whose predicted set of phases is exactly right. So only the choice of points
differs between the methods:

* ``mapping``: the agent itself (its first ``n_initial`` points are the ``sobol`` ones);
* ``random``: :class:`agents.baselines.RandomAgent`;
* ``sobol``: the first ``N`` points of one scrambled Sobol sequence inside the triangle;
* ``sobol agent``: :class:`agents.baselines.SobolAgent` as a campaign runs it today; with a
  linear constraint it takes the first feasible point of each block of 64, and those points
  cluster (see the printed note);
* ``joint``: the agent with ``property_weight`` 0.5 (map and polarisation, CAMEO's trade).

    python benchmarks/mapping_agent.py                  # 5 seeds, N = 10, 20, 30
    python benchmarks/mapping_agent.py --seeds 2 --first-seed 100 --option exclusion_radius=0.1

Prints one table (mean +- std over seeds) and writes ``benchmarks/results/mapping_agent.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from agents import Objective, Parameter, SearchSpace
from agents.base import HistoryAgent
from agents.baselines import RandomAgent, SobolAgent, sobol_unit_points
from agents.mapping import PhaseMappingAgent
from sdl.analysis.xrd.phase_mapping import adjusted_rand_index
from simulators.fegapd import PHASE_NAMES, FeGaPdSpread, region_labels

RESULTS = Path(__file__).parent / "results"

SPACE = SearchSpace(
    (Parameter("x_ga", 0.0, 0.55, "mol/mol"), Parameter("x_pd", 0.0, 0.55, "mol/mol")),
    linear_constraints=("x_ga + x_pd <= 0.6",),
)
OBJECTIVE = Objective("saturation_polarisation_t", "maximize")
METHODS = ("mapping", "random", "sobol", "sobol agent", "joint")
DEFAULT_METHODS = ("mapping", "random", "sobol", "sobol agent")
GRID_STEP = 0.01


def truth_grid(spread: FeGaPdSpread) -> tuple[list[dict[str, float]], np.ndarray]:
    """The grid's compositions as points and the integer label of each one's true region."""
    steps = np.arange(0.0, 0.55 + 1e-9, GRID_STEP)
    points = [
        {"x_ga": float(x_ga), "x_pd": float(x_pd)}
        for x_ga in steps
        for x_pd in steps
        if x_ga + x_pd <= 0.6 + 1e-9
    ]
    regions = [
        spread.truth(np.array([1 - p["x_ga"] - p["x_pd"], p["x_ga"], p["x_pd"]])).region
        for p in points
    ]
    return points, np.array(regions, dtype=object)


def measure(
    spread: FeGaPdSpread, conditions: dict[str, float], rng: np.random.Generator, noise: float
) -> dict[str, float]:
    """One deposited spot's noisy phase fractions and its polarisation, as a result."""
    spot = spread.deposit(conditions, rng, "spot")
    result = {"saturation_polarisation_t": spot.polarisation_t}
    for phase in PHASE_NAMES:
        fraction = spot.state.phase_fractions.get(phase, 0.0) + rng.normal(0.0, noise)
        result[f"{phase}_fraction"] = max(fraction, 0.0)
    return result


def sobol_sequence(seed: int, budget: int) -> list[dict[str, float]]:
    """The first ``budget`` points of a scrambled Sobol sequence that meet the constraint."""
    unit = sobol_unit_points(SPACE.dim, 64 * budget, seed, 0)
    values = SPACE.from_unit(unit)
    return SPACE.to_points(values[SPACE.feasible(values)][:budget])


def campaign(
    method: str, seed: int, budget: int, noise: float, options: dict[str, Any]
) -> list[dict[str, float]]:
    """The ``budget`` results of one method on one spread, in the order they were chosen."""
    spread = FeGaPdSpread()
    agents: dict[str, Callable[[], HistoryAgent]] = {
        "mapping": lambda: PhaseMappingAgent(SPACE, [OBJECTIVE], seed=seed, **options),
        "joint": lambda: PhaseMappingAgent(
            SPACE, [OBJECTIVE], seed=seed, **{**options, "property_weight": 0.5}
        ),
        "random": lambda: RandomAgent(SPACE, [OBJECTIVE], seed=seed),
        "sobol agent": lambda: SobolAgent(SPACE, [OBJECTIVE], seed=seed),
    }
    results = []
    design = sobol_sequence(seed, budget) if method == "sobol" else None
    agent = None if design else agents[method]()
    for index in range(budget):
        rng = np.random.default_rng([seed, index])
        if agent is None:
            point = design[index]  # type: ignore[index]
        else:
            (suggestion,) = agent.suggest(1)
            point = {name: suggestion[name] for name in SPACE.names}
        result = {**point, **measure(spread, point, rng, noise)}
        if agent is not None:
            agent.ingest([{**result, "_id": suggestion["_id"]}])
        results.append(result)
    return results


def score(
    results: Sequence[dict[str, float]],
    seed: int,
    grid: list[dict[str, float]],
    truth: np.ndarray,
    options: dict[str, Any],
) -> dict[str, float]:
    """ARI and exact-label accuracy of the map made from ``results`` by the same model."""
    model = PhaseMappingAgent(SPACE, [OBJECTIVE], seed=seed, **options)
    model.ingest(list(results))
    predicted = model.predict_map(grid).labels
    exact = np.mean([p == t for p, t in zip(predicted, truth, strict=True)])
    return {
        "ari": adjusted_rand_index(region_labels(list(truth)), region_labels(predicted)),
        "exact": float(exact),
        "regions_predicted": len(set(predicted)),
        "best_polarisation_t": max(r["saturation_polarisation_t"] for r in results),
    }


def run_and_score(job: tuple) -> list[dict[str, Any]]:
    """One method's campaign on one spread, scored after each of the budgets."""
    method, seed, budgets, noise, options, grid, truth = job
    began = time.perf_counter()
    results = campaign(method, seed, budgets[-1], noise, options)
    scored = [
        {"method": method, "seed": seed, "n": n} | score(results[:n], seed, grid, truth, options)
        for n in budgets
    ]
    for row in scored:
        row["seconds"] = time.perf_counter() - began
    return scored


def parse_option(text: str) -> tuple[str, Any]:
    name, _, value = text.partition("=")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def mean_std(values: Sequence[float]) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--budgets", default="10,20,30", help="N, comma separated")
    parser.add_argument("--fraction-noise", type=float, default=0.02)
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=METHODS)
    parser.add_argument("--workers", type=int, default=2, help="campaigns run at once")
    parser.add_argument(
        "--option", action="append", default=[], help="mapping agent option name=value"
    )
    args = parser.parse_args()
    budgets = sorted(int(n) for n in args.budgets.split(","))
    options = dict(parse_option(text) for text in args.option)
    started = time.perf_counter()
    grid, truth = truth_grid(FeGaPdSpread())
    print(
        f"truth: {len(grid)} grid compositions, {len(set(truth))} phase regions "
        f"({time.perf_counter() - started:.1f} s)",
        flush=True,
    )
    jobs = [
        (method, seed, budgets, args.fraction_noise, options, grid, truth)
        for seed in range(args.first_seed, args.first_seed + args.seeds)
        for method in args.methods
    ]
    rows = []
    with ProcessPoolExecutor(args.workers) as pool:
        for job, scored in zip(jobs, pool.map(run_and_score, jobs), strict=True):
            rows += scored
            print(
                f"seed {job[1]} {job[0]:<12} "
                + " ".join(f"N={r['n']}: ARI {r['ari']:.3f}" for r in scored)
                + f" ({scored[0]['seconds']:.0f} s)",
                flush=True,
            )
    seeds = f"{args.seeds} seed(s) from {args.first_seed}"
    for metric, title in (
        ("ari", f"adjusted Rand index of the map vs the truth, mean ± std over {seeds}"),
        ("exact", "fraction of the grid with exactly the right set of phases"),
        ("best_polarisation_t", "best saturation polarisation measured, T"),
    ):
        print(f"\n{title}")
        header = f"{'N':>4} " + " ".join(f"{m:>15}" for m in args.methods)
        print(header)
        print("-" * len(header))
        for n in budgets:
            cells = [
                mean_std([r[metric] for r in rows if r["method"] == m and r["n"] == n])
                for m in args.methods
            ]
            print(f"{n:>4} " + " ".join(f"{c:>15}" for c in cells))
    print(
        f"\nmeasurement: true atom fractions + N(0, {args.fraction_noise}) clipped at 0; "
        f"map model: PhaseMappingAgent options {options or 'default'}; "
        f"{time.perf_counter() - started:.0f} s in all"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "mapping_agent.json"
    out.write_text(
        json.dumps(
            {
                "fraction_noise": args.fraction_noise,
                "options": options,
                "grid_points": len(grid),
                "true_regions": len(set(truth)),
                "rows": rows,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
