"""Pool-based optimisation on synthetic pools: the check that a pool default is not tuned to Liang.

Each pool is ``--rows`` points drawn uniformly in the domain of one of BoTorch's standard test
functions (minimised), each row's value the function plus fixed Gaussian "measurement" noise
with a standard deviation of ``--noise`` times the pool's spread. The campaign protocol and
scores are those of ``liang2021.py`` (2 random initial rows, one row at a time, Top% = fraction
of the pool's top 5 % found), with two more scores that do not depend on reaching Top% 0.8
within the budget:

* mean Top%: the Top% curve averaged over the campaign (an area under the curve);
* normalised regret: ``(best value tried - pool best) / (pool median - pool best)``,
  averaged over the campaign; 0 once the pool's best row is found.

Variants of our agent run side by side, with random as the floor:

    python benchmarks/synthetic_pools.py --seeds 10
    python benchmarks/synthetic_pools.py --variant ucb1=ucb_beta=1 --variant ei=acquisition=qlognei

Prints one table and writes ``benchmarks/results/synthetic_pools.{json,png}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from liang2021 import TOP_FRACTION, Pool, parse_option, run_ours, top_curve

RESULTS = Path(__file__).resolve().parent / "results"

#: Test function name -> (BoTorch class name, keyword arguments).
FUNCTIONS: dict[str, tuple[str, dict]] = {
    "Hartmann6": ("Hartmann", {"dim": 6}),
    "Ackley4": ("Ackley", {"dim": 4}),
    "Branin": ("Branin", {}),
    "Levy4": ("Levy", {"dim": 4}),
    "Rosenbrock3": ("Rosenbrock", {"dim": 3}),
    "StyblinskiTang5": ("StyblinskiTang", {"dim": 5}),
}


def synthetic_pool(name: str, rows: int, noise: float, seed: int) -> Pool:
    """``rows`` uniform points of test function ``name`` with fixed noise, as a pool."""
    import torch
    from botorch.test_functions import synthetic

    class_name, kwargs = FUNCTIONS[name]
    function = getattr(synthetic, class_name)(**kwargs)
    rng = np.random.default_rng([seed, rows, len(name)])
    low, high = function.bounds.numpy()
    X = low + rng.random((rows, function.dim)) * (high - low)
    clean = function.evaluate_true(torch.from_numpy(X)).numpy()
    y = clean + rng.normal(0.0, noise * clean.std(), rows)
    columns = tuple(f"x{i}" for i in range(function.dim))
    return Pool(name=name, columns=columns, X=X, y=y, direction="minimize")


def run_one(
    job: tuple[str, str, dict, int, int, int, float],
) -> tuple[str, str, np.ndarray, float]:
    """One campaign scored: ``(function, variant, Top% curve, normalised regret)``."""
    import torch

    torch.set_num_threads(1)
    function, variant, options, seed, budget, rows, noise = job
    pool = synthetic_pool(function, rows, noise, seed)
    agent = "random" if variant == "random" else "bayesian"
    tried = run_ours(pool, seed, budget, agent, options)
    curve = np.nan_to_num(top_curve(pool, tried, budget), nan=1.0)
    return function, variant, curve, normalised_regret(pool, tried, budget)


def normalised_regret(pool: Pool, tried: Sequence[int], budget: int) -> float:
    """Mean over the campaign of ``(best tried - pool best) / (pool median - pool best)``."""
    best_so_far = np.minimum.accumulate(pool.y[list(tried)])
    best_so_far = np.concatenate([best_so_far, np.full(budget - len(tried), best_so_far[-1])])
    return float(np.mean((best_so_far - pool.y.min()) / (np.median(pool.y) - pool.y.min())))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budget", type=int, default=60)
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--noise", type=float, default=0.05)
    parser.add_argument("--functions", nargs="+", default=list(FUNCTIONS), choices=FUNCTIONS)
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=OPT=VALUE,...",
        help="a variant of our bayesian agent: a name, then its options, e.g. "
        "ucb=acquisition=qucb,ucb_beta=1; repeatable (default: the "
        "agent's defaults only)",
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    variants = {"default": {}, **dict(parse_variant(text) for text in args.variant), "random": {}}
    jobs = [
        (function, variant, options, seed, args.budget, args.rows, args.noise)
        for seed in range(args.seeds)
        for function in args.functions
        for variant, options in variants.items()
    ]
    runs: dict[tuple[str, str], list[tuple[np.ndarray, float]]] = {}
    with ProcessPoolExecutor(max_workers=args.workers) as executor:
        for function, variant, curve, regret in executor.map(run_one, jobs):
            runs.setdefault((function, variant), []).append((curve, regret))
    results: dict[str, dict[str, dict[str, float]]] = {}
    curves: dict[str, dict[str, list[float]]] = {}
    for (function, variant), scores in runs.items():
        mean_curve = np.mean([curve for curve, _ in scores], axis=0)
        results.setdefault(function, {})[variant] = {
            "top_at_budget": float(mean_curve[-1]),
            "mean_top": float(mean_curve.mean()),
            "normalised_regret": float(np.mean([regret for _, regret in scores])),
        }
        curves.setdefault(function, {})[variant] = mean_curve.tolist()
    print_table(results, list(variants), args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "synthetic_pools.json").write_text(
        json.dumps({"variants": variants, "scores": results, "top_curves": curves}, indent=1)
    )
    plot(curves, args.out / "synthetic_pools.png")
    print(f"\nwrote {args.out / 'synthetic_pools.json'} and {args.out / 'synthetic_pools.png'}")


def parse_variant(text: str) -> tuple[str, dict]:
    """``"name=opt=value,opt=value"`` as ``(name, {opt: value})``."""
    name, _, rest = text.partition("=")
    if not name or name in ("default", "random"):
        raise SystemExit(f"--variant needs a new name before its options, got {text!r}")
    return name, dict(parse_option(item) for item in rest.split(",") if item)


def print_table(results: dict, variants: list[str], args: argparse.Namespace) -> None:
    print(
        f"\nSynthetic pools: {args.rows} uniform rows, noise {args.noise} of the pool's std, "
        f"{args.seeds} seeds, budget {args.budget}; Top% = fraction of the top "
        f"{TOP_FRACTION:.0%} found"
    )
    print("cells: Top% at budget / mean Top% over the campaign / mean normalised regret")
    print(f"{'function':<16}" + "".join(f"{v:>24}" for v in variants))
    totals = {v: np.zeros(3) for v in variants}
    for function, by_variant in results.items():
        line = f"{function:<16}"
        for variant in variants:
            s = by_variant[variant]
            values = np.array([s["top_at_budget"], s["mean_top"], s["normalised_regret"]])
            totals[variant] += values / len(results)
            line += f"{'{:.2f} / {:.3f} / {:.3f}'.format(*values):>24}"
        print(line)
    print(
        f"{'mean':<16}"
        + "".join(f"{'{:.2f} / {:.3f} / {:.3f}'.format(*totals[v]):>24}" for v in variants)
    )


def plot(curves: dict[str, dict[str, list[float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(3.6 * len(curves), 3.2), squeeze=False)
    for ax, (function, by_variant) in zip(axes[0], curves.items(), strict=True):
        for variant, curve in by_variant.items():
            ax.plot(np.arange(1, len(curve) + 1), curve, label=variant)
        ax.set(title=function, xlabel="experiments", ylabel="Top%", ylim=(0, 1.02))
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
