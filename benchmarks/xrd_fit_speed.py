"""How fast is the whole-pattern XRD fit, and does a faster fit give the same answers?

Issue 24's goal: at least 100 patterns a second on 2 cores, answers the same within the
fit's uncertainty. The patterns are TiO2 mixtures from the simulator (``--n`` of them,
seeded apart from the tests): one to four components at random weights (a component under
3 wt% is left out), crystallite sizes 4 to 80 nm, microstrain, zero shifts up to 0.1 deg,
counting times over a decade. Each is fitted by
:func:`sdl.analysis.xrd.whole_pattern.analyse_pattern` with its defaults.

Columns: ``before`` runs this script on the packages of ``--before`` in the same invocation
(:mod:`git_tree`); ``now`` is the working tree. Figures: seconds for the first pattern of a
process (what a fresh process pays once), patterns per second on one core (numpy with one
thread) and on two processes, phase identification and weight-fraction error against the
truth, and, pattern by pattern, how far the two versions' answers lie apart in units of
the fit's reported uncertainty.

    python benchmarks/xrd_fit_speed.py [--n 120] [--before d11bb85]

Prints one table and writes ``benchmarks/results/xrd_fit_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from git_tree import ROOT, results_at
from threadpoolctl import threadpool_limits

from physics.phases import AMORPHOUS, TIO2_POLYMORPHS
from sdl.analysis.xrd.whole_pattern import analyse_pattern
from simulators.xrd import PowderDiffractometer

#: The fit before its profiles were tabulated (every trial size rendered line by line).
BEFORE = "d11bb85"
RESULTS = ROOT / "benchmarks" / "results"
GOAL_PATTERNS_PER_S = 100.0
COMPONENTS = (*TIO2_POLYMORPHS, AMORPHOUS)
#: A component below this weight fraction is left out of a mixture.
MIN_FRACTION = 0.03
SEED = 424242


def test_set(n: int) -> tuple[np.ndarray, list[np.ndarray], list[dict]]:
    """``n`` simulated mixtures: the grid, the counts and each pattern's truth."""
    rng = np.random.default_rng(SEED)
    patterns, truths = [], []
    grid = PowderDiffractometer().two_theta_deg
    for _ in range(n):
        present = rng.random(len(COMPONENTS)) < 0.6
        present[rng.integers(len(COMPONENTS) - 1)] = True  # at least one crystalline phase
        weights = np.zeros(len(COMPONENTS))
        weights[present] = rng.dirichlet(np.ones(int(present.sum())))
        while weights[weights > 0].min() < MIN_FRACTION:  # leave out the smallest and renormalise
            weights[np.flatnonzero(weights == weights[weights > 0].min())[0]] = 0.0
            weights /= weights.sum()
        fractions = dict(zip(COMPONENTS, weights.tolist(), strict=True))
        sizes = {p: float(rng.uniform(4.0, 80.0)) for p in TIO2_POLYMORPHS}
        strain = {p: float(rng.uniform(0.0, 1e-3)) for p in TIO2_POLYMORPHS}
        instrument = PowderDiffractometer(zero_shift_deg=float(rng.uniform(-0.1, 0.1)))
        expected = instrument.ideal_pattern(
            fractions, sizes, strain, exposure_s=float(10 ** rng.uniform(-0.5, 0.5))
        )
        patterns.append(rng.poisson(expected).astype(float))
        truths.append({"fractions": fractions, "sizes": sizes})
    return grid, patterns, truths


def fit_one(task: tuple[np.ndarray, np.ndarray]) -> dict:
    """The fit's answers for one pattern, as plain numbers."""
    grid, counts = task
    fit = analyse_pattern(grid, counts)
    return {
        "fractions": fit.phase_fractions,
        "fractions_std": fit.phase_fractions_std,
        "sizes": fit.crystallite_size_nm,
        "sizes_std": fit.crystallite_size_nm_std,
    }


def measure(n: int) -> dict:
    """Timings and answers of the installed fit on the test set.

    A process fits the set twice on one core: the first pass pays for whatever the fit
    builds once per process (the second pattern onwards are timed), the second is the
    steady state of a long-lived process (a campaign, a sweep's worker). The two worker
    processes are forked after both passes, so they start warm.
    """
    grid, patterns, _ = test_set(n)
    tasks = [(grid, counts) for counts in patterns]
    with threadpool_limits(1):
        start = time.perf_counter()
        answers = [fit_one(tasks[0])]
        first_s = time.perf_counter() - start
        start = time.perf_counter()
        answers += [fit_one(task) for task in tasks[1:]]
        first_pass = (n - 1) / (time.perf_counter() - start)
        start = time.perf_counter()
        for task in tasks:
            fit_one(task)
        warm = n / (time.perf_counter() - start)
    start = time.perf_counter()
    with ProcessPoolExecutor(2, initializer=threadpool_limits, initargs=(1,)) as pool:
        list(pool.map(fit_one, tasks, chunksize=max(n // 8, 1)))
    two_processes = n / (time.perf_counter() - start)
    return {
        "first_pattern_s": first_s,
        "patterns_per_s_first_pass": first_pass,
        "patterns_per_s_one_core": warm,
        "patterns_per_s_two_processes": two_processes,
        "answers": answers,
    }


def accuracy(answers: list[dict], truths: list[dict]) -> tuple[float, float, float]:
    """Phase-ID accuracy (the set of components right), weight-fraction MAE, size error."""
    right, errors, size_errors = 0, [], []
    for answer, truth in zip(answers, truths, strict=True):
        found = {c for c, w in answer["fractions"].items() if w > 0}
        present = {c for c, w in truth["fractions"].items() if w > 0}
        right += found == present
        errors += [abs(answer["fractions"].get(c, 0.0) - w) for c, w in truth["fractions"].items()]
        size_errors += [
            abs(answer["sizes"][p] / truth["sizes"][p] - 1)
            for p in TIO2_POLYMORPHS
            if truth["fractions"][p] >= 0.1 and math.isfinite(answer["sizes"][p])
        ]
    return right / len(answers), float(np.mean(errors)), float(np.median(size_errors))


def agreement(before: list[dict], now: list[dict]) -> dict[str, float]:
    """How far apart two versions' answers lie, in units of the reported uncertainty."""
    fraction_z, size_z, same_phases = [], [], 0
    for old, new in zip(before, now, strict=True):
        same_phases += {c for c, w in old["fractions"].items() if w > 0} == {
            c for c, w in new["fractions"].items() if w > 0
        }
        for component, fraction in new["fractions"].items():
            sigma = max(new["fractions_std"][component], old["fractions_std"][component], 1e-4)
            fraction_z.append(abs(fraction - old["fractions"][component]) / sigma)
        for phase, size in new["sizes"].items():
            old_size, sigma = old["sizes"][phase], new["sizes_std"][phase]
            if math.isfinite(size) and math.isfinite(old_size) and sigma > 0:
                size_z.append(abs(size - old_size) / sigma)
    return {
        "same phases": same_phases / len(now),
        "fraction |diff|/sigma median": float(np.median(fraction_z)),
        "fraction |diff|/sigma max": float(np.max(fraction_z)),
        "size |diff|/sigma median": float(np.median(size_z)),
        "size |diff|/sigma max": float(np.max(size_z)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=120, help="patterns in the test set")
    parser.add_argument("--before", default=BEFORE, help="commit to compare against")
    parser.add_argument("--json", type=Path, default=None, help="(internal) write and stop")
    args = parser.parse_args()
    if args.json:
        args.json.write_text(json.dumps(measure(args.n)))
        return
    rows = {
        f"before ({args.before})": results_at(args.before, __file__, ["--n", str(args.n)]),
        "now": measure(args.n),
    }
    _, _, truths = test_set(args.n)
    before, now = rows.values()
    print(
        f"{args.n} simulated TiO2 mixtures, 2048 points each; load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    print(f"{'figure':<34} {'goal':>8} " + " ".join(f"{label:>18}" for label in rows))
    figures = [
        ("first pattern of a process, s", "", "first_pattern_s"),
        ("patterns/s, one core, first pass", "", "patterns_per_s_first_pass"),
        ("patterns/s, one core, warm", "", "patterns_per_s_one_core"),
        (
            "patterns/s, two processes, warm",
            f">={GOAL_PATTERNS_PER_S:.0f}",
            "patterns_per_s_two_processes",
        ),
    ]
    for name, goal, key in figures:
        print(f"{name:<34} {goal:>8} " + " ".join(f"{row[key]:18.2f}" for row in rows.values()))
    scores = {label: accuracy(row["answers"], truths) for label, row in rows.items()}
    for index, name in enumerate(("phase ID accuracy", "fraction MAE", "size rel. error median")):
        print(f"{name:<34} {'':>8} " + " ".join(f"{s[index]:18.3f}" for s in scores.values()))
    print("now against before, pattern by pattern:")
    for name, value in agreement(before["answers"], now["answers"]).items():
        print(f"  {name:<32} {value:8.3f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "xrd_fit_speed.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
