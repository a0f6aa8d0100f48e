"""``sdl sweep``: a grid of simulated campaigns (agents x seeds x systems x options), run in
parallel and compared in one table.

Benchmarking an agent, choosing its options or rehearsing a beamtime means many campaigns
that differ in one or two fields. A sweep file names a campaign file and the fields to vary::

    name: agents-on-tio2
    campaign: ../examples/tio2_bo.yaml     # relative to this file
    set: {budget: 30}                      # every cell
    grid:                                  # the cells: every combination
      agent: [{name: bayesian}, {name: random}, {name: sobol}]
      seed: [0, 1, 2, 3, 4]
    data_dir: sweep-data

A field is a dotted path into the campaign (``devices.system``, ``agent.options.beta``).
Every cell is validated before any runs, then each is a whole campaign (instruments,
catalog, analysis, agent) in a process of its own: a local pool (``workers``), or a Dask
cluster (``sdl sweep FILE --dask local`` starts one on this machine, ``--dask tcp://host:8786``
joins one). Each cell writes its own catalog in ``data_dir/<cell>``, or all write to one
shared catalog when ``catalog`` names a tiled server (e.g. on PostgreSQL). Results are
grouped by every varied field but the seed: mean and spread over seeds of the best measured
objective, of its true value where the simulator knows it, of instrument hours and wall
time; the table is printed and written with each cell's result to
``data_dir/<name>-results.json``, the convergence curves to ``data_dir/<name>-convergence.png``.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from sdl.campaign.config import CampaignConfig, parse_campaign, read_yaml
from sdl.campaign.schema import CampaignConfigError, FilePath, StrictModel


class SweepConfig(StrictModel):
    """A sweep file: one campaign file, the fields every cell sets, and the grid to vary."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=60)
    campaign: FilePath = Field(description="the campaign file every cell starts from")
    set: dict[str, Any] = Field(default_factory=dict, description="field -> value, every cell")
    grid: dict[str, list[Any]] = Field(
        min_length=1, description="field -> values; a cell per combination"
    )
    data_dir: FilePath = Field(
        default=Path("sweep-data"), description="each cell's catalog in data_dir/<cell>"
    )
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=256)
    catalog: str | None = Field(
        default=None,
        description="a tiled server's URI every cell writes to (API key: SDL_TILED_API_KEY); "
        "default: a catalog per cell in data_dir",
    )


@dataclass(frozen=True)
class Cell:
    """One campaign of the sweep: its place in the grid and its validated configuration."""

    index: int
    values: dict[str, Any]
    config: CampaignConfig

    @property
    def label(self) -> str:
        """Its values in the grid, as the table and the progress lines name them."""
        return grid_label(self.values)

    @property
    def group(self) -> tuple[str, ...]:
        """What the table groups it by: every varied field but the seed."""
        return tuple(f"{k}={_short(v)}" for k, v in self.values.items() if k != "seed")


def load_sweep(path: Path | str) -> tuple[SweepConfig, list[Cell]]:
    """Read a sweep file and validate every cell's campaign; :class:`CampaignConfigError`
    names the cell and the field of each fault."""
    path = Path(path)
    sweep = SweepConfig.model_validate(read_yaml(path.read_text(), str(path)))
    base_path = sweep.campaign if sweep.campaign.is_absolute() else path.parent / sweep.campaign
    base = read_yaml(base_path.read_text(), str(base_path))
    return sweep, list(_cells(sweep, base, sweep.data_dir))


def _cells(sweep: SweepConfig, base: Mapping[str, Any], data_dir: Path) -> Iterator[Cell]:
    fields = list(sweep.grid)
    for index, combination in enumerate(itertools.product(*sweep.grid.values())):
        values = dict(zip(fields, combination, strict=True))
        name = f"{sweep.name}-{index:04d}"
        data = copy.deepcopy(dict(base))
        for field, value in {**sweep.set, **values}.items():
            _assign(data, field, value)
        label = grid_label(values)
        data.update(
            name=name, data_dir=str(data_dir / name), description=f"sweep {sweep.name}: {label}"
        )
        config = parse_campaign(data, source=f"{sweep.name} cell {index} ({label})")
        yield Cell(index, values, config)


def _assign(data: dict[str, Any], field: str, value: Any) -> None:
    *parents, leaf = field.split(".")
    for part in parents:
        data = data.setdefault(part, {})
        if not isinstance(data, dict):
            raise CampaignConfigError(f"sweep field {field}: {part} is not a section")
    data[leaf] = value


def grid_label(values: Mapping[str, Any]) -> str:
    """A cell's values in the grid, e.g. ``agent=bayesian[beta=2], seed=3``."""
    return ", ".join(f"{k}={_short(v)}" for k, v in values.items())


def _short(value: Any) -> str:
    if isinstance(value, Mapping) and set(value) <= {"name", "options"}:
        options = ",".join(f"{k}={v}" for k, v in (value.get("options") or {}).items())
        return f"{value.get('name')}" + (f"[{options}]" if options else "")
    return str(value)


def run_cell(config: CampaignConfig, catalog: str | None = None) -> dict[str, Any]:
    """Run one cell's campaign and summarise it (a picklable function, for any executor)."""
    import torch

    from sdl.loop.runner import CampaignRunner
    from sdl.records.console import quiet_libraries

    torch.set_num_threads(1)  # a process per cell: one core each
    quiet_libraries()
    client = None
    if catalog is not None:
        from tiled.client import from_uri

        client = from_uri(catalog, api_key=os.environ.get("SDL_TILED_API_KEY"))
    started = time.perf_counter()
    result = CampaignRunner(config, client=client).run()
    measured = result.objective_values()
    best_so_far = _running_best(measured, result.maximize)
    best = result.best
    return {
        "name": config.name,
        "experiments": len(result.records),
        "failed": sum(r.failed for r in result.records),
        "best_measured": best_so_far[-1] if best_so_far else math.nan,
        "best_so_far": best_so_far,
        "best_true": _true_objective(config, best.conditions) if best else math.nan,
        "instrument_hours": result.instrument_hours,
        "wall_s": time.perf_counter() - started,
    }


def _running_best(values: np.ndarray, maximize: bool) -> list[float]:
    sign = 1.0 if maximize else -1.0
    filled = np.where(np.isfinite(values), sign * values, -np.inf)
    best = sign * np.maximum.accumulate(filled) if len(values) else np.array([])
    return [float(v) if np.isfinite(v) else math.nan for v in best]


def _true_objective(config: CampaignConfig, conditions: Mapping[str, float]) -> float:
    """The first objective's true value at ``conditions``, where the simulator knows it."""
    from sdl.analysis.truth import true_features
    from sdl.campaign.systems import get_system

    system = get_system(config.devices.system)
    model = system.make_model()
    if not hasattr(model, "expected"):
        return math.nan
    sample = model.expected({**conditions, **config.fixed_conditions})
    return float(true_features(sample, system.phases).get(config.objectives[0].name, math.nan))


def run_sweep(
    sweep: SweepConfig,
    cells: Sequence[Cell],
    *,
    dask: str | None = None,
    on_result: Callable[[Cell, dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run every cell, in ``sweep.workers`` local processes or on a Dask cluster (``dask``:
    a scheduler address, or ``"local"`` for one started here on 127.0.0.1); the results in
    cell order. ``on_result`` is told of each as it finishes."""
    results: dict[int, dict[str, Any]] = {}

    def done(cell: Cell, result: dict[str, Any]) -> None:
        results[cell.index] = {"values": cell.values, **result}
        if on_result is not None:
            on_result(cell, result)

    if dask is None:
        with ProcessPoolExecutor(sweep.workers, mp_context=get_context("spawn")) as pool:
            jobs = {pool.submit(run_cell, c.config, sweep.catalog): c for c in cells}
            for job in as_completed(jobs):
                done(jobs[job], job.result())
    else:
        from distributed import Client, LocalCluster
        from distributed import as_completed as dask_completed

        cluster = (
            LocalCluster(
                n_workers=sweep.workers,
                threads_per_worker=1,
                host="127.0.0.1",
                dashboard_address=None,
            )
            if dask == "local"
            else None
        )
        with Client(cluster if cluster is not None else dask) as client:
            futures = {
                client.submit(run_cell, c.config, sweep.catalog, key=c.config.name): c
                for c in cells
            }
            for future in dask_completed(futures):
                done(futures[future], future.result())
        if cluster is not None:
            cluster.close()
    return [results[cell.index] for cell in cells]


def summary_table(results: Sequence[Mapping[str, Any]], cells: Sequence[Cell]) -> str:
    """One row per group of cells (every varied field but the seed): mean ± sd over seeds."""
    groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for cell, result in zip(cells, results, strict=True):
        groups.setdefault(cell.group, []).append(result)
    width = max((len(", ".join(g)) for g in groups), default=5)
    header = (
        f"{'cells':<{width}} {'n':>3} {'best measured':>17} {'best, true':>17} "
        f"{'instrument h':>13} {'wall s':>8} {'failed':>6}"
    )
    lines = [header, "-" * len(header)]
    for group, members in groups.items():

        def spread(key: str, members: Sequence[Mapping[str, Any]] = members) -> str:
            values = np.array([m[key] for m in members], dtype=float)
            if not np.isfinite(values).any():
                return f"{'-':>17}"
            return f"{np.nanmean(values):>9.3g} ± {np.nanstd(values):<5.2g}"

        lines.append(
            f"{', '.join(group) or 'all':<{width}} {len(members):>3} {spread('best_measured')} "
            f"{spread('best_true')} "
            f"{np.mean([m['instrument_hours'] for m in members]):>13.1f} "
            f"{np.mean([m['wall_s'] for m in members]):>8.1f} "
            f"{sum(m['failed'] for m in members):>6}"
        )
    return "\n".join(lines)


def write_results(
    sweep: SweepConfig, cells: Sequence[Cell], results: Sequence[Mapping[str, Any]], table: str
) -> tuple[Path, Path]:
    """The sweep's results as JSON and its convergence curves as a PNG, in ``data_dir``."""
    folder = Path(cells[0].config.data_dir).parent
    folder.mkdir(parents=True, exist_ok=True)
    json_path = folder / f"{sweep.name}-results.json"
    json_path.write_text(
        json.dumps({"sweep": sweep.model_dump(mode="json"), "table": table, "cells": results})
    )
    png_path = folder / f"{sweep.name}-convergence.png"
    _plot_convergence(cells, results, png_path)
    return json_path, png_path


def _plot_convergence(
    cells: Sequence[Cell], results: Sequence[Mapping[str, Any]], path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    groups: dict[tuple[str, ...], list[list[float]]] = {}
    for cell, result in zip(cells, results, strict=True):
        groups.setdefault(cell.group, []).append(result["best_so_far"])
    for group, curves in groups.items():
        length = max(len(c) for c in curves)
        padded = np.array([c + [c[-1] if c else math.nan] * (length - len(c)) for c in curves])
        n = np.arange(1, length + 1)
        mean, sd = np.nanmean(padded, axis=0), np.nanstd(padded, axis=0)
        axes.plot(n, mean, label=", ".join(group) or "all")
        axes.fill_between(n, mean - sd, mean + sd, alpha=0.2)
    objective = cells[0].config.objectives[0].name
    axes.set_xlabel("experiments")
    axes.set_ylabel(f"best {objective} so far (measured)")
    axes.set_title("sweep: best so far, mean ± sd over seeds")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
