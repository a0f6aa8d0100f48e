"""Where a simulated experiment's time goes in the embedded loop, before and after a change.

Issue 24's goals: with instant instruments and the random agent, at most 50 ms an experiment
end to end (recording included); the README's demo campaign (``examples/tio2_bo.yaml``, 30
experiments, Bayesian agent) in at most 15 s. Each variant runs a fresh campaign in a fresh
catalog in its own process and times four stages by wrapping the methods that do them:

* simulate: the station's plan on the RunEngine (synthesis and measurement on the simulated
  instruments, documents handed to the writer);
* analyse: :meth:`sdl.analysis.pipeline.SampleAnalysis.analyse` (XRD fit, segmentation);
* record: the loop waiting for the catalog writer to finish (it writes on its own thread
  while the other stages run, so only the wait counts);
* propose: the agent's next proposal.

``other`` is the rest of the wall time (opening the catalog, start-up, bookkeeping).
``before`` runs this script on the packages of ``--before`` in the same invocation.

    python benchmarks/loop_speed.py [--budget 30] [--before d11bb85]

Prints one table and writes ``benchmarks/results/loop_speed.json``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from git_tree import ROOT, results_at

#: Before the whole-pattern fit's profiles were tabulated.
BEFORE = "d11bb85"
RESULTS = ROOT / "benchmarks" / "results"
DEMO = ROOT / "examples" / "tio2_bo.yaml"
GOAL_MS_PER_EXPERIMENT = 50.0
GOAL_DEMO_S = 15.0
STAGES = ("simulate", "analyse", "record", "propose")


def timed_stages() -> dict[str, float]:
    """Wrap the methods that do each stage; their seconds add up in the returned dict."""
    from sdl.analysis.pipeline import SampleAnalysis
    from sdl.lab.stations import LocalStation
    from sdl.loop.runner import CampaignRunner
    from sdl.records.catalog import BackgroundWriter

    seconds: dict[str, float] = defaultdict(float)
    for owner, name, stage in (
        (LocalStation, "_run_plan", "simulate"),
        (SampleAnalysis, "analyse", "analyse"),
        (BackgroundWriter, "flush", "record"),
        (CampaignRunner, "_next_proposal", "propose"),
    ):
        method = getattr(owner, name)

        @functools.wraps(method)
        def wrapper(*args, _method=method, _stage=stage, **kwargs):
            start = time.perf_counter()
            try:
                return _method(*args, **kwargs)
            finally:
                seconds[_stage] += time.perf_counter() - start

        setattr(owner, name, wrapper)
    return seconds


def campaign(agent: str, budget: int) -> dict:
    """Run the demo campaign with ``agent`` and ``budget`` in a fresh catalog; its stages."""
    from sdl.campaign.config import load_campaign, parse_campaign
    from sdl.loop.runner import CampaignRunner

    seconds = timed_stages()
    with tempfile.TemporaryDirectory(prefix="sdl-loop-speed-") as data_dir:
        config = load_campaign(DEMO)
        config = parse_campaign(
            {
                **config.model_dump(),
                "data_dir": data_dir,
                "agent": {"name": agent},
                "budget": budget,
            },
            source=str(DEMO),
        )
        start = time.perf_counter()
        result = CampaignRunner(config).run()
        wall = time.perf_counter() - start
    stages = {stage: seconds[stage] for stage in STAGES}
    stages["other"] = wall - sum(stages.values())
    return {"wall_s": wall, "experiments": len(result.records), "stages_s": stages}


def measure(budget: int) -> dict:
    return {"random": campaign("random", budget), "bayesian": campaign("bayesian", budget)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=30)
    parser.add_argument("--before", default=BEFORE, help="commit to compare against")
    parser.add_argument("--json", type=Path, default=None, help="(internal) write and stop")
    args = parser.parse_args()
    if args.json:
        args.json.write_text(json.dumps(measure(args.budget)))
        return
    rows = {
        f"before ({args.before})": results_at(
            args.before, __file__, ["--budget", str(args.budget)]
        ),
        "now": measure(args.budget),
    }
    print(
        f"{DEMO.name}, {args.budget} experiments, instant instruments; load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    print(f"{'':<26}{'':>9}" + "".join(f"{label:>20}" for label in rows))
    for agent in ("random", "bayesian"):
        print(f"{agent} agent, ms per experiment")
        for stage in (*STAGES, "other"):
            cells = [
                1000 * row[agent]["stages_s"][stage] / row[agent]["experiments"]
                for row in rows.values()
            ]
            print(f"  {stage:<24}{'':>9}" + "".join(f"{c:20.1f}" for c in cells))
        per_experiment = [
            1000 * row[agent]["wall_s"] / row[agent]["experiments"] for row in rows.values()
        ]
        goal = f"<={GOAL_MS_PER_EXPERIMENT:.0f}" if agent == "random" else ""
        print(f"  {'total':<24}{goal:>9}" + "".join(f"{c:20.1f}" for c in per_experiment))
    demo = [row["bayesian"]["wall_s"] for row in rows.values()]
    print(
        f"{'demo campaign, s':<26}{f'<={GOAL_DEMO_S:.0f}':>9}" + "".join(f"{c:20.1f}" for c in demo)
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "loop_speed.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
