"""What does the closed loop cost per experiment, embedded and distributed, and how much sooner
do more stations finish a campaign?

One run, one table per question:

1. Overhead per iteration. The same campaign (TiO2 sol-gel, XRD + microscope, bayesian;
   simulated instrument time runs ``--speedup`` times faster than real) embedded
   (``sdl run``: one process, SQLite catalog) and distributed (``sdl stack``: a
   queueserver on Redis, the document stream, the analysis service in its own process,
   tiled on PostgreSQL; the agent service runs in this process so its compute can be
   timed). Next to it, a bare bluesky ``count`` of the same devices on a RunEngine with no
   subscribers and instant instrument time: what simulating the instruments costs.
   Overhead = wall time per iteration - the instruments' time (simulated seconds /
   speed-up) - agent compute - the bare count, so it holds orchestration, catalog writes,
   streaming, queueing and the analysis of the raw data (shown on its own as well,
   measured in the embedded run). The first iteration (imports, model warm-up) is left
   out. Best value reached is shown for both: same seed, same budget.
2. Makespan: the same budget on 1, 2, 4 and 8 stations (embedded stations, each its own
   RunEngine and simulated lab; the agent proposes asynchronously with pending points), in
   simulated instrument hours of the busiest station, with the best value reached.

    python benchmarks/distributed_loop.py
    python benchmarks/distributed_loop.py --budget 16 --makespan-budget 32 --speedup 3600
    python benchmarks/distributed_loop.py --postgres postgresql://USER@HOST:5432

Prints the tables and writes ``benchmarks/results/distributed_loop.json``. The distributed
row needs Redis and PostgreSQL (skipped with the reason otherwise).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from bluesky import RunEngine
from bluesky.plans import count

from sdl.campaign.config import CampaignConfig, parse_campaign
from sdl.facility.queue_station import StreamOutcomes
from sdl.facility.services import API_KEY_VARIABLE, agent_service, run_agent_service
from sdl.facility.stack import Stack, StackSettings, drop_database, preflight
from sdl.lab.instruments import build_instruments
from sdl.loop.runner import CampaignRunner

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tio2_bo.yaml"
RESULTS = Path(__file__).resolve().parent / "results"
AGENT_METHODS = ("suggest", "ingest", "register_failures", "report", "should_stop")


#: Simulated seconds per wall second: instrument time really passes, as it does at a
#: facility, so work done while the instruments run is hidden as it is there.
SPEEDUP = 36000.0


def campaign(
    work: Path, name: str, budget: int, seed: int, speedup: float, stations: int = 1
) -> CampaignConfig:
    data = yaml.safe_load(EXAMPLE.read_text())
    data.update(name=name, budget=budget, seed=seed, data_dir=str(work / name))
    data["devices"] = {**data.get("devices", {}), "stations": stations, "speedup": speedup}
    return parse_campaign(data)


class Clock:
    """Wall time spent inside wrapped callables, counted from :meth:`reset` on."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def reset(self) -> None:
        self.seconds = 0.0

    def wrap(self, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        return timed


def time_loop(runner: CampaignRunner, run: Callable[[], Any] | None = None) -> dict[str, float]:
    """Run ``runner``'s campaign (with ``run``, default ``runner.run``); per-iteration wall,
    agent and analysis seconds after the first iteration, and the best value."""
    agent, analysis = Clock(), Clock()
    for method in AGENT_METHODS:
        setattr(runner.agent, method, agent.wrap(getattr(runner.agent, method)))
    runner.analysis.features = analysis.wrap(runner.analysis.features)
    marks: list[float] = []

    def mark(result: Any) -> None:
        if not marks:
            agent.reset()
            analysis.reset()
        marks.append(time.perf_counter())

    runner.on_experiment = mark
    result = (run or runner.run)()
    iterations = len(marks) - 1
    best = result.best
    speedup = runner.config.devices.speedup
    instrument_s = sum(r.instrument_time_s for r in result.records[1:]) / speedup
    return {
        "iterations": iterations,
        "wall_s": (marks[-1] - marks[0]) / iterations,
        "instrument_s": instrument_s / iterations,
        "agent_s": agent.seconds / iterations,
        "analysis_s": analysis.seconds / iterations,
        "best": best.features[result.objective] if best else math.nan,
    }


def bare_count_s(work: Path, repeats: int) -> float:
    """Median seconds of a bluesky ``count`` of the campaign's devices with instant instrument
    time and no subscribers: the cost of simulating the instruments."""
    config = campaign(work, "bare-count", repeats, 0, math.inf)
    instruments = build_instruments(config, work / "bare-count")
    engine = RunEngine({}, call_returns_result=False)
    devices = [instruments.reactor, *instruments.detectors]
    engine(count(devices))
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        engine(count(devices))
        seconds.append(time.perf_counter() - start)
    return float(np.median(seconds))


def embedded_row(work: Path, budget: int, seed: int, speedup: float) -> dict[str, float]:
    runner = CampaignRunner(campaign(work, "embedded", budget, seed, speedup))
    row = time_loop(runner)
    row["bare_count_s"] = bare_count_s(work, repeats=budget)
    return row


def distributed_row(
    work: Path, budget: int, seed: int, speedup: float, postgres: str, bare_s: float
) -> dict[str, float] | str:
    """The same campaign on the stack with one station; or why it could not run."""
    problems = preflight(StackSettings(postgres=f"{postgres}/postgres"))
    if problems:
        return "; ".join(problems)
    database = f"{postgres}/sdl_bench_{uuid.uuid4().hex[:10]}"  # the stack creates it
    try:
        config = campaign(work, "distributed", budget, seed, speedup)
        with Stack(config, StackSettings(postgres=database)) as stack:
            stack.start_analysis_service()
            os.environ[API_KEY_VARIABLE] = stack.api_key
            outcomes = StreamOutcomes(config.name)
            runner = agent_service(
                stack.config, stack.tiled_uri, stack.stations, outcomes, serve_control=False
            )
            timed = time_loop(
                runner, lambda: run_agent_service(runner, outcomes, stack.proxy.out_address)
            )
    finally:
        drop_database(database)
    timed["bare_count_s"] = bare_s
    return timed


def makespan_rows(
    work: Path, budget: int, seed: int, speedup: float, station_counts: list[int]
) -> list[dict[str, float]]:
    rows = []
    for stations in station_counts:
        start = time.perf_counter()
        result = CampaignRunner(
            campaign(work, f"stations-{stations}", budget, seed, speedup, stations)
        ).run()
        best = result.best
        rows.append(
            {
                "stations": stations,
                "experiments": len(result.records),
                "makespan_h": result.makespan_hours,
                "instrument_h": result.instrument_hours,
                "best": best.features[result.objective] if best else math.nan,
                "wall_s": time.perf_counter() - start,
            }
        )
        print(f"  {stations} station(s) done", flush=True)
    return rows


def print_tables(loops: dict[str, Any], makespans: list[dict[str, float]]) -> None:
    print(
        f"\n{'mode':<13}{'iters':>6}{'wall ms':>10}{'instr. ms':>10}{'agent ms':>10}"
        f"{'count ms':>10}"
        f"{'analysis ms':>13}{'overhead ms':>13}{'w/o analysis':>14}{'best':>8}"
    )
    analysis_ms = loops["embedded"]["analysis_s"] * 1e3
    for mode, row in loops.items():
        if isinstance(row, str):
            print(f"{mode:<13}skipped: {row}")
            continue
        overhead = (
            row["wall_s"] - row["instrument_s"] - row["agent_s"] - row["bare_count_s"]
        ) * 1e3
        row["overhead_ms"] = overhead
        print(
            f"{mode:<13}{row['iterations']:>6}{row['wall_s'] * 1e3:>10.0f}"
            f"{row['instrument_s'] * 1e3:>10.0f}{row['agent_s'] * 1e3:>10.0f}"
            f"{row['bare_count_s'] * 1e3:>10.0f}"
            f"{analysis_ms:>13.0f}{overhead:>13.0f}{overhead - analysis_ms:>14.0f}"
            f"{row['best']:>8.2f}"
        )
    one = makespans[0]["makespan_h"]
    print(
        f"\n{'stations':>8}{'experiments':>13}{'makespan h':>12}{'x 1 station':>13}"
        f"{'instrument h':>14}{'best':>8}{'wall s':>8}"
    )
    for row in makespans:
        print(
            f"{row['stations']:>8}{row['experiments']:>13}{row['makespan_h']:>12.1f}"
            f"{row['makespan_h'] / one:>13.2f}{row['instrument_h']:>14.1f}"
            f"{row['best']:>8.2f}{row['wall_s']:>8.0f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=12, help="experiments per overhead run")
    parser.add_argument("--makespan-budget", type=int, default=24)
    parser.add_argument("--stations", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--speedup",
        type=float,
        default=SPEEDUP,
        help="simulated seconds per wall second (inf: instant instruments)",
    )
    parser.add_argument(
        "--postgres",
        default="postgresql://postgres@127.0.0.1:5432",
        help="PostgreSQL server (a scratch database is made and dropped)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        loops: dict[str, Any] = {
            "embedded": embedded_row(work, args.budget, args.seed, args.speedup)
        }
        print("  embedded done", flush=True)
        loops["distributed"] = distributed_row(
            work,
            args.budget,
            args.seed,
            args.speedup,
            args.postgres,
            loops["embedded"]["bare_count_s"],
        )
        print("  distributed done", flush=True)
        makespans = makespan_rows(
            work, args.makespan_budget, args.seed, args.speedup, args.stations
        )
    print_tables(loops, makespans)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "distributed_loop.json").write_text(
        json.dumps({"overhead": loops, "makespan": makespans, "settings": vars(args)}, indent=2)
    )


if __name__ == "__main__":
    main()
