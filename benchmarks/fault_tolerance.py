"""Faults, rogue proposals and kills against the promise: nothing lost, duplicated or unsafe.

Scenario 1 runs campaigns in this process with every kind of simulated fault at random
(policies: the defaults, plus a simulated operator who recalibrates and resumes when a
campaign pauses for a person) and an agent that sometimes proposes conditions beyond the
reactor's safe limits. Scenario 2 kills campaign processes with SIGKILL at random moments
and resumes them. Each campaign is then audited from its catalog alone
(:func:`sdl.records.audit.audit_campaign`). One table; JSON in benchmarks/results/. Faults that
strike the same action together (say NaN points in a saturated scan) are one recorded
fault, so ``faults_recorded`` can be below ``faults_injected``.

    python benchmarks/fault_tolerance.py --campaigns 3 --budget 12 --kills 6
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
import yaml

from sdl.campaign.config import parse_campaign
from sdl.loop.runner import CampaignRunner
from sdl.records.audit import audit_campaign
from sdl.records.catalog import open_catalog
from simulators.faults import FAULT_TARGETS
from simulators.tio2 import TIO2_CONDITION_LIMITS

EXAMPLE = Path(__file__).parent.parent / "examples" / "tio2_bo.yaml"
RESULTS = Path(__file__).parent / "results"


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


def killed_campaigns(root: Path, kills: int, budget: int) -> dict:
    data_dir = root / "killed"
    path = root / "killed.yaml"
    path.write_text(yaml.safe_dump(campaign_data(data_dir, "killed", budget, 0)))
    rng = np.random.default_rng(7)
    (data_dir / "raw").mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "sdl.cli", "run", str(path), "--quiet"]
    done = 0
    for _ in range(kills):
        started = len(list((data_dir / "raw").glob("*.h5")))
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Wait until it is making samples (each leaves a micrograph file), then strike at a
        # random moment of the experiments that follow.
        while len(list((data_dir / "raw").glob("*.h5"))) <= started and process.poll() is None:
            time.sleep(0.01)
        time.sleep(float(rng.uniform(0.0, 2.0)))
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            done += 1
        process.wait()
    finished = subprocess.run(command, capture_output=True, text=True)
    audit = audit_campaign(open_catalog(data_dir), "killed", TIO2_CONDITION_LIMITS)
    return {
        "scenario": "SIGKILL at random moments, then resume",
        "campaigns": 1,
        "faults_injected": 0,
        "kills": done,
        "refused": audit.refused,
        **_tally([(audit, finished.returncode == 0 and audit.experiments == budget)]),
    }


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
    parser.add_argument("--kills", type=int, default=6)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR, format="%(name)s: %(message)s")
    logging.getLogger("bluesky").setLevel(logging.CRITICAL)  # faults are logged once, by sdl
    with TemporaryDirectory() as tmp:
        rows = [
            faulty_campaigns(Path(tmp), args.campaigns, args.budget, args.rate),
            killed_campaigns(Path(tmp), args.kills, args.budget),
        ]
    columns = [
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
    print(" | ".join(columns))
    for row in rows:
        print(" | ".join(str(row[c]) for c in columns))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fault_tolerance.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
