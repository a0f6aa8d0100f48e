"""How long the command line takes to start: `sdl --help`, `sdl validate` and importing the
campaign file's module, in this tree beside the tree before the reorganisation (issue 18).

The old tree is checked out from git (``BEFORE``, where the module was ``sdl.config``) beside
this one (:mod:`git_tree`). Each command runs ``--repeats`` times; the table shows the median
wall time.
Targets: ``sdl --help`` under 1 s, ``sdl validate`` under 2 s on an idle 2-core machine.

Prints one table and writes ``benchmarks/results/startup.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from git_tree import ROOT, checked_out

RESULTS = ROOT / "benchmarks" / "results"

#: The last commit before sdl/ was split into subpackages.
BEFORE = "09b8808~1"

#: What is timed: a label and the Python arguments, with the campaign module's name filled in.
COMMANDS = (
    ("sdl --help", ["-c", "import sys; from sdl.cli import main; sys.exit(main(['--help']))"]),
    (
        "sdl validate examples/tio2_bo.yaml",
        ["-c", "import sys; from sdl.cli import main; sys.exit(main(sys.argv[1:]))", "validate"],
    ),
    ("import the campaign module", ["-c", "import {config}"]),
)


def wall_times(tree: Path, config_module: str, repeats: int) -> dict[str, list[float]]:
    """Wall seconds of each command, ``repeats`` times, run on ``tree``'s code."""
    environment = {**os.environ, "PYTHONPATH": str(tree)}
    times: dict[str, list[float]] = {}
    for label, arguments in COMMANDS:
        arguments = [a.format(config=config_module) for a in arguments]
        if arguments[-1] == "validate":
            arguments.append(str(tree / "examples" / "tio2_bo.yaml"))
        times[label] = []
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, *arguments],
                cwd=tree,
                env=environment,
                check=True,
                stdout=subprocess.DEVNULL,
            )
            times[label].append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs of each command (median)")
    args = parser.parse_args(argv)
    after = wall_times(ROOT, "sdl.campaign.config", args.repeats)
    with checked_out(BEFORE) as before_tree:
        before = wall_times(before_tree, "sdl.config", args.repeats)
    print(
        f"median wall seconds of {args.repeats} runs; {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f}; campaign module: sdl.config before, sdl.campaign.config after"
    )
    print(f"{'command':<40} {'before':>8} {'after':>8}")
    for label in after:
        print(
            f"{label:<40} {statistics.median(before[label]):8.2f} "
            f"{statistics.median(after[label]):8.2f}"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "startup.json"
    out.write_text(
        json.dumps(
            {
                "before_commit": BEFORE,
                "repeats": args.repeats,
                "cpu_count": os.cpu_count(),
                "load_average": os.getloadavg(),
                "before_s": before,
                "after_s": after,
            },
            indent=2,
        )
    )
    print(f"written: {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
