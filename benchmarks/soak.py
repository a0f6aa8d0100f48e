"""A long unattended campaign: does per-experiment time drift, does memory grow?

Runs one campaign of many fast experiments (diffractometer only, random agent, instant
simulated time) and reports wall time per experiment and the process's resident memory
in windows along the way. One table; JSON in benchmarks/results/.

    python benchmarks/soak.py --experiments 2000
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
import yaml
from tqdm import tqdm

from sdl.campaign.config import parse_campaign
from sdl.loop.runner import CampaignRunner

EXAMPLE = Path(__file__).parent.parent / "examples" / "tio2_bo.yaml"
RESULTS = Path(__file__).parent / "results"


def rss_mb() -> float:
    """Resident memory of this process now, MB (from /proc; peak RSS where there is none)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=2000)
    parser.add_argument("--windows", type=int, default=8)
    args = parser.parse_args()
    data = yaml.safe_load(EXAMPLE.read_text())
    with TemporaryDirectory() as tmp:
        data.update(
            name="soak",
            data_dir=tmp,
            budget=args.experiments,
            agent={"name": "random"},
            instruments=["xrd"],
            objectives=[{"name": "anatase_fraction", "direction": "maximize"}],
        )
        runner = CampaignRunner(parse_campaign(data))
        stamps, memory = [time.perf_counter()], [rss_mb()]
        bar = tqdm(total=args.experiments, unit="exp", desc="soak")

        def record(result) -> None:
            stamps.append(time.perf_counter())
            memory.append(rss_mb())
            bar.update(1)

        runner.on_experiment = record
        result = runner.run()
        bar.close()
    per_experiment = np.diff(stamps)
    edges = np.linspace(0, len(per_experiment), args.windows + 1).astype(int)
    rows = [
        {
            "experiments": f"{lo + 1}-{hi}",
            "mean_s": float(per_experiment[lo:hi].mean()),
            "p95_s": float(np.percentile(per_experiment[lo:hi], 95)),
            "rss_mb": float(memory[hi]),
        }
        for lo, hi in zip(edges[:-1], edges[1:], strict=True)
    ]
    print(f"{'experiments':>13} | {'mean s/exp':>10} | {'p95 s/exp':>9} | {'RSS MB':>7}")
    for row in rows:
        print(
            f"{row['experiments']:>13} | {row['mean_s']:10.3f} | {row['p95_s']:9.3f} | "
            f"{row['rss_mb']:7.0f}"
        )
    drift = rows[-1]["mean_s"] / rows[0]["mean_s"]
    growth = (memory[-1] - memory[1]) / max(len(per_experiment) - 1, 1) * 1000
    print(
        f"{len(result.records)} experiments; time per experiment last/first window: "
        f"x{drift:.2f}; memory growth after the first: {growth:.1f} MB per 1000 experiments"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "soak.json").write_text(
        json.dumps({"windows": rows, "time_drift": drift, "mb_per_1000": growth}, indent=2)
    )


if __name__ == "__main__":
    main()
