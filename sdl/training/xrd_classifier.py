"""Train the XRD phase classifier on simulated patterns: ``python -m sdl.training.xrd_classifier``.

Trains on patterns simulated with ``--seed``, sets the presence thresholds on a validation
set simulated with ``--seed + 1``, writes the weights (a torch state dict with the component
names and thresholds) to ``--out`` and prints the accuracy on a third set (``--seed +
10000``).
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sdl.analysis.xrd.classifier import (
    DEFAULT_PHASES,
    calibrate_thresholds,
    simulate_patterns,
    train_classifier,
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="where to write the weights")
    parser.add_argument("--patterns", type=int, default=12000, help="training patterns")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch")
    parser.add_argument(
        "--phases", nargs="+", default=list(DEFAULT_PHASES), help="crystalline phases"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    started = time.perf_counter()
    classifier = train_classifier(
        args.patterns, args.epochs, args.seed, args.phases, threads=args.threads
    )
    classifier = calibrate_thresholds(classifier, seed=args.seed + 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    classifier.save(args.out)
    validation = simulate_patterns(500, np.random.default_rng(args.seed + 10_000), args.phases)
    predicted = classifier.predict(validation.two_theta_deg, validation.counts)
    exact = np.mean(np.all(predicted.present == (validation.fractions > 0), axis=1))
    print(
        f"trained in {time.perf_counter() - started:.0f} s; wrote {args.out}; "
        f"validation phase-ID accuracy {exact:.3f} on 500 patterns"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
