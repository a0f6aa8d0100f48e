"""Faults, rogue proposals and kills against the promise: nothing lost, duplicated or unsafe.

Scenario 1 runs campaigns in this process with every kind of simulated fault at random
(policies: the defaults, plus a simulated operator who recalibrates and resumes when a
campaign pauses for a person) and an agent that sometimes proposes conditions beyond the
reactor's safe limits; each campaign is audited from its catalog. Faults that strike the
same action together (say NaN points in a saturated scan) are one recorded fault, so
``faults_recorded`` can be below ``faults_injected``.

Scenario 2 kills ``sdl -v run`` with SIGKILL ``--kills`` times, each at a random moment after
the microscope wrote a new file (while that experiment is analysed and recorded, or while
the next is proposed and made), resumes each time, and audits the catalog against every
experiment the logs reported as finished, and the campaign's instrument folder against
the runs (orphan files).

Then the price: wall seconds per experiment of the same campaign in this tree and at
``BEFORE`` (before experiments were counted only once written), with no instrument time
(speedup inf: the bookkeeping alone) and with simulated instrument time.

Tables on stdout; JSON in benchmarks/results/fault_tolerance.json.

    python benchmarks/fault_tolerance.py --campaigns 3 --budget 12 --kills 20
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
import yaml
from git_tree import ROOT, checked_out
from tqdm import tqdm

from sdl.campaign.config import parse_campaign
from sdl.loop.runner import CampaignRunner, reported_proposals
from sdl.records.audit import audit_campaign
from sdl.records.catalog import campaign_runs, open_catalog, raw_dir
from sdl.records.vocabulary import Purpose
from simulators.faults import FAULT_TARGETS
from simulators.tio2 import TIO2_CONDITION_LIMITS

EXAMPLE = Path(__file__).parent.parent / "examples" / "tio2_bo.yaml"
RESULTS = Path(__file__).parent / "results"

#: The last commit before experiments were counted only once recorded (issue 19).
BEFORE = "46727a5"


def campaign_data(data_dir: Path, name: str, budget: int, seed: int, **devices) -> dict:
    data = yaml.safe_load(EXAMPLE.read_text())
    data.update(
        name=name,
        data_dir=str(data_dir),
        budget=budget,
        seed=seed,
        agent={"name": "random"},
        devices=devices,
    )
    return data


def operator(runner: CampaignRunner, done: threading.Event) -> None:
    """Whenever the campaign pauses for a person: fix the instrument, resume."""
    while not done.is_set():
        if runner.control.paused is not None:
            runner.instruments.faults.recalibrate()
            runner.control.resume("operator", "recalibrated")
        time.sleep(0.01)


def rogue(agent, rng: np.random.Generator, rate: float):
    """The agent's suggest, but a fraction of proposals leave the safe limits."""
    honest = agent.suggest

    def suggest(n: int = 1):
        proposals = honest(n)
        for proposal in proposals:
            if rng.random() < rate:
                name = str(rng.choice(sorted(TIO2_CONDITION_LIMITS)))
                proposal[name] = TIO2_CONDITION_LIMITS[name][1] * 1.5
        return proposals

    return suggest


def faulty_campaigns(root: Path, campaigns: int, budget: int, rate: float) -> dict:
    audits, injected, rogue_proposals = [], 0, 0
    for seed in range(campaigns):
        faults = {
            kind: {"rate": rate, "step": 0.5 if kind == "drift" else 0.1} for kind in FAULT_TARGETS
        }
        config = parse_campaign(
            campaign_data(
                root / f"faulty-{seed}",
                f"faulty-{seed}",
                budget,
                seed,
                faults=faults,
                action_timeout_s=0.5,
            )
        )
        runner = CampaignRunner(config)
        rng = np.random.default_rng(seed)
        runner.agent.suggest = rogue(runner.agent, rng, 0.1)
        done = threading.Event()
        threading.Thread(target=operator, args=(runner, done), daemon=True).start()
        result = runner.run()
        done.set()
        injected += sum(runner.instruments.faults.injected.values())
        rogue_proposals += result.refused
        audits.append(
            (
                audit_campaign(runner.client, config.name, TIO2_CONDITION_LIMITS),
                result.stopped is None and len(result.records) == budget,
            )
        )
    return {
        "scenario": f"faults at {rate:.0%}/action, 10% unsafe proposals",
        "campaigns": campaigns,
        "faults_injected": injected,
        "kills": 0,
        "refused": rogue_proposals,
        **_tally(audits),
    }


def killed_campaigns(root: Path, kills: int, budget: int, max_delay_s: float) -> dict:
    """SIGKILL ``sdl -v run`` ``kills`` times, each a random moment after a new instrument
    file appeared, then let it finish; audit against everything the logs reported."""
    data_dir = root / "killed"
    path = root / "killed.yaml"
    path.write_text(yaml.safe_dump(campaign_data(data_dir, "killed", budget, 0)))
    raw = raw_dir(data_dir, "killed")
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    done, while_recording, reported = 0, 0, []
    for kill in tqdm(range(kills), desc="kills", unit="kill"):
        log = root / f"killed-{kill}.log"
        started = len(list(raw.glob("*.h5")))
        with log.open("w") as stderr:
            process = subprocess.Popen(_run_command(path), stdout=subprocess.DEVNULL, stderr=stderr)
            # Strike a random moment after the next micrograph is written: while it is
            # analysed and recorded, or while the next sample is proposed and made.
            while len(list(raw.glob("*.h5"))) <= started and process.poll() is None:
                time.sleep(0.01)
            time.sleep(float(rng.uniform(0.0, max_delay_s)))
            new_files = len(list(raw.glob("*.h5"))) - started
            killed = process.poll() is None
            if killed:
                os.kill(process.pid, signal.SIGKILL)
            process.wait()
        shown = reported_proposals(log.read_text())
        done += killed
        # An experiment whose micrograph was written but not yet counted: the kill struck
        # while it was analysed or recorded.
        while_recording += killed and len(shown) < new_files
        reported += shown
    finished = subprocess.run(_run_command(path), capture_output=True, text=True)
    reported += reported_proposals(finished.stderr)
    audit = audit_campaign(
        open_catalog(data_dir),
        "killed",
        TIO2_CONDITION_LIMITS,
        reported=reported,
        raw_directory=raw,
    )
    adopted = sum(
        len(run.metadata["start"]["files"])
        for run in campaign_runs(open_catalog(data_dir), "killed", Purpose.ORPHANED_FILES)
    )
    return {
        "scenario": "SIGKILL at random moments, then resume",
        "campaigns": 1,
        "faults_injected": 0,
        "kills": done,
        "kills_while_recording": while_recording,
        "refused": audit.refused,
        "reported": len(set(reported)),
        "lost_as_reported": len(audit.lost_as_reported),
        "orphan_files": len(audit.orphans),
        "files_adopted": adopted,
        "budget_honoured": audit.experiments == budget,
        **_tally([(audit, finished.returncode == 0 and audit.experiments == budget)]),
    }


def _run_command(path: Path) -> list[str]:
    return [sys.executable, "-m", "sdl.cli", "-v", "run", str(path), "--quiet"]


#: Runs one campaign on a tree's code; prints the wall clock at each counted experiment and
#: once the campaign returned (its catalog complete), and its instrument seconds.
TIMED_CAMPAIGN = """
import json, sys, time
from sdl.campaign.config import load_campaign
from sdl.loop.runner import CampaignRunner
stamps = []
count = lambda _: stamps.append(time.time())
result = CampaignRunner(load_campaign(sys.argv[1]), on_experiment=count).run()
print(json.dumps({"stamps": stamps, "end": time.time(), "hours": result.instrument_hours}))
"""


def iteration_times(budget: int, speedups: list[float], repeats: int) -> list[dict]:
    """Wall seconds per experiment of the same campaign here and at :data:`BEFORE`, the trees
    taking turns, and the instrument seconds (simulated) an experiment takes."""
    rows = []
    with checked_out(BEFORE) as before_tree:
        for speedup in speedups:
            times: dict[str, list[float]] = {"before": [], "after": []}
            instrument_s = []
            for _ in range(repeats):
                for label, tree in (("before", before_tree), ("after", ROOT)):
                    wall_s, simulated_s = _seconds_per_experiment(tree, budget, speedup)
                    times[label].append(wall_s)
                    instrument_s.append(simulated_s)
            before, after = (statistics.median(times[label]) for label in ("before", "after"))
            real_s = statistics.median(instrument_s)
            rows.append(
                {
                    "speedup": speedup,
                    "instrument_s": real_s,
                    "before": before,
                    "after": after,
                    "change_percent": 100 * (after / before - 1),
                    # With the instruments at their real pace, wall time is instrument time
                    # plus what the loop adds.
                    "change_at_real_pace_percent": 100 * (after - before) / (real_s + before),
                }
            )
    return rows


def _seconds_per_experiment(tree: Path, budget: int, speedup: float) -> tuple[float, float]:
    """Wall seconds per experiment of one fresh campaign on ``tree``'s code (from the first
    counted experiment until the campaign returned with its catalog written), simulated time
    ``speedup`` times faster than real; and its instrument seconds per experiment."""
    with TemporaryDirectory() as tmp:
        data = campaign_data(Path(tmp) / "data", "timed", budget, 0, speedup=speedup)
        path = Path(tmp) / "timed.yaml"
        path.write_text(yaml.safe_dump(data))
        finished = subprocess.run(
            [sys.executable, "-c", TIMED_CAMPAIGN, str(path)],
            cwd=tree,
            env={**os.environ, "PYTHONPATH": str(tree)},
            check=True,
            capture_output=True,
            text=True,
        )
    timed = json.loads(finished.stdout.splitlines()[-1])
    stamps = timed["stamps"]
    return (timed["end"] - stamps[0]) / (len(stamps) - 1), 3600 * timed["hours"] / len(stamps)


def _tally(audits: list) -> dict:
    return {
        "experiments": sum(a.experiments for a, _ in audits),
        "faults_recorded": sum(sum(a.faults.values()) for a, _ in audits),
        "lost": sum(len(a.lost) for a, _ in audits),
        "duplicated": sum(len(a.duplicated) for a, _ in audits),
        "limit_violations": sum(len(a.limit_violations) for a, _ in audits),
        "gaps": sum(len(a.gaps) for a, _ in audits),
        "completed": sum(completed for _, completed in audits),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--campaigns", type=int, default=3)
    parser.add_argument("--budget", type=int, default=12)
    parser.add_argument("--rate", type=float, default=0.03, help="per fault kind per action")
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--killed-budget", type=int, default=40)
    parser.add_argument(
        "--max-delay", type=float, default=2.0, help="longest wait after a new file, s"
    )
    parser.add_argument("--timed-budget", type=int, default=8)
    parser.add_argument(
        "--timing-only", action="store_true", help="only the time per experiment, no audits"
    )
    parser.add_argument(
        "--speedups",
        type=lambda text: [float(x) for x in text.split(",")],
        default=[math.inf, 10800.0],
        help="simulated seconds per wall second of the timed campaigns (inf: no waiting)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per tree (median)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR, format="%(name)s: %(message)s")
    logging.getLogger("bluesky").setLevel(logging.CRITICAL)  # faults are logged once, by sdl
    rows = []
    if not args.timing_only:
        with TemporaryDirectory() as tmp:
            rows = [
                faulty_campaigns(Path(tmp), args.campaigns, args.budget, args.rate),
                killed_campaigns(Path(tmp), args.kills, args.killed_budget, args.max_delay),
            ]
        print_table(rows, COLUMNS)
        print_table(rows[1:], KILL_COLUMNS)
    timings = iteration_times(args.timed_budget, args.speedups, args.repeats)
    print(
        f"\nwall seconds per experiment (first counted experiment to the campaign's end), "
        f"budget {args.timed_budget}, median of {args.repeats}; before = {BEFORE}"
    )
    print_table(timings, TIMING_COLUMNS)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fault_tolerance.json").write_text(
        json.dumps({"audits": rows, "iteration_times": timings}, indent=2)
    )


COLUMNS = [
    "scenario",
    "campaigns",
    "experiments",
    "faults_injected",
    "faults_recorded",
    "kills",
    "refused",
    "lost",
    "duplicated",
    "limit_violations",
    "gaps",
    "completed",
]
TIMING_COLUMNS = [
    "speedup",
    "instrument_s",
    "before",
    "after",
    "change_percent",
    "change_at_real_pace_percent",
]
KILL_COLUMNS = [
    "kills",
    "kills_while_recording",
    "reported",
    "lost_as_reported",
    "duplicated",
    "budget_honoured",
    "orphan_files",
    "files_adopted",
]


def print_table(rows: list[dict], columns: list[str]) -> None:
    print(" | ".join(columns))
    for row in rows:
        print(" | ".join(_cell(row.get(c, "")) for c in columns))


def _cell(value) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    main()
