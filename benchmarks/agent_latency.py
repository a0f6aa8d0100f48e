"""How long does an agent take to propose the next experiment, as its history grows?

For each dimension ``d`` and number of observations ``n``, both agents are given the same
``n`` observations of a smooth test function (the Ackley function on ``[0, 1]^d``, values at
uniform random points) and then asked for one proposal, ``--repeats`` times, each time from a
freshly built agent with a different seed (so every timing includes fitting the model).
Reported: the median and the worst wall-clock seconds of one proposal.

* ``ours``: ``make_agent("bayesian", ...)`` with its defaults on the continuous box
  (``--pool N`` times a pool of N random candidates instead; ``--option name=value``, repeated,
  passes agent options, e.g. ``--option torch_threads=null`` to use ``--threads``);
* ``ax``: ax-platform's ``Client``, ``method="fast"``, the ``n`` observations attached as
  completed trials; one ``get_next_trials(max_trials=1)`` is timed.

Both run in this process with ``torch.set_num_threads(--threads)`` (default 2, the target
machine's cores). Our agent computes each proposal with its own ``torch_threads`` (default 1)
and restores the caller's setting; Ax uses ``--threads``, so ``--threads 1`` compares the two
on one thread each.

    python benchmarks/agent_latency.py
    python benchmarks/agent_latency.py --dims 5 --observations 200 --repeats 5

Prints one table and writes ``benchmarks/results/agent_latency.{json,png}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
AGENT_NAMES = ("ours", "ax")


def ackley(x: np.ndarray) -> np.ndarray:
    """Ackley's function of ``n x d`` points in ``[0, 1]^d`` mapped to ``[-5, 10]^d``."""
    z = -5.0 + 15.0 * x
    d = x.shape[1]
    return (
        -20.0 * np.exp(-0.2 * np.sqrt((z**2).sum(axis=1) / d))
        - np.exp(np.cos(2 * math.pi * z).sum(axis=1) / d)
        + 20.0
        + math.e
    )


def time_ours(
    X: np.ndarray, y: np.ndarray, seed: int, pool: int, options: Mapping[str, object] | None = None
) -> float:
    """Seconds for one proposal of a fresh ``bayesian`` agent (with ``options``) that has
    ingested ``X, y``."""
    from agents import Objective, Parameter, SearchSpace, make_agent

    names = [f"x{i}" for i in range(X.shape[1])]
    parameters = tuple(Parameter(name, 0.0, 1.0, "") for name in names)
    candidates = None
    if pool:
        candidates = np.random.default_rng([seed, 1]).random((pool, X.shape[1]))
    space = SearchSpace(parameters, candidates=None if candidates is None else candidates)
    agent = make_agent(
        "bayesian", space, [Objective("y", "minimize")], seed=seed, **(options or {})
    )
    agent.ingest(
        [
            {**dict(zip(names, map(float, row), strict=True)), "y": float(v)}
            for row, v in zip(X, y, strict=True)
        ]
    )
    started = time.perf_counter()
    agent.suggest(1)
    return time.perf_counter() - started


def time_ax(X: np.ndarray, y: np.ndarray, seed: int, pool: int) -> float:
    """Seconds for one ``get_next_trials`` of an Ax ``Client`` that has ``X, y`` attached."""
    from ax.api.client import Client
    from ax.api.configs import RangeParameterConfig

    for name in [*logging.root.manager.loggerDict, "ax"]:
        if name.split(".")[0] == "ax":
            logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    names = [f"x{i}" for i in range(X.shape[1])]
    client = Client(random_seed=seed)
    client.configure_experiment(
        name="latency",
        parameters=[
            RangeParameterConfig(name=n, bounds=(0.0, 1.0), parameter_type="float") for n in names
        ],
    )
    client.configure_optimization(objective="-y")
    client.configure_generation_strategy(
        method="fast", initialization_budget=2, initialize_with_center=False
    )
    for row, value in zip(X, y, strict=True):
        index = client.attach_trial(dict(zip(names, map(float, row), strict=True)))
        client.complete_trial(index, {"y": float(value)})
    started = time.perf_counter()
    client.get_next_trials(max_trials=1)
    return time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 5, 10])
    parser.add_argument("--observations", type=int, nargs="+", default=[10, 50, 100, 200, 500])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--agents", nargs="+", default=list(AGENT_NAMES), choices=AGENT_NAMES)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--pool",
        type=int,
        default=0,
        help="time our agent on a pool of this many candidates (0: the box)",
    )
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an option of our agent, VALUE in JSON (repeatable)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    options = dict(parse_option(text) for text in args.option)
    import torch

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    timers: dict[str, Callable[[np.ndarray, np.ndarray, int, int], float]] = {
        "ours": partial(time_ours, options=options),
        "ax": time_ax,
    }
    rows = []
    for d in args.dims:
        for n in args.observations:
            X = np.random.default_rng([d, n]).random((n, d))
            y = ackley(X)
            row: dict = {"dim": d, "observations": n}
            for agent in args.agents:
                seconds = [timers[agent](X, y, seed, args.pool) for seed in range(args.repeats)]
                row[agent] = {
                    "median_s": float(np.median(seconds)),
                    "worst_s": max(seconds),
                    "seconds": seconds,
                }
            row["load_average"] = load_average()
            rows.append(row)
            print_row(row, args.agents, header=len(rows) == 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "agent_latency.json").write_text(
        json.dumps(
            {
                "threads": args.threads,
                "pool": args.pool,
                "repeats": args.repeats,
                "ours_options": options,
                "rows": rows,
            },
            indent=1,
        )
    )
    plot(rows, args.agents, args.out / "agent_latency.png")
    print(f"\nwrote {args.out / 'agent_latency.json'} and {args.out / 'agent_latency.png'}")


def parse_option(text: str) -> tuple[str, object]:
    """``"name=value"`` as ``(name, value)``, the value read as JSON where it is JSON."""
    name, separator, value = text.partition("=")
    if not separator or not name:
        raise argparse.ArgumentTypeError(f"--option takes NAME=VALUE, got {text!r}")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the system does not tell)."""
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def print_row(row: dict, agents: Sequence[str], header: bool) -> None:
    if header:
        print(
            f"{'d':>3} {'n':>5}"
            + "".join(f" {a + ' median s':>14} {a + ' worst s':>13}" for a in agents)
            + "   load 1/5/15 min"
        )
    load = row["load_average"]
    print(
        f"{row['dim']:>3} {row['observations']:>5}"
        + "".join(f" {row[a]['median_s']:>14.3f} {row[a]['worst_s']:>13.3f}" for a in agents)
        + ("   " + " ".join(f"{v:.2f}" for v in load) if load else ""),
        flush=True,
    )


def plot(rows: list[dict], agents: Sequence[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dims = sorted({row["dim"] for row in rows})
    fig, axes = plt.subplots(1, len(dims), figsize=(4 * len(dims), 3.4), squeeze=False)
    for ax, d in zip(axes[0], dims, strict=True):
        mine = [row for row in rows if row["dim"] == d]
        n = [row["observations"] for row in mine]
        for agent in agents:
            ax.plot(n, [row[agent]["median_s"] for row in mine], "o-", label=f"{agent} median")
            ax.plot(n, [row[agent]["worst_s"] for row in mine], "x:", label=f"{agent} worst")
        ax.axhline(1.0, color="grey", lw=0.5)
        ax.set(
            title=f"d = {d}",
            xlabel="observations",
            ylabel="seconds per proposal",
            xscale="log",
            yscale="log",
        )
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
