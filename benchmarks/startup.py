"""How long the command line takes to start: `sdl --help`, `sdl validate`, `sdl control` and
importing the campaign file's module, in this tree beside the tree before the reorganisation
(issue 18).

The old tree is checked out from git (``BEFORE``, where the module was ``sdl.config``) beside
this one (:mod:`git_tree`). Each command runs ``--repeats`` times; the table shows the median
wall time. Targets: ``sdl --help`` under 1 s, ``sdl validate`` under 2 s on an idle 2-core
machine (issue 18); ``sdl control`` acting within 1 s (issue 25).

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

#: The command line's entry point, given its arguments after the script.
_CLI = "import sys; from sdl.cli import main; sys.exit(main(sys.argv[1:]))"

#: What is timed: a label, the Python arguments (``{config}``: the campaign module's name,
#: ``{example}``: the example campaign file) and the exit status the command must give.
COMMANDS = (
    ("sdl --help", ["-c", _CLI, "--help"], 0),
    ("sdl validate examples/tio2_bo.yaml", ["-c", _CLI, "validate", "{example}"], 0),
    # No campaign is running: the request is refused after the file is read (exit 1).
    ("sdl control examples/tio2_bo.yaml status", ["-c", _CLI, "control", "{example}", "status"], 1),
    ("import the campaign module", ["-c", "import {config}"], 0),
)


def wall_times(tree: Path, config_module: str, repeats: int) -> dict[str, list[float]]:
    """Wall seconds of each command, ``repeats`` times, run on ``tree``'s code."""
    environment = {**os.environ, "PYTHONPATH": str(tree)}
    example = tree / "examples" / "tio2_bo.yaml"
    times: dict[str, list[float]] = {}
    for label, arguments, status in COMMANDS:
        arguments = [a.format(config=config_module, example=example) for a in arguments]
        times[label] = []
        for _ in range(repeats):
            start = time.perf_counter()
            finished = subprocess.run(
                [sys.executable, *arguments],
                cwd=tree,
                env=environment,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            times[label].append(time.perf_counter() - start)
            if finished.returncode != status:
                raise RuntimeError(f"{label} on {tree} exited {finished.returncode}")
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
    print(f"{'command':<44} {'before':>8} {'after':>8}")
    for label in after:
        print(
            f"{label:<44} {statistics.median(before[label]):8.2f} "
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
