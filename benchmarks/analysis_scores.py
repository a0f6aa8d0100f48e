"""How far to trust the analysis: one table over XRD, microscopy and phase mapping.

Runs the three scoring benchmarks (``xrd_scores.py``, ``microscopy_scores.py``,
``cameo_phase_mapping.py``; each trains its learned model with the project's own training
code when no cached weights are in benchmarks/results/) unless their results are already
there, then prints their headline figures side by side with the targets of issue 3.

    python benchmarks/analysis_scores.py            # reuse results where present
    python benchmarks/analysis_scores.py --rerun    # run all three again
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
RESULTS = HERE / "results"
SCRIPTS = {
    "xrd_scores": [],
    "microscopy_scores": ["--model", str(RESULTS / "unet.pt")],
    "cameo_phase_mapping": [],
}


def results(name: str, rerun: bool) -> object:
    path = RESULTS / f"{name}.json"
    if rerun or not path.exists():
        if name == "microscopy_scores" and not (RESULTS / "unet.pt").exists():
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "sdl.training.unet",
                    "--out",
                    str(RESULTS / "unet.pt"),
                ],
                check=True,
            )
        subprocess.run([sys.executable, str(HERE / f"{name}.py"), *SCRIPTS[name]], check=True)
    return json.loads(path.read_text())


def rows(xrd: dict, micro: dict, cameo: list) -> list[tuple[str, str, str, float, str]]:
    simulated = xrd["simulated"]["methods"]
    table = []
    for method, label in (("whole_pattern_fit", "whole-pattern fit"), ("cnn", "1D CNN")):
        scores = simulated[method]
        table += [
            ("XRD phase ID, simulated test set", label, "accuracy", scores["accuracy"], ">= 0.95"),
            ("XRD phase ID, simulated test set", label, "F1", scores["f1"], ""),
            ("XRD weight fractions, simulated", label, "MAE", scores["fraction_mae"], ""),
        ]
    breadth = xrd["line_breadths"]
    table += [
        (
            "XRD crystallite size, simulated",
            "Scherrer",
            "median rel. error",
            breadth["scherrer_rel_error_median"],
            "",
        ),
        (
            "XRD crystallite size, simulated",
            "Williamson-Hall",
            "median rel. error",
            breadth["williamson_hall_rel_error_median"],
            "",
        ),
    ]
    real = xrd["real_summary"]
    table += [
        (
            "XRD real mixtures (dara), 40 scans",
            "whole-pattern fit",
            "all known phases found",
            real["all_found"] / real["n"],
            "",
        ),
        (
            "XRD real mixtures (dara), 40 scans",
            "whole-pattern fit",
            "scans with a false phase",
            real["with_false_phase"] / real["n"],
            "",
        ),
        (
            "XRD real mixtures, library complete",
            "whole-pattern fit",
            "weight MAE",
            real["fraction_mae_fully_covered"],
            "",
        ),
    ]
    for method in ("classical", "unet"):
        scores = micro["scores"][f"campaign/{method}"]
        table += [
            (
                "micrograph segmentation, simulated test",
                method,
                "pixel accuracy",
                scores["grain_pixel_accuracy"],
                ">= 0.95",
            ),
            ("micrograph segmentation, simulated test", method, "IoU", scores["grain_iou"], ""),
            ("grain size (ECD), simulated test", method, "rel. error", scores["ecd_rel_error"], ""),
        ]
    for row in cameo:
        table.append(
            (
                f"phase mapping, {row['data']}",
                "constrained clustering",
                "adjusted Rand index",
                row["ari"],
                "",
            )
        )
    for name, value in xrd["throughput"].items():
        table.append(("throughput, patterns/s", name, "per second", value, "hundreds"))
    for name, value in micro["throughput_fps"].items():
        table.append(("throughput, 512x512 micrographs/s", name, "per second", value, ""))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rerun", action="store_true", help="run all three benchmarks again")
    args = parser.parse_args()
    table = rows(
        results("xrd_scores", args.rerun),
        results("microscopy_scores", args.rerun),
        results("cameo_phase_mapping", args.rerun),
    )
    widths = [max(len(str(row[i])) for row in table) for i in (0, 1, 2)]
    print(
        f"{'task':<{widths[0]}}  {'method':<{widths[1]}}  {'metric':<{widths[2]}}  "
        f"{'value':>8}  target"
    )
    for task, method, metric, value, target in table:
        print(
            f"{task:<{widths[0]}}  {method:<{widths[1]}}  {metric:<{widths[2]}}  "
            f"{value:8.3f}  {target}"
        )


if __name__ == "__main__":
    main()
