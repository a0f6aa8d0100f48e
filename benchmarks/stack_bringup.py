"""How long `sdl stack` takes to bring the facility up, now beside an earlier commit, in one run.

Brings up the stack of the README's demo campaign (tiled on PostgreSQL, the stream proxy,
``--stations`` queueservers on Redis, their RunEngine environments) and then its analysis and
agent services, ``--repeats`` times each, and takes it down again. Times, median over the
repeats: the stack (everything but the services), the services (until the analysis service
follows the stream), and the total. Issue 25 asks for everything up in under 30 s on
2 cores.

    python benchmarks/stack_bringup.py
    python benchmarks/stack_bringup.py --stations 4 --before 285fc3a

Needs Redis and PostgreSQL (``--postgres``); prints why and stops without them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml
from git_tree import ROOT, results_at

from sdl.campaign.config import parse_campaign
from sdl.facility.stack import Stack, StackSettings, drop_database, preflight

#: The last commit that brought the stack up one service after another.
BEFORE = "285fc3a"
GOAL_S = 30.0
EXAMPLE = ROOT / "examples" / "tio2_bo.yaml"


def bring_up(stations: int, postgres: str) -> dict[str, float]:
    """Seconds to bring the stack up, then its services; all taken down again."""
    raw = yaml.safe_load(EXAMPLE.read_text())
    database = f"{postgres}/sdl_bringup_{uuid.uuid4().hex[:10]}"  # the stack creates it
    with tempfile.TemporaryDirectory() as work:
        raw.update(data_dir=work, name="bringup", budget=1)
        start = time.perf_counter()
        try:
            with Stack(parse_campaign(raw), StackSettings(stations, postgres=database)) as stack:
                up = time.perf_counter()
                agent = stack.start_services()
                ready = time.perf_counter()
                agent.terminate()
        finally:
            drop_database(database)
    return {"stack_s": up - start, "services_s": ready - up, "total_s": ready - start}


def measure(stations: int, repeats: int, postgres: str) -> dict[str, float]:
    runs = []
    for index in range(repeats):
        runs.append(bring_up(stations, postgres))
        print(f"  up {index + 1}/{repeats}: {runs[-1]['total_s']:.1f} s", flush=True)
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stations", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--before", default=BEFORE, help="commit to compare against")
    parser.add_argument("--json", type=Path, default=None, help="(internal) write and stop")
    args = parser.parse_args()
    problems = preflight(StackSettings(postgres=f"{args.postgres}/postgres"))
    if problems:
        sys.exit("cannot measure the stack: " + "; ".join(problems))
    own = ["--stations", str(args.stations), "--repeats", str(args.repeats)]
    own += ["--postgres", args.postgres]
    if args.json:
        args.json.write_text(json.dumps(measure(args.stations, args.repeats, args.postgres)))
        return
    columns = {
        f"before ({args.before})": results_at(args.before, __file__, own),
        "now": measure(args.stations, args.repeats, args.postgres),
    }
    print(f"\n{args.stations} station(s), median of {args.repeats}; goal: all up in {GOAL_S:g} s")
    print(f"{'':<12}" + "".join(f"{name:>20}" for name in columns))
    for key, label in (("stack_s", "stack"), ("services_s", "services"), ("total_s", "total")):
        print(f"{label:<12}" + "".join(f"{column[key]:>19.1f}s" for column in columns.values()))
    out = ROOT / "benchmarks" / "results" / "stack_bringup.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(columns, indent=2))


if __name__ == "__main__":
    main()
