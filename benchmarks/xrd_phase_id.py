"""Does the whole-pattern fit invent phases? Scored on our simulator and on another generator.

Three sets, fitted with :func:`sdl.analysis.xrd.whole_pattern.analyse_pattern`:

1. ``simulator``: the held-apart test set of ``benchmarks/xrd_scores.py`` (the same seeds,
   ``simulate_patterns`` from seed 20250; every present component >= 5 wt%).
2. ``independent``: patterns made here without the simulator or the analysis's renderer:
   true Voigt lines (``scipy.special.voigt_profile``), half of them with a purely
   Lorentzian instrument function, the other half Gaussian with another Caglioti
   calibration; K-alpha2 at 0.48; a background of a power law, a slope and (in a third of
   the patterns) a glass-holder hump at 22 deg; 0.02 deg steps. Every other pattern has one
   phase at 3 wt%; the rest have none below 15 wt%.
3. ``real``: the dara precursor mixtures that contain TiO2 (``../shared/data/xrd_real_dara``,
   jrneilson/dara, MIT licence). The other precursors are outside the TiO2 library, so a fit
   of the polymorphs alone must be flagged as poor; brookite is in none of them.

Reported: phase-ID accuracy (exact set of crystalline phases; presence = a fraction the fit
reports above zero), fraction MAE, crystallite size median relative error and mean signed
error, seconds per pattern, false and missed phases, flagged fits.

    python benchmarks/xrd_phase_id.py [--n 100] [--seed 20250] [--json PATH] [--before COMMIT]

Prints each figure before (the analysis at ``BEFORE``, or ``--before``) and after (the working
tree) side by side, with issue 20's goal where it sets one.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from git_tree import ROOT, results_at
from scipy.special import voigt_profile

from physics.diffraction import (
    CU_KALPHA1_ANGSTROM,
    CU_KALPHA2_ANGSTROM,
    FWHM_TO_SIGMA,
    caglioti_fwhm2_deg2,
    q_humps_per_deg,
    scherrer_fwhm_deg,
)
from physics.phases import AMORPHOUS, TIO2_POLYMORPHS
from physics.structures import (
    AMORPHOUS_TIO2_HUMPS,
    get_structure,
    reflections_per_weight_fraction,
)

REAL_DIR = ROOT.parent / "shared" / "data" / "xrd_real_dara"
COMPONENTS = (AMORPHOUS, *TIO2_POLYMORPHS)


@dataclass(frozen=True)
class Pattern:
    """One pattern with its truth."""

    two_theta_deg: np.ndarray
    counts: np.ndarray
    fractions: np.ndarray  # per COMPONENTS
    sizes_nm: np.ndarray  # per COMPONENTS, NaN where absent or amorphous


def _lines(phase: str) -> tuple[np.ndarray, np.ndarray]:
    two_theta, _, intensity = reflections_per_weight_fraction(
        get_structure(phase), CU_KALPHA1_ANGSTROM, (5.0, 90.0)
    )
    return two_theta, intensity


def _voigt_phase(x: np.ndarray, phase: str, size_nm: float, lorentz_instrument: bool):
    """Profile per unit weight fraction: Voigt doublets, another instrument than the fit's."""
    two_theta, intensity = _lines(phase)
    keep = intensity > 1e-3 * intensity.max()
    total = np.zeros_like(x)
    d = CU_KALPHA1_ANGSTROM / (2 * np.sin(np.radians(two_theta[keep] / 2)))
    for wavelength, ratio in ((CU_KALPHA1_ANGSTROM, 1.0), (CU_KALPHA2_ANGSTROM, 0.48)):
        centre = np.degrees(2 * np.arcsin(np.clip(wavelength / (2 * d), 0, 1)))
        instrument = np.sqrt(caglioti_fwhm2_deg2(centre, 0.006, -0.002, 0.005))
        lorentz = scherrer_fwhm_deg(size_nm, centre, wavelength) / 2
        sigma = np.zeros_like(centre)
        if lorentz_instrument:
            lorentz = lorentz + instrument / 2
        else:
            sigma = instrument * FWHM_TO_SIGMA
        for c, area, s, g in zip(centre, intensity[keep], sigma, lorentz, strict=True):
            total += ratio * area * voigt_profile(x - c, s, g)
    return total


def independent_set(n: int, seed: int) -> list[Pattern]:
    """Mixtures from a generator that shares only the crystal structures with the fit."""
    rng = np.random.default_rng(seed)
    x = np.arange(10.0, 80.0 + 1e-9, 0.02)
    unit = float(_lines("anatase")[1].max())
    patterns = []
    for index in range(n):
        present = [p for p in TIO2_POLYMORPHS if rng.random() < 0.5] or [
            TIO2_POLYMORPHS[rng.integers(3)]
        ]
        weights = dict(
            zip(present, 0.15 + 0.85 * rng.dirichlet(np.ones(len(present))), strict=True)
        )
        if rng.random() < 0.4:
            weights[AMORPHOUS] = rng.uniform(0.15, 0.4)
        total = sum(weights.values())
        weights = {p: w / total for p, w in weights.items()}
        if index % 2 and len(present) < 3:
            minor = [p for p in TIO2_POLYMORPHS if p not in present][rng.integers(3 - len(present))]
            weights = {p: 0.97 * w for p, w in weights.items()} | {minor: 0.03}
        sizes = {p: math.exp(rng.uniform(math.log(5), math.log(100))) for p in weights}
        lorentz = bool(index % 4 < 2)
        zero = rng.uniform(-0.1, 0.1)
        signal = np.zeros_like(x)
        for phase, w in weights.items():
            if phase == AMORPHOUS:
                profile = q_humps_per_deg(x - zero, AMORPHOUS_TIO2_HUMPS, CU_KALPHA1_ANGSTROM)
            else:
                profile = _voigt_phase(x - zero, phase, sizes[phase], lorentz)
            signal += w * profile / unit
        flux = math.exp(rng.uniform(math.log(150), math.log(3000)))
        background = rng.uniform(10, 150) * (20.0 / x) ** 2 + rng.uniform(5, 80) * (
            1 + rng.uniform(-0.3, 0.3) * (x - 45) / 35
        )
        if index % 3 == 0:
            background += rng.uniform(10, 60) * np.exp(-0.5 * ((x - 22.0) / 3.5) ** 2)
        counts = rng.poisson(flux * signal + background).astype(float)
        fractions = np.array([weights.get(c, 0.0) for c in COMPONENTS])
        size_row = np.array(
            [sizes[c] if c in weights and c != AMORPHOUS else math.nan for c in COMPONENTS]
        )
        patterns.append(Pattern(x, counts, fractions, size_row))
    return patterns


def simulator_set(n: int, seed: int) -> list[Pattern]:
    """The held-apart test set of ``xrd_scores.py`` (same generator and seed)."""
    from sdl.training.xrd_classifier import simulate_patterns

    test = simulate_patterns(n, np.random.default_rng(seed))
    return [
        Pattern(test.two_theta_deg, counts, fractions, sizes)
        for counts, fractions, sizes in zip(
            test.counts, test.fractions, test.crystallite_size_nm, strict=True
        )
    ]


def score(patterns: list[Pattern]) -> dict:
    """Fit every pattern (CPU seconds each) and summarise against the truth."""
    from sdl.analysis.xrd.whole_pattern import analyse_pattern

    rows = []
    for pattern in patterns:
        started = time.process_time()
        fit = analyse_pattern(pattern.two_theta_deg, pattern.counts)
        seconds = time.process_time() - started
        found = np.array([fit.phase_fractions[c] for c in COMPONENTS])
        sizes = np.array(
            [math.nan] + [fit.crystallite_size_nm[p] for p in TIO2_POLYMORPHS], dtype=float
        )
        fraction_std = np.array([fit.phase_fractions_std[c] for c in COMPONENTS])
        size_std = np.array(
            [math.nan] + [fit.crystallite_size_nm_std[p] for p in TIO2_POLYMORPHS], dtype=float
        )
        rows.append((pattern, found, sizes, seconds, fit, fraction_std, size_std))
    return summarise(rows)


def summarise(rows) -> dict:
    """Identification, fractions, sizes, time and flags over ``(pattern, found, sizes, s, fit)``."""
    truth = np.array([r[0].fractions for r in rows])
    found = np.array([r[1] for r in rows])
    true_sizes = np.array([r[0].sizes_nm for r in rows])
    sizes = np.array([r[2] for r in rows])
    crystalline = slice(1, None)
    present, called = truth > 0, found > 0
    both = np.isfinite(true_sizes) & np.isfinite(sizes) & called
    relative = (sizes[both] - true_sizes[both]) / true_sizes[both]
    minor = (truth > 0) & (truth < 0.04)
    fits = [r[4] for r in rows]
    # 2-sigma coverage: every component that is there or was reported.
    fraction_std = np.array([r[5] for r in rows])
    judged = present | called
    fraction_z = np.abs(found - truth)[judged] / np.maximum(fraction_std[judged], 1e-12)
    size_std = np.array([r[6] for r in rows])[both]
    size_z = np.abs(sizes[both] - true_sizes[both]) / np.maximum(size_std, 1e-12)
    return {
        "n": len(rows),
        "id_accuracy_crystalline": float(
            np.mean(np.all(present[:, crystalline] == called[:, crystalline], axis=1))
        ),
        "id_accuracy_all": float(np.mean(np.all(present == called, axis=1))),
        "false_crystalline_phases": int(np.sum(~present[:, crystalline] & called[:, crystalline])),
        "missed_crystalline_phases": int(np.sum(present[:, crystalline] & ~called[:, crystalline])),
        "minor_3wt_found": f"{int(np.sum(minor & called))}/{int(np.sum(minor))}",
        "minor_3wt_found_within_0.02": int(np.sum(minor & (np.abs(found - truth) <= 0.02))),
        "fraction_mae": float(np.mean(np.abs(found - truth))),
        "size_rel_error_median": float(np.median(np.abs(relative))),
        "size_rel_error_mean_signed": float(np.mean(relative)),
        "fraction_2sigma_coverage": float(np.mean(fraction_z <= 2)),
        "fraction_std_median": float(np.median(fraction_std[judged])),
        "size_2sigma_coverage": float(np.mean(size_z <= 2)),
        "cpu_s_per_pattern": float(np.mean([r[3] for r in rows])),
        "flagged_poor_fit": int(sum("poor_fit" in getattr(f, "fit_flags", ()) for f in fits)),
        "reduced_chi2_median": float(
            np.median([getattr(f, "reduced_chi2", math.nan) for f in fits])
        ),
    }


def real_rows() -> list[dict]:
    """TiO2-containing dara mixtures fitted with the TiO2 polymorphs alone."""
    from sdl.analysis.xrd.whole_pattern import analyse_pattern

    with open(REAL_DIR / "index.csv", newline="") as handle:
        names = [
            row["name"]
            for row in csv.DictReader(handle)
            if row["subset"] == "precursor_mixture" and "TiO2" in row["name"]
        ]
    rows = []
    for name in names:
        data = np.loadtxt(REAL_DIR / "precursor_mixture" / f"{name}.csv", delimiter=",", skiprows=1)
        keep = data[:, 0] <= 80.0
        fit = analyse_pattern(data[keep, 0], data[keep, 1])
        rows.append(
            {
                "name": name,
                "found": {p: round(w, 3) for p, w in fit.phase_fractions.items() if w > 0},
                "rwp": round(fit.rwp, 3),
                "reduced_chi2": round(getattr(fit, "reduced_chi2", math.nan), 1),
                "flags": list(getattr(fit, "fit_flags", ())),
            }
        )
    return rows


#: The analysis before its uncertainties took the residuals' serial correlation into account.
BEFORE = "5a086ac"
#: Issue 20's goals, beside the figures they judge.
GOALS = {
    "id_accuracy_crystalline": ">= 0.97",
    "fraction_mae": "<= 0.03",
    "fraction_2sigma_coverage": "0.90-0.98",
    "size_2sigma_coverage": "0.90-0.98",
    "cpu_s_per_pattern": "<= 0.2",
}


def fitted_sets(sets: list[str], n: int, seed: int) -> dict:
    """The scores of each named set with the analysis this Python imports."""
    report: dict = {}
    if "simulator" in sets:
        report["simulator"] = score(simulator_set(n, seed))
    if "independent" in sets:
        report["independent"] = score(independent_set(n, seed))
    if "real" in sets:
        report["real"] = real_rows()
    return report


def before_sets(commit: str, sets: list[str], n: int, seed: int) -> dict:
    """The same scores with the analysis of ``commit`` (this script, that tree's packages)."""
    args = ["--n", str(n), "--seed", str(seed), "--sets", ",".join(sets), "--before", ""]
    return results_at(commit, __file__, args)


def print_table(after: dict, before: dict) -> None:
    """Each set's figures, before and after, with the goal where the issue sets one."""
    for name in ("simulator", "independent"):
        if name not in after:
            continue
        print(f"\n{name} (n={after[name]['n']})")
        print(f"{'figure':<30} {'goal':>10} {'before':>10} {'after':>10}")
        for key, value in after[name].items():
            if key == "n":
                continue
            old = before.get(name, {}).get(key, "")
            print(f"{key:<30} {GOALS.get(key, ''):>10} {_cell(old):>10} {_cell(value):>10}")


def _cell(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--seed", type=int, default=20250)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--sets", default="simulator,independent,real")
    parser.add_argument("--before", default=BEFORE, help="commit to compare against ('' for none)")
    args = parser.parse_args()
    sets = args.sets.split(",")
    report = fitted_sets(sets, args.n, args.seed)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    if not args.before:
        return
    before = before_sets(args.before, [s for s in sets if s != "real"], args.n, args.seed)
    print(f"before: {args.before}; after: the working tree")
    print_table(report, before)
    for row in report.get("real", []):
        print(json.dumps(row))


if __name__ == "__main__":
    main()
