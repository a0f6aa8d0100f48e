"""Plotly figures of a campaign, shared by the live dashboard and the HTML report.

Each function returns a ``plotly.graph_objects.Figure``; the report embeds it in a static
page, the dashboard sends its JSON to the browser, where plotly.js draws it.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from plotly.colors import sample_colorscale
from skimage.segmentation import find_boundaries

from sdl.analysis.microscopy.segmentation import analyse_micrograph
from sdl.analysis.pipeline import Measurements, fit_pattern
from sdl.analysis.xrd.calibration import InstrumentCalibration
from sdl.analysis.xrd.user_phases import XRDPhases
from sdl.views.campaign_log import CampaignLog

#: Colour of grain boundaries drawn over a micrograph (RGB).
BOUNDARY_RGB = (255, 40, 40)

#: Labelled ticks on the colour bar of the objective, from its lowest to its highest value.
COLORBAR_TICKS = 5

#: Layout shared by every figure: compact margins, readable in a dashboard tile.
_LAYOUT = {
    "margin": {"l": 60, "r": 20, "t": 50, "b": 50},
    "template": "plotly_white",
    "height": 380,
}


#: Name endings that carry a unit, by the project's naming convention, and the unit written.
UNIT_ENDINGS = {
    "_m2_g": "m²/g",
    "_nm": "nm",
    "_mev": "meV",
    "_ev": "eV",
    "_deg": "°",
    "_rpm": "rpm",
    "_c": "°C",
    "_h": "h",
    "_s": "s",
    "_t": "T",
}


def words(name: str, unit: str | None = None) -> str:
    """A feature's or condition's name as people read it: ``photoactive_area_m2_g`` ->
    "photoactive area (m²/g)"; a ``unit`` given (a condition's, from the campaign file)
    replaces the one its name ends with."""
    for ending, written in UNIT_ENDINGS.items():
        if name.endswith(ending) and len(name) > len(ending):
            name, unit = name[: -len(ending)], unit or written
            break
    text = name.replace("_", " ")
    return f"{text} ({unit})" if unit else text


def convergence_figure(log: CampaignLog) -> go.Figure:
    """Objective versus experiment: measured (±1σ), best feasible so far, the agent's
    prediction (±2σ)."""
    objective = log.objective
    measured = log.measured()
    x = [e.iteration + 1 for e in measured]
    values = np.array([e.features[objective] for e in measured])
    stds = [e.features.get(f"{objective}_std", 0.0) for e in measured]
    feasible = np.where([log.feasible(e) for e in measured], values, np.nan)
    best = (np.fmax if log.maximize else np.fmin).accumulate(feasible) if len(values) else values
    figure = go.Figure(
        layout={
            **_LAYOUT,
            "title": f"{words(objective)} vs experiment",
            "xaxis": {"title": "experiment"},
            "yaxis": {"title": words(objective)},
        }
    )
    figure.add_scatter(
        x=x,
        y=values.tolist(),
        mode="markers",
        name="measured",
        error_y={"type": "data", "array": stds, "visible": True},
        customdata=[e.raw_uid for e in measured],
    )
    figure.add_scatter(
        x=x,
        y=best.tolist(),
        mode="lines",
        name="best feasible so far",
        line={"shape": "hv", "color": "black"},
    )
    predicted = [
        (e.iteration + 1, *p) for e in log.experiments if (p := e.predicted(objective)) is not None
    ]
    if predicted:
        px, mean, std = zip(*predicted, strict=True)
        figure.add_scatter(
            x=list(px),
            y=list(mean),
            mode="markers",
            name="agent's prediction ±2σ",
            marker={"symbol": "diamond-open", "size": 9, "color": "darkorange"},
            error_y={
                "type": "data",
                "array": [2 * s for s in std],
                "visible": True,
                "color": "darkorange",
            },
        )
    return figure


def conditions_figure(log: CampaignLog, search_space: Mapping[str, Mapping[str, Any]]) -> go.Figure:
    """Parallel coordinates of the explored conditions, coloured by the objective.

    The experiment in progress (the agent's next proposal being made) is drawn in red,
    failed ones in grey. The colour bar, titled with the objective's name, reads in the
    objective's measured values.
    """
    names = list(search_space)
    objective = log.objective
    experiments = log.experiments
    values = np.array([e.features.get(objective, math.nan) for e in experiments])
    finite = np.isfinite(values)
    low, high = (values[finite].min(), values[finite].max()) if finite.any() else (0.0, 1.0)
    span = (high - low) or 1.0
    # One continuous colour axis with two reserved bands: in progress (red), failed (grey).
    colour = np.where(finite, 0.1 + 0.9 * (values - low) / span, 0.075)
    colour[[i for i, e in enumerate(experiments) if e.exit_status is None]] = 0.0
    # The bar's ticks sit on the objective's band (0.1 to 1) and are labelled in its values.
    tick_values = np.linspace(low, high, COLORBAR_TICKS) if high > low else np.array([low])
    viridis = sample_colorscale("Viridis", [i / 8 for i in range(9)])
    colorscale = [
        [0.0, "red"],
        [0.05, "red"],
        [0.05, "lightgrey"],
        [0.1, "lightgrey"],
        *[[0.1 + 0.9 * i / 8, c] for i, c in enumerate(viridis)],
    ]
    dimensions = [
        {
            "label": words(n, search_space[n].get("unit")),
            "range": [search_space[n]["low"], search_space[n]["high"]],
            "values": [e.conditions.get(n, math.nan) for e in experiments],
        }
        for n in names
    ]
    dimensions.append({"label": words(objective), "values": np.where(finite, values, low).tolist()})
    figure = go.Figure(
        go.Parcoords(
            line={
                "color": colour.tolist(),
                "colorscale": colorscale,
                "cmin": 0.0,
                "cmax": 1.0,
                "showscale": bool(finite.any()),
                "colorbar": {
                    "title": {"text": words(objective), "side": "right"},
                    "tickvals": (0.1 + 0.9 * (tick_values - low) / span).tolist(),
                    "ticktext": [f"{value:.4g}" for value in tick_values],
                    "thickness": 14,
                },
            },
            dimensions=dimensions,
        )
    )
    figure.update_layout(
        **{**_LAYOUT, "margin": {"l": 60, "r": 140, "t": 110, "b": 40}},
        title="explored conditions (colour: objective; red: in progress; grey: failed)",
    )
    return figure


def pattern_figure(
    two_theta: np.ndarray,
    counts: np.ndarray,
    phases: Sequence[str] | XRDPhases,
    title: str,
    calibration: InstrumentCalibration | None = None,
) -> go.Figure:
    """An XRD pattern with its phase fit (with the campaign's instrument ``calibration``);
    the legend names each fitted phase and fraction."""
    figure = go.Figure(
        layout={
            **_LAYOUT,
            "title": title,
            "xaxis": {"title": "2θ (deg, Cu Kα)"},
            "yaxis": {"title": "counts"},
        }
    )
    figure.add_scatter(
        x=two_theta.tolist(), y=counts.tolist(), mode="lines", name="measured", line={"width": 1}
    )
    fit = fit_pattern(
        two_theta, counts, phases if isinstance(phases, XRDPhases) else tuple(phases), calibration
    )
    label = ", ".join(
        f"{phase} {fraction:.2f}"
        for phase, fraction in sorted(fit.phase_fractions.items(), key=lambda item: -item[1])
        if fraction > 0.01
    )
    figure.add_scatter(
        x=two_theta.tolist(),
        y=np.asarray(fit.fitted_pattern).tolist(),
        mode="lines",
        name=f"fit: {label}",
        line={"width": 1},
    )
    figure.update_layout(legend={"orientation": "h", "y": -0.25})
    figure.add_annotation(
        text=f"fitted phases: {label}",
        showarrow=False,
        xref="paper",
        yref="paper",
        x=0.99,
        y=0.98,
        xanchor="right",
    )
    return figure


def overlay_png(image: np.ndarray, labels: np.ndarray) -> str:
    """A micrograph with its grain boundaries in red, as a ``data:image/png;base64`` URI."""
    image = np.asarray(image, dtype=float)
    low, high = np.percentile(image, [0.5, 99.5])
    grey = np.clip((image - low) / ((high - low) or 1.0) * 255, 0, 255).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    rgb[find_boundaries(labels)] = BOUNDARY_RGB
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def measurement_figures(
    measurements: Measurements,
    phases: Sequence[str] | XRDPhases,
    title: str,
    calibration: InstrumentCalibration | None = None,
) -> dict[str, go.Figure]:
    """The pattern and micrograph figures of whichever of them ``measurements`` holds."""
    figures = {}
    if measurements.two_theta_deg is not None and measurements.counts is not None:
        figures["pattern"] = pattern_figure(
            measurements.two_theta_deg,
            measurements.counts,
            phases,
            f"XRD pattern, {title}",
            calibration,
        )
    if measurements.image is not None and measurements.pixel_size_nm is not None:
        figures["micrograph"] = micrograph_figure(
            measurements.image, measurements.pixel_size_nm, f"micrograph, {title}"
        )
    return figures


def micrograph_figure(image: np.ndarray, pixel_size_nm: float, title: str) -> go.Figure:
    """A micrograph with its segmentation overlaid (grain boundaries in red)."""
    grains = analyse_micrograph(image, pixel_size_nm)
    field_nm = image.shape[1] * pixel_size_nm
    figure = go.Figure(go.Image(source=overlay_png(image, grains.labels)))
    figure.update_layout(
        **{**_LAYOUT, "height": 420},
        title=f"{title}: {grains.grain_count} grains, mean "
        f"{grains.grain_size_nm:.0f} nm (field {field_nm:.0f} nm)",
    )
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False, scaleanchor="x")
    return figure
