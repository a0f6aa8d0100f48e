"""Phase mapping of a ternary composition spread, scored against known phase regions.

Two data sets:

* simulated Fe-Ga-Pd-like spreads (:mod:`simulators.fegapd`) where the truth is the set of
  phases present at every spot; seeds 0-2 here, while the method's defaults were chosen on
  seeds 100-101 (``sdl/analysis/xrd/phase_mapping.py``);
* the measured Fe-Ga-Pd spread of Kusne et al., Nat. Commun. 11, 5966 (2020) and Long et al.,
  Rev. Sci. Instrum. 78, 072217 (2007) (278 patterns, NIST public-domain data in
  ``../shared/data/cameo_FeGaPd``), against its published phase-region labels. Nothing was
  tuned on it.

For each: the adjusted Rand index (ARI) and Fowlkes-Mallows index (FMI) of the automatic
assignment (threshold stop) and, for reference, of the same clustering stopped at the true
number of regions (an oracle a real campaign does not have).

    python benchmarks/cameo_phase_mapping.py

Prints one table and writes ``benchmarks/results/cameo_phase_mapping.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from sdl.analysis.xrd.phase_mapping import adjusted_rand_index, fowlkes_mallows_index, map_phases
from simulators.fegapd import region_labels, simulate_spread

ROOT = Path(__file__).resolve().parent.parent
CAMEO = ROOT.parent / "shared" / "data" / "cameo_FeGaPd"
RESULTS = Path(__file__).parent / "results"


def load_cameo(folder: Path = CAMEO) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """2-theta grid, patterns (278 x 551), compositions (Fe, Ga, Pd) and region labels."""
    xrd = np.loadtxt(folder / "FeGaPd_XRD.txt", delimiter=",")
    compositions = np.loadtxt(folder / "FeGaPd_CMP.txt", skiprows=1)
    regions = np.loadtxt(folder / "FeGaPd_DFT_regions.txt").astype(int)
    return xrd[0], xrd[1:], compositions, regions


def score(name: str, two_theta_deg, patterns, compositions, truth) -> dict[str, float | str]:
    started = time.perf_counter()
    automatic = map_phases(two_theta_deg, patterns, compositions)
    elapsed_s = time.perf_counter() - started
    oracle = map_phases(two_theta_deg, patterns, compositions, n_regions=len(np.unique(truth)))
    return {
        "data": name,
        "samples": len(truth),
        "true_regions": int(len(np.unique(truth))),
        "found_regions": automatic.n_regions,
        "ari": adjusted_rand_index(truth, automatic.labels),
        "fmi": fowlkes_mallows_index(truth, automatic.labels),
        "ari_oracle_k": adjusted_rand_index(truth, oracle.labels),
        "fmi_oracle_k": fowlkes_mallows_index(truth, oracle.labels),
        "seconds": elapsed_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="simulated spreads")
    args = parser.parse_args()
    rows = []
    for seed in range(args.seeds):
        spread = simulate_spread(np.random.default_rng(seed))
        rows.append(
            score(
                f"simulated seed {seed}",
                spread.two_theta_deg,
                spread.patterns,
                spread.compositions,
                region_labels(spread.regions),
            )
        )
    if CAMEO.exists():
        rows.append(score("measured Fe-Ga-Pd (CAMEO)", *load_cameo()))
    else:
        rows.append({"data": f"measured Fe-Ga-Pd: {CAMEO} not found"})
    header = (
        f"{'data':<28} {'n':>4} {'true':>5} {'found':>5} {'ARI':>6} {'FMI':>6}"
        f" {'ARI@k':>6} {'FMI@k':>6} {'s':>6}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        if "ari" not in row:
            print(row["data"])
            continue
        print(
            f"{row['data']:<28} {row['samples']:>4} {row['true_regions']:>5}"
            f" {row['found_regions']:>5} {row['ari']:>6.3f} {row['fmi']:>6.3f}"
            f" {row['ari_oracle_k']:>6.3f} {row['fmi_oracle_k']:>6.3f} {row['seconds']:>6.2f}"
        )
    print("ARI/FMI: automatic stop; @k: stopped at the true number of regions (oracle).")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "cameo_phase_mapping.json"
    out.write_text(json.dumps(rows, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
