"""How accurate is the XRD analysis? Scored on simulated truth and on real measured patterns.

1. Simulated (the TiO2 system's phases and amorphous hump): a held-apart test set of
   domain-randomised mixtures (seed 20250 and up; the CNN trains on seed 0), every present
   component at >= 5 wt%. Phase-ID accuracy (the whole set of present components right),
   micro F1 over components, weight-fraction MAE, crystallite-size relative error, for the
   physics-based whole-pattern fit (:mod:`sdl.analysis.xrd.whole_pattern`), the generic library fit
   (:mod:`sdl.analysis.xrd.quantify`, crystalline phases only) and the CNN
   (:mod:`sdl.analysis.xrd.classifier`, trained by :mod:`sdl.training.xrd_classifier`) side
   by side; plus Scherrer/Williamson-Hall sizes from single-phase patterns
   (:mod:`sdl.analysis.xrd.peaks`).
2. Real: the precursor mixtures of the dara dataset (``../shared/data/xrd_real_dara``;
   Aeris, Cu K-alpha; from jrneilson/dara, MIT licence), fitted against a library of every
   precursor whose structure we can build offline; which phases are found versus the known
   composition.
3. Throughput on this 2-core machine (torch with one thread): patterns per second, batch
   and streaming.

    python benchmarks/xrd_scores.py [--n-test 300] [--retrain]

Prints one table and writes ``benchmarks/results/xrd_scores.{json,txt}``. The CNN is trained
exactly as ``python -m sdl.training.xrd_classifier --out benchmarks/results/xrd_cnn.pt`` does
(seed 0, thresholds on seed 1) unless that file exists.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import time
from pathlib import Path

import numpy as np
from pymatgen.core import Lattice, Structure

from physics.phases import TIO2_POLYMORPHS
from physics.structures import get_structure

ROOT = Path(__file__).resolve().parent.parent
REAL_DIR = ROOT.parent / "shared" / "data" / "xrd_real_dara"
RESULTS = Path(__file__).resolve().parent / "results"
CNN_PATH = RESULTS / "xrd_cnn.pt"

#: Precursor structures built from published cells and Wyckoff sites (room temperature).
#: NiO: Fm-3m, a = 4.1771 (rock salt). ZnO: P6_3mc, Kihara & Donnay, Can. Mineral. 23 (1985)
#: 647. In2O3: Ia-3, Marezio, Acta Cryst. 20 (1966) 723. ZrO2 (baddeleyite): P2_1/c,
#: Howard, Hill & Reichert, Acta Cryst. B 44 (1988) 116. MnCO3 (rhodochrosite): R-3c,
#: Effenberger et al., Z. Kristallogr. 156 (1981) 233. Li2CO3 (zabuyelite): C2/c, Idemoto et
#: al., Powder Diffr. 13 (1998) 187. TiO2 anatase and rutile: physics.structures.
_REAL_STRUCTURES: dict[str, tuple[str, Lattice, list[str], list[list[float]]]] = {
    "NiO": ("Fm-3m", Lattice.cubic(4.1771), ["Ni", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
    "ZnO": (
        "P6_3mc",
        Lattice.hexagonal(3.2498, 5.2066),
        ["Zn", "O"],
        [[1 / 3, 2 / 3, 0.0], [1 / 3, 2 / 3, 0.3820]],
    ),
    "In2O3": (
        "Ia-3",
        Lattice.cubic(10.117),
        ["In", "In", "O"],
        [[0.25, 0.25, 0.25], [0.4668, 0.0, 0.25], [0.3905, 0.1529, 0.3832]],
    ),
    "ZrO2": (
        "P2_1/c",
        Lattice.monoclinic(5.1505, 5.2116, 5.3173, 99.23),
        ["Zr", "O", "O"],
        [[0.2754, 0.0395, 0.2083], [0.0700, 0.3317, 0.3447], [0.4496, 0.7569, 0.4792]],
    ),
    "MnCO3": (
        "R-3c",
        Lattice.hexagonal(4.7682, 15.6354),
        ["Mn", "C", "O"],
        [[0, 0, 0], [0, 0, 0.25], [0.2723, 0, 0.25]],
    ),
    "Li2CO3": (
        "C2/c",
        Lattice.monoclinic(8.359, 4.973, 6.197, 114.83),
        ["Li", "C", "O", "O"],
        [[0.1965, 0.4483, 0.8343], [0, 0.0657, 0.25], [0, 0.3225, 0.25], [0.1464, -0.0632, 0.3136]],
    ),
}

#: Precursors named in the dataset whose structures we cannot obtain offline (pymatgen ships
#: no structure database and we do not trust our memory of their atomic coordinates).
_NOT_AVAILABLE = ("Bi2O3", "V2O5", "La(OH)3")

#: Which library phases count as finding a precursor (TiO2 powders are anatase, rutile or
#: both).
_PRECURSOR_PHASES = {"TiO2": ("anatase", "rutile")}


def real_structures() -> dict[str, Structure]:
    """The reference structures of the real-data library, by phase name."""
    structures = {
        name: Structure.from_spacegroup(*definition)
        for name, definition in _REAL_STRUCTURES.items()
    }
    structures["anatase"] = get_structure("anatase")
    structures["rutile"] = get_structure("rutile")
    return structures


def real_library():
    """The phase library for the real patterns and the precursors it cannot include."""
    from sdl.analysis.xrd.reference import library_from_structures

    return library_from_structures(real_structures()), _NOT_AVAILABLE


def read_real_pattern(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """2-theta (deg) and counts of one dara CSV."""
    data = np.loadtxt(path, delimiter=",", skiprows=1)
    return data[:, 0], data[:, 1]


def parse_mixture_name(name: str) -> dict[str, float]:
    """Precursor -> weight fraction from a file name like ``TiO2_0p4009-ZnO_0p6010--8min``."""
    mixture = name.split("--")[0]
    parts = re.findall(r"([A-Za-z0-9()]+)_(\d+p\d+)", mixture)
    return {formula: float(weight.replace("p", ".")) for formula, weight in parts}


def rebin(two_theta_deg: np.ndarray, counts: np.ndarray, factor: int):
    """Sum ``factor`` adjacent steps (counts stay Poisson; 2-theta is the bin mean)."""
    n = two_theta_deg.size // factor * factor
    return (
        two_theta_deg[:n].reshape(-1, factor).mean(axis=1),
        counts[:n].reshape(-1, factor).sum(axis=1),
    )


def score_real(max_patterns: int | None = None) -> list[dict]:
    """Fit every precursor-mixture pattern against the real-data library."""
    from sdl.analysis.xrd.quantify import quantify_phases

    library, missing = real_library()
    with open(REAL_DIR / "index.csv", newline="") as handle:
        names = [
            row["name"] for row in csv.DictReader(handle) if row["subset"] == "precursor_mixture"
        ]
    rows = []
    for name in names[:max_patterns]:
        two_theta, counts = read_real_pattern(REAL_DIR / "precursor_mixture" / f"{name}.csv")
        if name.endswith("8min"):
            # 0.011 deg steps -> 0.043 deg, the fast scan's step; lines are ~0.1 deg wide.
            two_theta, counts = rebin(two_theta, counts, 4)
        keep = two_theta <= 80.0
        started = time.perf_counter()
        fit = quantify_phases(two_theta[keep], counts[keep], library, max_lattice_strain=0.006)
        seconds = time.perf_counter() - started
        known = parse_mixture_name(name)
        found = {p: w for p, w in fit.weight_fractions.items() if p in fit.present}
        matched, weights = [], {}
        for precursor in known:
            candidates = _PRECURSOR_PHASES.get(precursor, (precursor,))
            hit = [p for p in candidates if p in found]
            if hit:
                matched.append(precursor)
                weights[precursor] = sum(found[p] for p in hit)
        expected = [p for p in known if p not in missing]
        accounted = {p for p in found if any(p in _PRECURSOR_PHASES.get(k, (k,)) for k in known)}
        # Known weights renormalised over the precursors we could look for.
        total_known = sum(known[p] for p in expected)
        errors = [abs(weights.get(p, 0.0) - known[p] / total_known) for p in expected]
        rows.append(
            {
                "name": name,
                "known": known,
                "not_in_library": [p for p in known if p in missing],
                "found": {p: round(w, 3) for p, w in found.items()},
                "found_std": {p: round(fit.weight_fractions_std[p], 3) for p in found},
                "all_expected_found": all(p in matched for p in expected),
                "false_phases": sorted(set(found) - accounted),
                "fraction_mae": float(np.mean(errors)) if errors else math.nan,
                "rwp": fit.rwp,
                "seconds": seconds,
            }
        )
    return rows


#: Present means at least this weight fraction, for fits (half the test set's minimum).
PRESENCE_THRESHOLD = 0.025


def phase_id_scores(true_present: np.ndarray, predicted_present: np.ndarray) -> dict:
    """Exact-set accuracy and micro-averaged F1 of presence calls (patterns x components)."""
    tp = np.sum(true_present & predicted_present)
    fp = np.sum(~true_present & predicted_present)
    fn = np.sum(true_present & ~predicted_present)
    return {
        "accuracy": float(np.mean(np.all(true_present == predicted_present, axis=1))),
        "f1": float(2 * tp / max(2 * tp + fp + fn, 1)),
    }


def size_errors(true_sizes: np.ndarray, fitted_sizes: np.ndarray) -> np.ndarray:
    """Relative errors of the sizes of components present in truth and in the fit."""
    both = np.isfinite(true_sizes) & np.isfinite(fitted_sizes)
    return np.abs(fitted_sizes[both] - true_sizes[both]) / true_sizes[both]


def score_simulated(classifier, n_test: int, seed: int) -> dict:
    from sdl.analysis.xrd.whole_pattern import analyse_pattern
    from sdl.training.xrd_classifier import simulate_patterns

    test = simulate_patterns(n_test, np.random.default_rng(seed))
    true_present = test.fractions > 0
    results: dict[str, dict] = {}

    started = time.perf_counter()
    prediction = classifier.predict(test.two_theta_deg, test.counts)
    cnn_seconds = time.perf_counter() - started
    results["cnn"] = {
        **phase_id_scores(true_present, prediction.present),
        "fraction_mae": float(np.mean(np.abs(prediction.fractions - test.fractions))),
        "size_rel_error_median": math.nan,
        "patterns_per_s_batch": n_test / cnn_seconds,
    }

    fractions = np.zeros_like(test.fractions)
    sizes = np.full_like(test.crystallite_size_nm, np.nan)
    started = time.perf_counter()
    for index, counts in enumerate(test.counts):
        fit = analyse_pattern(test.two_theta_deg, counts, test.components[1:])
        fractions[index] = [fit.phase_fractions[c] for c in test.components]
        sizes[index, 1:] = [fit.crystallite_size_nm[c] for c in test.components[1:]]
    fit_seconds = time.perf_counter() - started
    errors = size_errors(test.crystallite_size_nm, sizes)
    results["whole_pattern_fit"] = {
        **phase_id_scores(true_present, fractions >= PRESENCE_THRESHOLD),
        "fraction_mae": float(np.mean(np.abs(fractions - test.fractions))),
        "size_rel_error_median": float(np.median(errors)),
        "size_rel_error_mean": float(np.mean(errors)),
        "patterns_per_s_batch": n_test / fit_seconds,
    }
    return {"n_test": n_test, "seed": seed, "components": list(test.components), "methods": results}


def score_line_breadths(n: int, seed: int) -> dict:
    """Scherrer and Williamson-Hall sizes and microstrain on single-phase patterns."""
    from sdl.analysis.xrd.background import estimate_background
    from sdl.analysis.xrd.peaks import phase_size_strain
    from sdl.analysis.xrd.reference import library_from_structures
    from simulators.sample import SampleState
    from simulators.xrd import PowderDiffractometer

    rng = np.random.default_rng(seed)
    phases = TIO2_POLYMORPHS
    library = library_from_structures({p: get_structure(p) for p in phases})
    instrument = PowderDiffractometer()
    scherrer, wh, strain_error, within_2_sigma = [], [], [], []
    for _ in range(n):
        phase = phases[rng.integers(3)]
        size_nm = float(np.exp(rng.uniform(np.log(5.0), np.log(100.0))))
        microstrain = float(rng.uniform(0.0, 2e-3))
        sample = SampleState("s", {}, {phase: 1.0}, {phase: size_nm}, {phase: microstrain})
        counts = instrument.measure(sample, rng)
        x = instrument.two_theta_deg
        result = phase_size_strain(x, counts, estimate_background(x, counts), library[phase])
        if result is None:
            continue
        scherrer.append(abs(result.scherrer_size_nm - size_nm) / size_nm)
        within_2_sigma.append(
            abs(result.scherrer_size_nm - size_nm) <= 2 * result.scherrer_size_nm_std
        )
        if np.isfinite(result.williamson_hall_size_nm):
            wh.append(abs(result.williamson_hall_size_nm - size_nm) / size_nm)
        if np.isfinite(result.microstrain):
            strain_error.append(abs(result.microstrain - microstrain))
    return {
        "n": n,
        "n_fitted": len(scherrer),
        "scherrer_rel_error_median": float(np.median(scherrer)),
        "scherrer_within_2_sigma": float(np.mean(within_2_sigma)),
        "williamson_hall_rel_error_median": float(np.median(wh)) if wh else math.nan,
        "williamson_hall_n": len(wh),
        "microstrain_mae": float(np.mean(strain_error)) if strain_error else math.nan,
    }


def streaming_rate(analysis, n: int, seed: int) -> float:
    """Patterns per second through :class:`XRDStreamAnalysis`, one event per pattern."""
    from event_model import compose_run

    from sdl.analysis.xrd.stream import XRDStreamAnalysis
    from sdl.training.xrd_classifier import simulate_patterns

    patterns = simulate_patterns(n, np.random.default_rng(seed))
    emitted: list[str] = []
    callback = XRDStreamAnalysis(analysis, emit=lambda name, doc: emitted.append(name))
    bundle = compose_run(metadata={"purpose": "experiment"})
    keys = {
        k: {"source": "sim", "dtype": "array", "shape": [patterns.counts.shape[1]]}
        for k in ("xrd_two_theta", "xrd_counts")
    }
    descriptor = bundle.compose_descriptor(name="primary", data_keys=keys)
    documents = [("start", bundle.start_doc), ("descriptor", descriptor.descriptor_doc)]
    for counts in patterns.counts:
        data = {"xrd_two_theta": patterns.two_theta_deg, "xrd_counts": counts}
        documents.append(
            (
                "event",
                descriptor.compose_event(
                    data=data, timestamps=dict.fromkeys(data, time.time()), validate=False
                ),
            )
        )
    documents.append(("stop", bundle.compose_stop()))
    started = time.perf_counter()
    for name, doc in documents:
        callback(name, doc)
    seconds = time.perf_counter() - started
    if len(callback.results) != n or emitted.count("event") != n:
        raise RuntimeError("the streaming callback did not analyse every pattern")
    return n / seconds


def load_or_train(retrain: bool, epochs: int, patterns: int):
    from sdl.analysis.xrd.classifier import XRDClassifier
    from sdl.training.xrd_classifier import calibrate_thresholds, train_classifier

    if CNN_PATH.exists() and not retrain:
        return XRDClassifier.load(CNN_PATH), None
    started = time.perf_counter()
    classifier = calibrate_thresholds(train_classifier(patterns, epochs, seed=0), seed=1)
    seconds = time.perf_counter() - started
    RESULTS.mkdir(parents=True, exist_ok=True)
    classifier.save(CNN_PATH)
    return classifier, seconds


def table(report: dict) -> str:
    sim = report["simulated"]["methods"]
    lines = [
        f"XRD analysis scores (simulated test set: {report['simulated']['n_test']} patterns, "
        f"seed {report['simulated']['seed']}, components "
        f"{', '.join(report['simulated']['components'])}, each present >= 5 wt%)",
        "",
        f"{'method':<28}{'phase-ID acc':>13}{'F1':>7}{'wt-frac MAE':>13}"
        f"{'size rel.err':>14}{'patterns/s':>12}",
    ]
    for label, key in (
        ("whole-pattern fit (physics)", "whole_pattern_fit"),
        ("1D CNN (learned)", "cnn"),
    ):
        m = sim[key]
        size = m["size_rel_error_median"]
        lines.append(
            f"{label:<28}{m['accuracy']:>13.3f}{m['f1']:>7.3f}{m['fraction_mae']:>13.3f}"
            f"{'n/a' if math.isnan(size) else f'{size:.3f}':>14}"
            f"{m['patterns_per_s_batch']:>12.1f}"
        )
    lb = report["line_breadths"]
    lines += [
        "",
        f"Line-breadth analysis, {lb['n']} single-phase patterns (5-100 nm, strain 0-2e-3), "
        f"{lb['n_fitted']} with fitted lines:",
        f"  Scherrer size median rel. error {lb['scherrer_rel_error_median']:.3f} "
        f"(truth within 2 sigma: {lb['scherrer_within_2_sigma']:.2f}); Williamson-Hall "
        f"{lb['williamson_hall_rel_error_median']:.3f} ({lb['williamson_hall_n']} patterns "
        f"with >= 3 lines); WH microstrain MAE {lb['microstrain_mae']:.1e} (same patterns)",
        "",
        f"Throughput, 2-core machine, load average {report['load_average']:.1f} "
        "(patterns/s): " + ", ".join(f"{k} {v:.1f}" for k, v in report["throughput"].items()),
        "",
        "Real patterns (dara precursor mixtures, Aeris Cu K-alpha; library: "
        + ", ".join(report["real_library"])
        + "; no structure offline for "
        + ", ".join(report["real_not_available"])
        + ")",
        f"{'pattern':<50}{'known (wt)':<36}{'found (wt)':<44}{'ok':>4}{'MAE':>7}",
    ]
    for row in report["real"]:
        known = " ".join(
            f"{p}{'*' if p in row['not_in_library'] else ''} {w:.2f}"
            for p, w in row["known"].items()
        )
        found = " ".join(f"{p} {w:.2f}" for p, w in row["found"].items())
        mae = row["fraction_mae"]
        lines.append(
            f"{row['name']:<50}{known:<36}{found:<44}"
            f"{'yes' if row['all_expected_found'] and not row['false_phases'] else 'no':>4}"
            f"{'' if math.isnan(mae) else f'{mae:.3f}':>7}"
        )
    summary = report["real_summary"]
    lines += [
        "  (* = not in the library; ok = every library-covered precursor found and no phase "
        "outside the mixture; MAE over covered precursors, known weights renormalised)",
        f"  all covered precursors found: {summary['all_found']}/{summary['n']}; patterns "
        f"with a false phase: {summary['with_false_phase']}/{summary['n']} "
        f"({summary['with_false_phase_fully_covered']}/{summary['n_fully_covered']} of those "
        "whose precursors are all in the library); weight-fraction MAE on fully covered: "
        f"{summary['fraction_mae_fully_covered']:.3f}",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-test", type=int, default=300)
    parser.add_argument("--seed", type=int, default=20250)
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--train-patterns", type=int, default=10000)
    parser.add_argument(
        "--real-patterns",
        type=int,
        default=None,
        help="only the first N real patterns (default: all 40)",
    )
    args = parser.parse_args()
    import torch

    # One intra-op thread: on 2 shared cores a second torch thread spin-waits and is ~30x
    # slower; training (if it happens) sets its own thread count.
    torch.set_num_threads(1)
    from sdl.analysis.xrd.stream import classifier_analysis, whole_pattern_analysis

    classifier, train_seconds = load_or_train(args.retrain, args.epochs, args.train_patterns)
    report: dict = {
        "cnn_weights": str(CNN_PATH.relative_to(ROOT)),
        "cnn_train_seconds": train_seconds,
    }
    report["load_average"] = os.getloadavg()[0]
    report["simulated"] = score_simulated(classifier, args.n_test, args.seed)
    report["line_breadths"] = score_line_breadths(60, args.seed + 1)
    report["throughput"] = {
        "CNN batch": report["simulated"]["methods"]["cnn"]["patterns_per_s_batch"],
        "CNN streaming": streaming_rate(classifier_analysis(classifier), 300, args.seed + 2),
        "whole-pattern fit batch": report["simulated"]["methods"]["whole_pattern_fit"][
            "patterns_per_s_batch"
        ],
        "whole-pattern fit streaming": streaming_rate(whole_pattern_analysis(), 20, args.seed + 3),
    }
    library, missing = real_library()
    report["real_library"] = list(library)
    report["real_not_available"] = list(missing)
    rows = score_real(args.real_patterns)
    report["real"] = rows
    covered = [r for r in rows if not r["not_in_library"]]
    report["real_summary"] = {
        "n": len(rows),
        "all_found": sum(r["all_expected_found"] for r in rows),
        "with_false_phase": sum(bool(r["false_phases"]) for r in rows),
        "n_fully_covered": len(covered),
        "with_false_phase_fully_covered": sum(bool(r["false_phases"]) for r in covered),
        "fraction_mae_fully_covered": float(np.mean([r["fraction_mae"] for r in covered]))
        if covered
        else math.nan,
        "seconds_per_pattern": float(np.mean([r["seconds"] for r in rows])),
    }
    text = table(report)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "xrd_scores.json").write_text(json.dumps(report, indent=1, default=float))
    (RESULTS / "xrd_scores.txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
