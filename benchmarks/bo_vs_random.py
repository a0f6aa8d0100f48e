"""Does the Bayesian-optimisation agent beat random sampling on the same budget?

Runs the whole closed loop (simulated instruments, catalog, analysis, agent) for each agent
and seed, then scores every campaign on the simulator's ground truth: the true objective at
the conditions the campaign believed best, and the simple regret against the true optimum.

    python benchmarks/bo_vs_random.py --seeds 5 --budget 30
    python benchmarks/bo_vs_random.py --agents bayesian bayesian:noise=measured

An agent may carry options after a colon (``name:option=value,...``).

Prints one table and writes ``benchmarks/results/bo_vs_random.{json,png}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import yaml
from scipy.optimize import differential_evolution

from sdl.analysis.truth import true_features
from sdl.campaign.config import parse_campaign
from sdl.campaign.systems import get_system
from sdl.loop.runner import CampaignRunner

EXAMPLE = Path(__file__).parent.parent / "examples" / "tio2_bo.yaml"
RESULTS = Path(__file__).parent / "results"


def true_objective(config, conditions) -> float:
    system = get_system(config.devices.system)
    sample = system.make_model().expected({**conditions, **config.fixed_conditions})
    return true_features(sample, system.phases)[config.objectives[0].name]


def true_optimum(config) -> float:
    """The best true objective in the search space, by differential evolution on the truth."""
    names = list(config.search_space)
    sign = -1.0 if config.objectives[0].direction == "maximize" else 1.0
    bounds = [(p.low, p.high) for p in config.search_space.values()]
    found = differential_evolution(
        lambda x: sign * true_objective(config, dict(zip(names, x, strict=True))),
        bounds,
        seed=0,
        tol=1e-8,
        maxiter=300,
        popsize=30,
        polish=True,
    )
    return sign * found.fun


def agent_section(variant: str) -> dict:
    """The campaign file's ``agent`` section of ``name[:option=value,...]``, e.g.
    ``bayesian:noise=measured``."""
    name, _, options = variant.partition(":")
    pairs = (option.split("=", 1) for option in options.split(",") if option)
    return {"name": name, "options": {key: yaml.safe_load(value) for key, value in pairs}}


def run_campaign(agent: str, seed: int, budget: int, work_dir: str) -> dict:
    data = yaml.safe_load(EXAMPLE.read_text())
    folder = agent.replace(":", "-").replace("=", "-").replace(",", "-")
    data.update(
        name=f"bench-{folder}-{seed}",
        seed=seed,
        budget=budget,
        data_dir=f"{work_dir}/{folder}-{seed}",
        agent=agent_section(agent),
    )
    config = parse_campaign(data)
    started = time.perf_counter()
    result = CampaignRunner(config).run()
    wall_s = time.perf_counter() - started
    measured = result.objective_values()
    # What the campaign would report as best after n experiments, scored on the truth.
    best_true_so_far = []
    for n in range(1, len(result.records) + 1):
        values = measured[:n]
        if not np.isfinite(values).any():
            best_true_so_far.append(np.nan)
            continue
        index = np.nanargmax(values) if result.maximize else np.nanargmin(values)
        best_true_so_far.append(true_objective(config, result.records[int(index)].conditions))
    return {
        "agent": agent,
        "seed": seed,
        "wall_s": wall_s,
        "best_measured": float(np.nanmax(measured) if result.maximize else np.nanmin(measured)),
        "best_true_so_far": best_true_so_far,
        "instrument_hours": result.instrument_hours,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budget", type=int, default=30)
    parser.add_argument("--agents", nargs="+", default=["bayesian", "random", "sobol"])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    base = parse_campaign({**yaml.safe_load(EXAMPLE.read_text()), "budget": args.budget})
    optimum = true_optimum(base)
    with tempfile.TemporaryDirectory() as work_dir, ProcessPoolExecutor(args.workers) as pool:
        jobs = [
            pool.submit(run_campaign, agent, seed, args.budget, work_dir)
            for agent in args.agents
            for seed in range(args.seeds)
        ]
        runs = [job.result() for job in jobs]

    print(
        f"\nTiO2 photoactive area (m^2/g), budget {args.budget}, {args.seeds} seeds; "
        f"true optimum {optimum:.2f}"
    )
    header = (
        f"{'agent':<26} {'true best (mean ± sd)':>22} {'simple regret':>14} "
        f"{'regret @ n/2':>13} {'wall s/campaign':>16}"
    )
    print(header)
    print("-" * len(header))
    summary = {}
    for agent in args.agents:
        mine = [r for r in runs if r["agent"] == agent]
        curves = np.array([r["best_true_so_far"] for r in mine])
        final = curves[:, -1]
        regret = optimum - final
        half = optimum - curves[:, args.budget // 2 - 1]
        summary[agent] = {
            "true_best_mean": float(np.nanmean(final)),
            "true_best_sd": float(np.nanstd(final)),
            "simple_regret_mean": float(np.nanmean(regret)),
            "regret_half_budget_mean": float(np.nanmean(half)),
            "wall_s_mean": float(np.mean([r["wall_s"] for r in mine])),
        }
        s = summary[agent]
        print(
            f"{agent:<26} {s['true_best_mean']:>13.2f} ± {s['true_best_sd']:<6.2f} "
            f"{s['simple_regret_mean']:>14.2f} {s['regret_half_budget_mean']:>13.2f} "
            f"{s['wall_s_mean']:>16.1f}"
        )

    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bo_vs_random.json").write_text(
        json.dumps(
            {
                "optimum": optimum,
                "budget": args.budget,
                "seeds": args.seeds,
                "summary": summary,
                "runs": runs,
            },
            indent=1,
        )
    )
    _plot(runs, args.agents, optimum, RESULTS / "bo_vs_random.png")
    print(f"\nwrote {RESULTS / 'bo_vs_random.json'} and {RESULTS / 'bo_vs_random.png'}")


def _plot(runs, agents, optimum, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for agent in agents:
        curves = np.array([r["best_true_so_far"] for r in runs if r["agent"] == agent])
        regret = optimum - curves
        n = np.arange(1, regret.shape[1] + 1)
        mean, sd = np.nanmean(regret, axis=0), np.nanstd(regret, axis=0)
        ax.plot(n, mean, label=agent)
        ax.fill_between(n, np.maximum(mean - sd, 1e-3), mean + sd, alpha=0.2)
    ax.set_yscale("log")
    ax.set_xlabel("experiments")
    ax.set_ylabel("simple regret (m²/g, true)")
    ax.set_title("TiO2 campaign: regret of the reported best vs experiments")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
