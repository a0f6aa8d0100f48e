"""Does the RL agent beat random search (and how does it fare against Sobol and BO)?

Every agent runs the same campaigns on held-apart instances of the domain-randomised TiO2
simulator (``sdl.training.rl``: physics, batch variation and measurement noise drawn from the
held-apart stream, never trained on), with the same noise draws for the k-th experiment of
every agent on an instance. The score is the true photoactive area at the point each campaign
reports as best (best measured), as normalised simple regret
``(optimum - f) / (optimum - median)`` (optimum polished by L-BFGS-B, median over the box), at
several budgets.

    sdl train-rl --out models/rl_tio2.pt
    python benchmarks/rl_vs_baselines.py --weights models/rl_tio2.pt --instances 20
    python benchmarks/rl_vs_baselines.py --instances 20 --spread-scale 2 --tag _wider

``--spread-scale 2`` draws the held-apart instances from physics twice as spread as in
training: how far the learned policy carries beyond its training family.

Prints one table and writes ``benchmarks/results/rl_vs_baselines{TAG}.{json,png}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from agents import make_agent
from sdl.training.rl import (
    DEFAULT_WEIGHTS,
    HELD_OUT_STREAM,
    TIO2_OBJECTIVE,
    TIO2_SPACE,
    held_out_instances,
    instance_rng,
    refined_optimum,
    run_agent,
)

RESULTS = Path(__file__).parent / "results"


def run_all(
    agents: list[str], instances: int, budget: int, weights: Path, spread_scale: float
) -> list[dict]:
    """One campaign per agent and held-apart instance; the reported truth after each step."""
    runs = []
    for index, instance in enumerate(held_out_instances(instances, spread_scale)):
        instance = refined_optimum(instance)
        for name in agents:
            options = {"weights": weights} if name == "rl" else {}
            agent = make_agent(name, TIO2_SPACE, [TIO2_OBJECTIVE], seed=index, **options)
            started = time.perf_counter()
            reported = run_agent(agent, instance, budget, instance_rng(HELD_OUT_STREAM, index, 1))
            runs.append(
                {
                    "agent": name,
                    "instance": index,
                    "wall_s": time.perf_counter() - started,
                    "optimum": instance.optimum,
                    "median": instance.median,
                    "true_best_so_far": reported.tolist(),
                    "regret": (1.0 - instance.normalised(reported)).tolist(),
                }
            )
            logging.info("instance %d %s: regret %.3f", index, name, runs[-1]["regret"][-1])
    return runs


def summarise(runs: list[dict], agents: list[str], budgets: list[int]) -> dict:
    """Mean and standard error of regret and true best at each budget, per agent."""
    summary = {}
    for name in agents:
        mine = [r for r in runs if r["agent"] == name]
        regret = np.array([r["regret"] for r in mine])
        best = np.array([r["true_best_so_far"] for r in mine])
        stderr = np.sqrt(len(mine))
        summary[name] = {
            "regret_mean": {n: float(regret[:, n - 1].mean()) for n in budgets},
            "regret_stderr": {n: float(regret[:, n - 1].std(ddof=1) / stderr) for n in budgets},
            "true_best_mean": {n: float(best[:, n - 1].mean()) for n in budgets},
            "true_best_stderr": {n: float(best[:, n - 1].std(ddof=1) / stderr) for n in budgets},
            "wall_s_mean": float(np.mean([r["wall_s"] for r in mine])),
        }
    return summary


def wins(runs: list[dict], agent: str, other: str, budget: int) -> tuple[int, int]:
    """On how many instances ``agent`` has strictly lower regret than ``other`` at ``budget``."""
    regret = {(r["agent"], r["instance"]): r["regret"][budget - 1] for r in runs}
    instances = sorted({r["instance"] for r in runs})
    better = sum(regret[agent, i] < regret[other, i] for i in instances)
    return better, len(instances)


def print_table(summary: dict, runs: list[dict], budgets: list[int], instances: int) -> None:
    print(
        f"\nTiO2 photoactive area, {instances} held-apart randomised instances; normalised "
        "simple regret (0 = optimum, 1 = median of the box), mean ± stderr"
    )
    header = (
        f"{'agent':<9}"
        + "".join(f"{'regret @' + str(n):>17}" for n in budgets)
        + (f"{'true best @' + str(budgets[-1]) + ' m2/g':>22}{'s/campaign':>12}")
    )
    print(header)
    print("-" * len(header))
    for name, s in summary.items():
        cells = "".join(
            f"{s['regret_mean'][n]:>10.3f} ± {s['regret_stderr'][n]:<5.3f}" for n in budgets
        )
        last = budgets[-1]
        print(
            f"{name:<9}{cells}{s['true_best_mean'][last]:>14.1f} ± "
            f"{s['true_best_stderr'][last]:<5.1f}{s['wall_s_mean']:>12.1f}"
        )
    if "rl" in summary:
        for other in (o for o in summary if o != "rl"):
            line = ", ".join("{}/{} @ {}".format(*wins(runs, "rl", other, n), n) for n in budgets)
            print(f"rl better than {other} on {line} instances")


def plot(runs: list[dict], agents: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in agents:
        regret = np.array([r["regret"] for r in runs if r["agent"] == name])
        n = np.arange(1, regret.shape[1] + 1)
        mean = regret.mean(axis=0)
        stderr = regret.std(axis=0, ddof=1) / np.sqrt(len(regret))
        ax.plot(n, mean, label=name)
        ax.fill_between(n, np.maximum(mean - stderr, 1e-3), mean + stderr, alpha=0.2)
    ax.set_yscale("log")
    ax.set_xlabel("experiments")
    ax.set_ylabel("normalised simple regret (true)")
    ax.set_title("Held-apart randomised TiO2 instances: regret of the reported best")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--instances", type=int, default=20)
    parser.add_argument("--budgets", type=int, nargs="+", default=[10, 20, 30])
    parser.add_argument("--agents", nargs="+", default=["rl", "random", "sobol", "bayesian"])
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    parser.add_argument(
        "--spread-scale",
        type=float,
        default=1.0,
        help="widen the physics randomisation beyond training's (e.g. 2)",
    )
    parser.add_argument("--tag", default="", help="suffix of the result files")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("agents").setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)

    runs = run_all(args.agents, args.instances, max(args.budgets), args.weights, args.spread_scale)
    summary = summarise(runs, args.agents, args.budgets)
    print(f"\nphysics spread x{args.spread_scale:g} of training's")
    print_table(summary, runs, args.budgets, args.instances)
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"rl_vs_baselines{args.tag}"
    stem.with_suffix(".json").write_text(
        json.dumps(
            {
                "weights": str(args.weights),
                "instances": args.instances,
                "budgets": args.budgets,
                "spread_scale": args.spread_scale,
                "summary": summary,
                "runs": runs,
            },
            indent=1,
        )
    )
    plot(runs, args.agents, stem.with_suffix(".png"))
    print(f"\nwrote {stem.with_suffix('.json')} and {stem.with_suffix('.png')}")


if __name__ == "__main__":
    main()
