"""A finished (or running) campaign as one self-contained HTML file, from the catalog alone.

The file embeds plotly.js and every image (base64 PNG), so it opens offline from a mail
attachment or a USB stick: the campaign's config, agent and software versions, every
experiment with its conditions, features and where its raw data lives, the convergence
plot with the agent's predictions, the best samples' patterns and micrographs, faults,
control requests and refused proposals.
"""

from __future__ import annotations

import datetime
import html
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import yaml

from sdl.analysis.pipeline import measurements_from_data, read_primary
from sdl.campaign.results import (
    dominated_outline,
    front_hypervolume,
    hypervolume_reference,
    outcomes_feasible,
    pareto_mask,
)
from sdl.campaign.systems import MaterialsSystem, get_system
from sdl.records.vocabulary import ATTEMPT, ITERATION, PROPOSAL_ID, RAW_UID
from sdl.views.campaign_log import CampaignLog, campaign_log_from_catalog
from sdl.views.figures import (
    _LAYOUT,
    conditions_figure,
    convergence_figure,
    measurement_figures,
)

#: plotly.js options: the file must not offer links out of it.
_PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}

#: How many of the best samples show their pattern and micrograph.
BEST_SAMPLES = 3

# The page fits a laptop screen (1366 px): a table wider than the page scrolls inside its
# own box, and the per-experiment details keep their first column (the experiment) in view
# (with separate borders: collapsed ones let the scrolled cells show past a sticky one).
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; padding: 0 1em;
       max-width: 1200px; color: #222; }
.scroll { overflow-x: auto; max-width: 100%; margin-bottom: 1em; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; } tr.failed td { color: #999; }
#experiment-details { border-collapse: separate; border-spacing: 0; border-top: 1px solid #ccc; }
#experiment-details th, #experiment-details td { border-width: 0 1px 1px 0; }
#experiment-details td { white-space: nowrap; }
#experiment-details th:first-child, #experiment-details td:first-child {
  position: sticky; left: 0; border-left-width: 1px; background: #f8f8f8; }
#experiment-details tr:target td { background: #fff3bf; }
code { overflow-wrap: anywhere; }
summary { cursor: pointer; margin-bottom: 0.5em; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
.pair { display: flex; flex-wrap: wrap; gap: 1em; } .pair > div { flex: 1 1 100%; min-width: 0; }
"""


def _time(timestamp: float | None) -> str:
    if timestamp is None:
        return ""
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).strftime(
        "%Y-%m-%d %H:%M:%S UTC"
    )


class _Markup(str):
    """A table cell that is HTML already (a link), put in the page as it is."""


def _number(value: Any) -> str:
    if isinstance(value, _Markup):
        return value
    if isinstance(value, float):
        return "" if not math.isfinite(value) else f"{value:.4g}"
    return html.escape(str(value))


def _header(name: str) -> str:
    """A column header; a long identifier may wrap after its underscores."""
    return html.escape(name).replace("_", "_<wbr>")


def _table(
    header: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    row_classes: Sequence[str] = (),
    row_ids: Sequence[str] = (),
    table_id: str = "",
) -> str:
    """An HTML table in a box that scrolls sideways when the table is wider than the page."""
    head = "".join(f"<th>{_header(h)}</th>" for h in header)
    body = []
    for index, row in enumerate(rows):
        css = row_classes[index] if index < len(row_classes) else ""
        ident = f' id="{html.escape(row_ids[index])}"' if index < len(row_ids) else ""
        cells = "".join(f"<td>{_number(cell)}</td>" for cell in row)
        body.append(f'<tr class="{css}"{ident}>{cells}</tr>')
    ident = f' id="{table_id}"' if table_id else ""
    return (
        f"<div class='scroll'><table{ident}><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _with_unit(name: str, unit: str | None) -> str:
    return f"{name} ({unit})" if unit else name


def _details_anchor(raw_uid: str) -> str:
    return f"run-{raw_uid}"


def _experiment_tables(log: CampaignLog, catalog_path: str, system: MaterialsSystem) -> str:
    """Every experiment run, in two tables.

    The first, a screen wide, holds what a reader scans: who proposed it, the searched
    conditions, the objectives, how it ended. The second, folded away and scrolling
    sideways, holds the rest: fixed conditions, every other feature, the raw run's uid and
    where its raw data lives. Each experiment's number links to its row there.
    """
    search_space = log.config.get("search_space", {})
    space = list(search_space)
    fixed = list(log.config.get("fixed_conditions", {}))
    objectives = [str(o["name"]) for o in log.config.get("objectives") or []]
    other_features = sorted(
        {
            name
            for e in log.experiments
            for name in e.features
            if not name.endswith("_std") and name not in objectives
        }
    )
    faults = {
        f[RAW_UID]: f"{f.get('kind')} -> {f.get('action')}" for f in log.faults if f.get(RAW_UID)
    }
    experiments = log.experiments
    classes = ["" if e.features else "failed" for e in experiments]
    overview = _table(
        [
            "experiment",
            "attempt",
            "proposed by",
            *[_with_unit(n, search_space[n].get("unit")) for n in space],
            *objectives,
            "exit status",
            "fault",
        ],
        [
            [
                _Markup(
                    f'<a href="#{_details_anchor(e.raw_uid)}" title="raw run '
                    f'{html.escape(e.raw_uid)}">{e.iteration + 1}</a>'
                ),
                e.attempt,
                e.proposed_by,
                *[e.conditions.get(n, "") for n in space],
                *[e.features.get(n, "") for n in objectives],
                f"{e.exit_status or 'unfinished'} {e.reason}".strip(),
                faults.get(e.raw_uid, ""),
            ]
            for e in experiments
        ],
        row_classes=classes,
        table_id="experiments",
    )
    units = {name: unit for name, (_, _, unit) in system.condition_limits.items()}
    details = _table(
        [
            "experiment",
            "attempt",
            *[_with_unit(n, units.get(n)) for n in fixed],
            *other_features,
            "raw run uid",
            "raw data",
        ],
        [
            [
                e.iteration + 1,
                e.attempt,
                *[e.conditions.get(n, "") for n in fixed],
                *[e.features.get(n, "") for n in other_features],
                e.raw_uid,
                f"{catalog_path} [{e.raw_uid}]/primary",
            ]
            for e in experiments
        ],
        row_classes=classes,
        row_ids=[_details_anchor(e.raw_uid) for e in experiments],
        table_id="experiment-details",
    )
    return (
        f"<h2>Experiments ({len(experiments)} runs)</h2>{overview}"
        f"<details><summary>Fixed conditions, all {len(other_features)} other features, "
        f"raw run uid and raw data of each run</summary>{details}</details>"
    )


def _best_sample_figures(client: Any, log: CampaignLog, system_phases: Sequence[str]) -> list[str]:
    calibration = log.xrd_calibration
    phases = log.fitted_phases(system_phases)
    parts = []
    for rank, experiment in enumerate(log.best(BEST_SAMPLES), start=1):
        measurements = measurements_from_data(read_primary(client[experiment.raw_uid]))
        title = (
            f"#{rank}: experiment {experiment.iteration + 1}, {log.objective} = "
            f"{experiment.features[log.objective]:.4g}"
        )
        figures = measurement_figures(measurements, phases, f"#{rank}", calibration).values()
        conditions = ", ".join(f"{k} = {v:.4g}" for k, v in experiment.conditions.items())
        parts.append(
            f"<h3>{html.escape(title)}</h3><p>{html.escape(conditions)}; raw run "
            f"<code>{experiment.raw_uid}</code></p><div class='pair'>"
            + "".join(f"<div>{_div(f)}</div>" for f in figures)
            + "</div>"
        )
    return parts


def _pareto(log: CampaignLog) -> dict[str, Any]:
    """The Pareto set of a campaign with several objectives, read from its log.

    Keys: ``names``, ``maximize``, ``experiments`` (measured, in order), ``values``
    (``experiments x objectives``), ``mask`` (on the front: feasible and non-dominated),
    ``feasible``, ``reference`` (``{objective: value}`` or None) and ``hypervolume``.
    """
    objectives = log.config.get("objectives") or []
    names = [str(o["name"]) for o in objectives]
    maximize = [o.get("direction", "maximize") == "maximize" for o in objectives]
    outcome_constraints = (log.config.get("constraints") or {}).get("outcomes") or ()
    experiments = [e for e in log.experiments if e.features]
    values = np.array(
        [[e.features.get(n, math.nan) for n in names] for e in experiments], dtype=float
    ).reshape(len(experiments), len(names))
    feasible = np.array(
        [
            np.isfinite(row).all() and outcomes_feasible(e.features, outcome_constraints)
            for e, row in zip(experiments, values, strict=True)
        ],
        dtype=bool,
    )
    mask = pareto_mask(np.where(feasible[:, None], values, math.nan), maximize)
    reference = hypervolume_reference(
        values[mask], names, maximize, log.config.get("reference_point")
    )
    volume = (
        0.0
        if reference is None
        else front_hypervolume(values[mask], maximize, [reference[n] for n in names])
    )
    return {
        "names": names,
        "maximize": maximize,
        "experiments": experiments,
        "values": values,
        "mask": mask,
        "feasible": feasible,
        "reference": reference,
        "hypervolume": volume,
    }


def _pareto_text(pareto: dict[str, Any]) -> str:
    if not pareto["mask"].any():
        return "no experiment produced every objective"
    reference = ", ".join(f"{n} = {v:.4g}" for n, v in pareto["reference"].items())
    return (
        f"{int(pareto['mask'].sum())} Pareto-optimal of {int(pareto['feasible'].sum())} "
        f"feasible experiments, hypervolume {pareto['hypervolume']:.4g} above {reference}"
    )


def _pareto_figure(pareto: dict[str, Any]) -> go.Figure:
    """The first two objectives of every measured experiment, the Pareto set highlighted."""
    names, values, mask = pareto["names"][:2], pareto["values"][:, :2], pareto["mask"]
    experiments = pareto["experiments"]
    x_better = "better →" if pareto["maximize"][0] else "← better"
    y_better = "better ↑" if pareto["maximize"][1] else "better ↓"
    figure = go.Figure(
        layout={
            **_LAYOUT,
            "height": 460,
            "title": "Pareto front",
            "xaxis": {"title": f"{names[0]} ({x_better})"},
            "yaxis": {"title": f"{names[1]} ({y_better})"},
        }
    )
    reference = pareto["reference"]
    if reference is not None and len(pareto["names"]) == 2:
        outline = dominated_outline(values[mask], pareto["maximize"], [reference[n] for n in names])
        figure.add_scatter(
            x=outline[:, 0].tolist(),
            y=outline[:, 1].tolist(),
            mode="lines",
            fill="toself",
            fillcolor="rgba(214,39,40,0.12)",
            line={"color": "rgba(214,39,40,0.8)", "width": 1},
            name=f"dominated (hypervolume {pareto['hypervolume']:.4g})",
        )
        figure.add_scatter(
            x=[reference[names[0]]],
            y=[reference[names[1]]],
            mode="markers",
            marker={
                "symbol": "cross-thin-open",
                "size": 14,
                "color": "black",
                "line": {"width": 2},
            },
            name="reference point",
        )
    for label, rows, marker in (
        ("measured", pareto["feasible"] & ~mask, {"color": "#1f77b4", "size": 7}),
        (
            "breaks an outcome constraint",
            ~pareto["feasible"],
            {"color": "grey", "symbol": "x", "size": 7},
        ),
        (
            "Pareto set",
            mask,
            {"color": "#d62728", "size": 11, "line": {"width": 1, "color": "black"}},
        ),
    ):
        index = np.flatnonzero(rows & np.isfinite(values).all(axis=1))
        if not len(index):
            continue
        figure.add_scatter(
            x=values[index, 0].tolist(),
            y=values[index, 1].tolist(),
            name=label,
            mode="markers+text" if label == "Pareto set" else "markers",
            marker=marker,
            text=[str(experiments[i].iteration + 1) for i in index],
            textposition="top right",
            customdata=[experiments[i].raw_uid for i in index],
            hovertemplate="experiment %{text}<br>%{x:.4g}, %{y:.4g}<extra>%{customdata}</extra>",
        )
    return figure


def _pareto_section(
    pareto: dict[str, Any], search_space: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """A campaign with several objectives: the front's plot and its experiments' table."""
    names = pareto["names"]
    sign = 1.0 if pareto["maximize"][0] else -1.0
    order = sorted(np.flatnonzero(pareto["mask"]), key=lambda i: -sign * pareto["values"][i, 0])
    rows = [
        [
            pareto["experiments"][i].iteration + 1,
            *pareto["values"][i].tolist(),
            *[pareto["experiments"][i].conditions.get(n, "") for n in search_space],
            pareto["experiments"][i].raw_uid,
        ]
        for i in order
    ]
    return [
        f"<h2>Pareto front ({len(order)} experiments)</h2>",
        f"<p>{html.escape(_pareto_text(pareto))}.</p>",
        # the first figure on the page carries plotly.js for all of them
        _pareto_figure(pareto).to_html(
            full_html=False, include_plotlyjs=True, config=_PLOTLY_CONFIG
        ),
        _table(
            [
                "experiment",
                *names,
                *[_with_unit(n, search_space[n].get("unit")) for n in search_space],
                "raw run uid",
            ],
            rows,
            table_id="pareto",
        ),
    ]


def _div(figure: Any) -> str:
    return figure.to_html(full_html=False, include_plotlyjs=False, config=_PLOTLY_CONFIG)


def _decisions(log: CampaignLog) -> str:
    faults = _table(
        ["when", "experiment", "attempt", "kind", "action", "reason", "raw run uid"],
        [
            [
                _time(f["time"]),
                int(f.get(ITERATION, -1)) + 1,
                f.get(ATTEMPT, ""),
                f.get("kind", ""),
                f.get("action", ""),
                f.get("reason", ""),
                f.get(RAW_UID) or "",
            ]
            for f in log.faults
        ],
        table_id="faults",
    )
    controls = _table(
        ["when", "action", "who", "reason", "conditions"],
        [
            [
                _time(c.get("requested_at", c["time"])),
                c.get("action", ""),
                c.get("who", ""),
                c.get("reason", ""),
                ", ".join(f"{k}={v:g}" for k, v in (c.get("conditions") or {}).items()),
            ]
            for c in log.controls
        ],
        table_id="controls",
    )
    refused = _table(
        ["when", "proposal", "reason", "conditions"],
        [
            [
                _time(r["time"]),
                r.get(PROPOSAL_ID, ""),
                r.get("reason", ""),
                ", ".join(
                    f"{k}={v:.4g}" for k, v in (r.get("conditions") or {}).items() if v is not None
                ),
            ]
            for r in log.refused
        ],
        table_id="refused",
    )
    return (
        f"<h2>Faults ({len(log.faults)})</h2>{faults}"
        f"<h2>Control requests ({len(log.controls)})</h2>{controls}"
        f"<h2>Refused proposals ({len(log.refused)})</h2>{refused}"
    )


def report_html(client: Any, campaign_id: str, catalog: str) -> str:
    """The whole report of campaign ``campaign_id`` in ``client`` as one HTML document;
    ``catalog`` says where the catalog is (its file, or its tiled server's URI)."""
    log = campaign_log_from_catalog(client, campaign_id)
    if not log.config:
        raise ValueError(
            f"the catalog {catalog} has no campaign named {campaign_id!r} "
            "(no run with purpose 'campaign')"
        )
    summary = log.summary()
    catalog_path = catalog
    system = get_system(log.config.get("devices", {}).get("system", "tio2_solgel"))
    agent = log.config.get("agent", {})
    best = summary["best"]
    best_text = (
        "no experiment produced the objective"
        if best is None
        else f"best {log.objective} = {best['value']:.4g} ± {best['std'] or math.nan:.2g} at "
        f"experiment {best['iteration'] + 1}"
    )
    pareto_parts: list[str] = []
    if len(log.config.get("objectives") or []) > 1:
        pareto = _pareto(log)
        best_text = _pareto_text(pareto)
        pareto_parts = _pareto_section(pareto, log.config.get("search_space", {}))
    convergence = convergence_figure(log).to_html(
        full_html=False, include_plotlyjs=not pareto_parts, config=_PLOTLY_CONFIG
    )
    sections = [
        f"<h1>Campaign {html.escape(campaign_id)}</h1>",
        f"<p>{html.escape(log.config.get('description', ''))}</p>",
        f"<p id='summary'>{summary['experiments']} of {summary['budget']} experiments "
        f"({summary['runs']} runs, {len(log.faults)} faults, {len(log.refused)} refused "
        f"proposals), agent <b>{html.escape(str(agent.get('name')))}</b>, "
        f"{html.escape(best_text)}. Started {_time(log.started_at)}; report written "
        f"{_time(time.time())}.</p>",
        f"<p>Raw data: the tiled catalog <code>{html.escape(str(catalog_path))}</code>; read a "
        "run with <code>sdl.records.catalog.open_catalog(DATA_DIR)[RAW_UID]</code>.</p>",
        *pareto_parts,
        "<h2>Convergence</h2>",
        convergence,
        "<h2>Explored conditions</h2>",
        _div(conditions_figure(log, log.config.get("search_space", {}))),
        f"<h2>Best {min(BEST_SAMPLES, len(log.measured()))} samples</h2>",
        *_best_sample_figures(client, log, system.phases),
        _experiment_tables(log, catalog_path, system),
        _decisions(log),
        "<h2>Agent</h2>",
        f"<pre>{html.escape(yaml.safe_dump(agent, sort_keys=False))}</pre>",
        "<h2>Campaign configuration</h2>",
        f"<pre>{html.escape(yaml.safe_dump(log.config, sort_keys=False))}</pre>",
        "<h2>Software versions</h2>",
        _table(["package", "version"], sorted(log.versions.items()), table_id="versions"),
    ]
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>sdl report: {html.escape(campaign_id)}</title><style>{_STYLE}</style>"
        f"</head><body>{''.join(sections)}</body></html>"
    )


def write_report(client: Any, campaign_id: str, catalog: str, path: Path | str) -> Path:
    """Write :func:`report_html` to ``path`` (folders made as needed) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report_html(client, campaign_id, catalog), encoding="utf-8")
    return path
