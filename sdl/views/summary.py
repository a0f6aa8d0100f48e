"""What a scientist looks at after a campaign: a short text summary and a one-page PNG."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from skimage.segmentation import find_boundaries  # noqa: E402

from sdl.analysis.microscopy.segmentation import analyse_micrograph  # noqa: E402
from sdl.analysis.pipeline import fit_pattern, measurements_from_data, read_primary  # noqa: E402
from sdl.analysis.xrd.calibration import calibration_at  # noqa: E402
from sdl.campaign.results import (  # noqa: E402
    CampaignResult,
    ExperimentRecord,
    dominated_outline,
    front_hypervolume,
)
from sdl.campaign.systems import get_system  # noqa: E402


def _makespan(result: CampaignResult) -> str:
    """ ", over N stations: X h for the busiest" when several stations shared the work."""
    stations = {record.station for record in result.records}
    if len(stations) < 2:
        return ""
    return f", over {len(stations)} stations: {result.makespan_hours:.1f} h for the busiest"


def summary_text(result: CampaignResult) -> str:
    """Best conditions, best value, number of experiments and instrument time, as text.

    With several objectives, the Pareto set (values and conditions) and its hypervolume
    take the place of the best experiment.
    """
    config = result.config
    failed = sum(record.failed for record in result.records)
    lines = [
        f"campaign {config.name}: {len(result.records)} experiments "
        f"({failed} failed, {result.refused} proposals refused) with agent {config.agent.name}",
        f"instrument time: {result.instrument_hours:.1f} h"
        + (" (simulated)" if config.devices.backend == "sim" else "")
        + _makespan(result),
    ]
    if result.faults:
        actions = Counter(fault.action for fault in result.faults)
        lines.append(
            f"faults: {len(result.faults)} ("
            + ", ".join(f"{n} {action}" for action, n in sorted(actions.items()))
            + ")"
        )
    if len(config.objectives) > 1:
        return "\n".join(lines + _pareto_lines(result))
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


def _value(record: ExperimentRecord, name: str) -> str:
    std = record.features.get(f"{name}_std", float("nan"))
    return f"{name} = {record.features[name]:.4g}" + (f" ± {std:.2g}" if np.isfinite(std) else "")


def _pareto_order(result: CampaignResult) -> list[ExperimentRecord]:
    """The Pareto set, best in the first objective first."""
    sign = -1.0 if result.maximize else 1.0
    return sorted(result.pareto, key=lambda r: sign * r.features[result.objective])


def _pareto_lines(result: CampaignResult) -> list[str]:
    """The Pareto set and its hypervolume, one experiment a line with its conditions."""
    config = result.config
    directions = ", ".join(f"{o.name} ({o.direction})" for o in config.objectives)
    pareto = _pareto_order(result)
    if not pareto:
        return [f"no experiment produced every objective: {directions}"]
    reference = result.reference_point or {}
    how = "inferred from the front" if config.reference_point is None else "given"
    lines = [
        f"Pareto front of {directions}: {len(pareto)} non-dominated of "
        f"{int(result.feasible().sum())} feasible experiments",
        f"hypervolume {result.hypervolume():.4g} above reference point "
        + ", ".join(f"{name} = {value:.4g}" for name, value in reference.items())
        + f" ({how})",
    ]
    units = {name: p.unit for name, p in config.search_space.items()}
    for record in pareto:
        lines.append(
            f"  experiment {record.iteration + 1} (run {record.raw_uid[:8]}): "
            + ", ".join(_value(record, name) for name in result.objective_names)
        )
        lines.append(
            "    "
            + ", ".join(
                f"{name} = {value:.4g} {units.get(name, '')}".rstrip()
                for name, value in record.conditions.items()
            )
        )
    return lines


def _pareto_scatter(ax: Any, result: CampaignResult) -> None:
    """The first two objectives of every experiment, the Pareto set highlighted."""
    names = result.objective_names[:2]
    values = result.objective_matrix()[:, :2]
    feasible = result.feasible()
    on_front = result.pareto_mask()
    signs = np.where(result.maximizes[:2], 1.0, -1.0)
    measured = np.isfinite(values).all(axis=1)
    others = measured & feasible & ~on_front
    ax.scatter(*values[others].T, s=18, color="tab:blue", alpha=0.6, label="measured")
    broken = measured & ~feasible
    if broken.any():
        ax.scatter(
            *values[broken].T, s=22, marker="x", color="grey", label="breaks an outcome constraint"
        )
    reference = result.reference_point
    if reference is not None and len(result.objective_names) == 2:
        outline = dominated_outline(
            values[on_front], result.maximizes, [reference[n] for n in names]
        )
        ax.fill(
            *outline.T,
            color="tab:red",
            alpha=0.12,
            lw=0,
            label=f"hypervolume {result.hypervolume():.3g}",
        )
        ax.plot(*outline[1:-1].T, color="tab:red", lw=1)
        ax.plot(*outline[0], marker="+", ms=10, color="k", ls="none", label="reference point")
    ax.scatter(
        *values[on_front].T,
        s=40,
        color="tab:red",
        edgecolor="k",
        zorder=3,
        label=f"Pareto set ({int(on_front.sum())})",
    )
    for index in np.flatnonzero(on_front):
        ax.annotate(
            str(result.records[index].iteration + 1),
            values[index],
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )
    arrows = {True: "→ better", False: "← better"}
    ax.set_xlabel(f"{names[0]} ({arrows[bool(signs[0] > 0)]})")
    ax.set_ylabel(f"{names[1]} ({'better ↑' if signs[1] > 0 else 'better ↓'})")
    ax.set_title(
        "Pareto front (numbers: experiment)"
        + (
            ""
            if len(result.objective_names) == 2
            else f", first two of {len(result.objective_names)} objectives"
        )
    )
    ax.legend(loc="best", fontsize=8)


def _hypervolume_progress(ax: Any, result: CampaignResult) -> None:
    """Hypervolume of the front after each experiment, above the final reference point."""
    reference = result.reference_point
    experiments = np.arange(1, len(result.records) + 1)
    values = np.where(result.feasible()[:, None], result.objective_matrix(), np.nan)
    volumes = [
        0.0
        if reference is None
        else front_hypervolume(
            values[:k], result.maximizes, [reference[name] for name in result.objective_names]
        )
        for k in experiments
    ]
    ax.step(experiments, volumes, where="post", color="k")
    ax.set_xlabel("experiment")
    ax.set_ylabel("hypervolume")
    where = (
        ""
        if reference is None
        else ", ".join(f"{name} = {value:.3g}" for name, value in reference.items())
    )
    ax.set_title(
        f"hypervolume of the front ({result.config.agent.name})\nabove {where}", fontsize=9
    )


def _convergence(ax: Any, result: CampaignResult) -> None:
    values = result.objective_values()
    experiments = np.arange(1, len(values) + 1)
    best_so_far = (np.fmax if result.maximize else np.fmin).accumulate(
        result.feasible_objective_values()
    )
    stds = np.array([r.features.get(f"{result.objective}_std", np.nan) for r in result.records])
    ax.errorbar(experiments, values, yerr=stds, fmt="o", ms=4, alpha=0.7, label="measured")
    ax.step(experiments, best_so_far, where="post", color="k", label="best feasible so far")
    ax.set_xlabel("experiment")
    ax.set_ylabel(result.objective)
    ax.set_title(f"objective vs experiment ({result.config.agent.name})")
    ax.legend(loc="best", fontsize=8)


def _explored_conditions(
    ax: Any, result: CampaignResult, highlight: Sequence[ExperimentRecord] = ()
) -> None:
    """Parallel coordinates of the searched conditions, coloured by the objective
    (the first), with ``highlight`` drawn over them in red."""
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
    for record in highlight:
        scaled = [
            (record.conditions[n] - space[n].low) / (space[n].high - space[n].low) for n in names
        ]
        ax.plot(x, scaled, color="tab:red", lw=2, alpha=0.9)
    ax.set_xticks(
        x,
        [f"{n}\n[{space[n].low:g}, {space[n].high:g}] {space[n].unit}" for n in names],
        fontsize=7,
    )
    ax.set_ylabel("position in range")
    ax.set_title(
        "explored conditions (colour: objective" + (", red: Pareto set)" if highlight else ")")
    )
    mappable = plt.cm.ScalarMappable(cmap=colours, norm=plt.Normalize(low, high))
    plt.colorbar(mappable, ax=ax, label=result.objective)


def _best_measurements(
    axes: Any,
    result: CampaignResult,
    client: Any,
    best: ExperimentRecord | None,
    label: str = "best sample",
) -> None:
    pattern_ax, image_ax = axes
    if best is None:
        pattern_ax.set_axis_off()
        image_ax.set_axis_off()
        return
    measurements = measurements_from_data(read_primary(client[best.raw_uid]))
    if measurements.counts is not None:
        two_theta_deg, counts = measurements.pattern()
        phases = get_system(result.config.devices.system).phases
        calibration = calibration_at(result.config.analysis.xrd_instrument)
        own_phases = result.config.analysis.xrd_phase_set()
        fit = fit_pattern(two_theta_deg, counts, own_phases or phases, calibration)
        pattern_ax.plot(two_theta_deg, counts, lw=0.8, label="measured")
        pattern_ax.plot(two_theta_deg, fit.fitted_pattern, lw=0.8, label="fit")
        phases_found = ", ".join(f"{p} {w:.2f}" for p, w in fit.phase_fractions.items() if w > 0.01)
        pattern_ax.set_title(f"{label} XRD: {phases_found}", fontsize=9)
        pattern_ax.set_xlabel("2θ (deg, Cu Kα)")
        pattern_ax.set_ylabel("counts")
        pattern_ax.legend(fontsize=8)
    else:
        pattern_ax.set_axis_off()
    if measurements.image is not None:
        image, pixel_size_nm = measurements.micrograph()
        grains = analyse_micrograph(image, pixel_size_nm)
        image_ax.imshow(image, cmap="gray")
        image_ax.contour(find_boundaries(grains.labels), levels=[0.5], colors="r", linewidths=0.4)
        field_nm = image.shape[1] * pixel_size_nm
        image_ax.set_title(
            f"{label} micrograph: mean grain {grains.grain_size_nm:.0f} nm "
            f"(field {field_nm:.0f} nm)",
            fontsize=9,
        )
        image_ax.set_axis_off()
    else:
        _phase_map(image_ax, result)


def _phase_map(ax: Any, result: CampaignResult) -> None:
    """The samples over the first two searched conditions, marked by their dominant phase
    (XRD fit): the phase map a composition spread is run for."""
    names = list(result.config.search_space)[:2]
    phases = result.config.analysis.phases(get_system(result.config.devices.system).phases)
    measured = [
        r for r in result.records if all(f"{phase}_fraction" in r.features for phase in phases)
    ]
    if len(names) < 2 or not phases or not measured:  # a plug-in's system may have no phases
        ax.set_axis_off()
        return
    dominant = [max(phases, key=lambda phase: r.features[f"{phase}_fraction"]) for r in measured]
    for phase in phases:
        points = [r for r, d in zip(measured, dominant, strict=True) if d == phase]
        if points:
            ax.scatter(
                [r.conditions[names[0]] for r in points],
                [r.conditions[names[1]] for r in points],
                label=phase,
                s=30,
            )
    units = [result.config.search_space[name].unit for name in names]
    ax.set_xlabel(f"{names[0]} ({units[0]})")
    ax.set_ylabel(f"{names[1]} ({units[1]})")
    ax.set_title("phase map: dominant phase of each sample (XRD fit)", fontsize=9)
    ax.legend(fontsize=8)


def plot_report(result: CampaignResult, client: Any, path: Path | str) -> Path:
    """One PNG: convergence, explored conditions, the best sample's pattern and micrograph.

    With several objectives, a first row more: the Pareto front of the first two and the
    hypervolume after each experiment; the sample shown is the Pareto experiment best in
    the first objective, and the Pareto set is drawn in red over the explored conditions.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if len(result.objective_names) > 1:
        fig, axes = plt.subplots(3, 2, figsize=(13, 13.5))
        _pareto_scatter(axes[0, 0], result)
        _hypervolume_progress(axes[0, 1], result)
        pareto = _pareto_order(result)
        _convergence(axes[1, 0], result)
        _explored_conditions(axes[1, 1], result, highlight=pareto)
        shown = pareto[0] if pareto else None
        _best_measurements(
            axes[2], result, client, shown, f"Pareto sample {shown.iteration + 1}" if shown else ""
        )
    else:
        fig, axes = plt.subplots(2, 2, figsize=(13, 9))
        _convergence(axes[0, 0], result)
        _explored_conditions(axes[0, 1], result)
        _best_measurements(axes[1], result, client, result.best)
    fig.suptitle(f"campaign {result.config.name}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
