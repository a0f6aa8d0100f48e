"""What a scientist looks at after a campaign: a short text summary and a one-page PNG."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from skimage.segmentation import find_boundaries  # noqa: E402

from sdl.analysis.microscopy import analyse_micrograph  # noqa: E402
from sdl.analysis.pipeline import measurements_from_data, read_primary  # noqa: E402
from sdl.analysis.xrd import analyse_pattern  # noqa: E402
from sdl.orchestrator import CampaignResult  # noqa: E402
from sdl.systems import get_system  # noqa: E402


def summary_text(result: CampaignResult) -> str:
    """Best conditions, best value, number of experiments and instrument time, as text."""
    config = result.config
    failed = sum(record.failed for record in result.records)
    lines = [
        f"campaign {config.name}: {len(result.records)} experiments "
        f"({failed} failed, {result.refused} proposals refused) with agent {config.agent.name}",
        f"instrument time: {result.instrument_hours:.1f} h"
        + (" (simulated)" if config.devices.backend == "sim" else ""),
    ]
    if result.faults:
        actions = Counter(fault.action for fault in result.faults)
        lines.append(f"faults: {len(result.faults)} ("
                     + ", ".join(f"{n} {action}" for action, n in sorted(actions.items())) + ")")
    best = result.best
    if best is None:
        lines.append("no experiment produced the objective")
        return "\n".join(lines)
    value = best.features[result.objective]
    std = best.features.get(f"{result.objective}_std", float("nan"))
    lines.append(
        f"best {result.objective} ({config.objectives[0].direction}): {value:.4g} ± {std:.2g} "
        f"at experiment {best.iteration + 1} (run {best.raw_uid[:8]})"
    )
    units = {name: p.unit for name, p in config.search_space.items()}
    for name, value in best.conditions.items():
        lines.append(f"  {name} = {value:.4g} {units.get(name, '')}".rstrip())
    return "\n".join(lines)


def _convergence(ax: Any, result: CampaignResult) -> None:
    values = result.objective_values()
    experiments = np.arange(1, len(values) + 1)
    finite = np.where(np.isfinite(values), values, np.nan)
    best_so_far = (np.fmax if result.maximize else np.fmin).accumulate(finite)
    stds = np.array([r.features.get(f"{result.objective}_std", np.nan) for r in result.records])
    ax.errorbar(experiments, values, yerr=stds, fmt="o", ms=4, alpha=0.7, label="measured")
    ax.step(experiments, best_so_far, where="post", color="k", label="best so far")
    ax.set_xlabel("experiment")
    ax.set_ylabel(result.objective)
    ax.set_title(f"objective vs experiment ({result.config.agent.name})")
    ax.legend(loc="best", fontsize=8)


def _explored_conditions(ax: Any, result: CampaignResult) -> None:
    """Parallel coordinates of the searched conditions, coloured by the objective."""
    space = result.config.search_space
    names = list(space)
    values = result.objective_values()
    finite = np.isfinite(values)
    colours = plt.get_cmap("viridis")
    low, high = (np.nanmin(values), np.nanmax(values)) if finite.any() else (0.0, 1.0)
    span = high - low or 1.0
    x = np.arange(len(names))
    order = np.argsort(np.where(finite, values, -np.inf) * (1 if result.maximize else -1))
    for index in order:
        record = result.records[index]
        scaled = [
            (record.conditions[n] - space[n].low) / (space[n].high - space[n].low) for n in names
        ]
        colour = colours((values[index] - low) / span) if finite[index] else "lightgrey"
        ax.plot(x, scaled, color=colour, alpha=0.8, lw=1)
    ax.set_xticks(x, [f"{n}\n[{space[n].low:g}, {space[n].high:g}] {space[n].unit}" for n in names],
                  fontsize=7)
    ax.set_ylabel("position in range")
    ax.set_title("explored conditions (colour: objective)")
    mappable = plt.cm.ScalarMappable(cmap=colours, norm=plt.Normalize(low, high))
    plt.colorbar(mappable, ax=ax, label=result.objective)


def _best_measurements(axes: Any, result: CampaignResult, client: Any) -> None:
    best = result.best
    pattern_ax, image_ax = axes
    if best is None:
        pattern_ax.set_axis_off()
        image_ax.set_axis_off()
        return
    measurements = measurements_from_data(read_primary(client[best.raw_uid]))
    if measurements.counts is not None:
        phases = get_system(result.config.devices.system).phases
        fit = analyse_pattern(measurements.two_theta_deg, measurements.counts, phases)
        pattern_ax.plot(measurements.two_theta_deg, measurements.counts, lw=0.8, label="measured")
        pattern_ax.plot(measurements.two_theta_deg, fit.fitted_pattern, lw=0.8, label="fit")
        label = ", ".join(f"{p} {w:.2f}" for p, w in fit.phase_fractions.items() if w > 0.01)
        pattern_ax.set_title(f"best sample XRD: {label}", fontsize=9)
        pattern_ax.set_xlabel("2θ (deg, Cu Kα)")
        pattern_ax.set_ylabel("counts")
        pattern_ax.legend(fontsize=8)
    else:
        pattern_ax.set_axis_off()
    if measurements.image is not None:
        grains = analyse_micrograph(measurements.image, measurements.pixel_size_nm)
        image_ax.imshow(measurements.image, cmap="gray")
        image_ax.contour(find_boundaries(grains.labels), levels=[0.5], colors="r", linewidths=0.4)
        field_nm = measurements.image.shape[1] * measurements.pixel_size_nm
        image_ax.set_title(f"best sample micrograph: mean grain {grains.grain_size_nm:.0f} nm "
                           f"(field {field_nm:.0f} nm)", fontsize=9)
        image_ax.set_axis_off()
    else:
        image_ax.set_axis_off()


def plot_report(result: CampaignResult, client: Any, path: Path | str) -> Path:
    """One PNG: convergence, explored conditions, the best sample's pattern and micrograph."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    _convergence(axes[0, 0], result)
    _explored_conditions(axes[0, 1], result)
    _best_measurements(axes[1], result, client)
    fig.suptitle(f"campaign {result.config.name}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
