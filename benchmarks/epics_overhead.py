"""What does Channel Access cost per experiment compared with the in-process simulators?

Runs ``synthesize_and_measure`` (reactor + XRD + microscope, one Bluesky run each) on the
same simulated physics twice: in-process, and over CA against ``sdl ioc`` started on a free
port on 127.0.0.1. Instrument time is instant in both (speed-up inf), so the difference is
the transport: puts with completion, waveform reads (a 2048-point pattern, a 256x256 frame).

    python benchmarks/epics_overhead.py --iterations 20

Prints one table and writes ``benchmarks/results/epics_overhead.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from bluesky import RunEngine

from plans.experiment import synthesize_and_measure
from sdl.campaign.config import parse_campaign
from sdl.facility.ioc_process import running_ioc
from sdl.lab.instruments import build_instruments

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tio2_bo.yaml"
CONDITIONS = {"temperature_c": 550.0, "duration_h": 2.0, "ph": 4.0, "h2o_ti_ratio": 20.0}


def time_iterations(backend: str, prefix: str, iterations: int, work_dir: Path) -> np.ndarray:
    """Wall seconds of each synthesise-and-measure run on ``backend`` (after one warm-up)."""
    data = yaml.safe_load(EXAMPLE.read_text())
    data.update(data_dir=str(work_dir / backend))
    data["devices"] = {"backend": backend, "epics": {"prefix": prefix}}
    instruments = build_instruments(parse_campaign(data), work_dir / backend / "raw")
    engine = RunEngine({}, call_returns_result=False)
    plan_args = (instruments.reactor, instruments.detectors, CONDITIONS)
    engine(synthesize_and_measure(*plan_args))
    seconds = []
    for _ in range(iterations):
        start = time.perf_counter()
        engine(synthesize_and_measure(*plan_args))
        seconds.append(time.perf_counter() - start)
    return np.array(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20)
    args = parser.parse_args()
    prefix = "BENCH:"
    with tempfile.TemporaryDirectory() as tmp, running_ioc(prefix=prefix) as ioc:
        os.environ.update(ioc.client_env)
        timings = {
            backend: time_iterations(backend, prefix, args.iterations, Path(tmp))
            for backend in ("sim", "epics")
        }
    sim_median = float(np.median(timings["sim"]))
    print(f"{'backend':<10}{'runs':>6}{'median s':>12}{'mean s':>10}{'p90 s':>10}{'x sim':>8}")
    rows = {}
    for backend, seconds in timings.items():
        rows[backend] = {
            "runs": len(seconds),
            "median_s": float(np.median(seconds)),
            "mean_s": float(seconds.mean()),
            "p90_s": float(np.percentile(seconds, 90)),
        }
        row = rows[backend]
        print(
            f"{backend:<10}{row['runs']:>6}{row['median_s']:>12.4f}{row['mean_s']:>10.4f}"
            f"{row['p90_s']:>10.4f}{row['median_s'] / sim_median:>8.2f}"
        )
    out = Path(__file__).parent / "results" / "epics_overhead.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
